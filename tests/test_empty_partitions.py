"""Every Spark adapter (mapInArrow, mapInPandas, the RDD numbering) fed empty partitions: a fully empty input
gives an empty output with the adapter's schema, and one row next to an empty partition gives exactly the row
its no-Spark function gives. An empty partition sends the adapter no batch at all (a catalog without any
near-duplicate pair crashed the image pass on `pa.Table.from_batches([])`)."""

from __future__ import annotations

import hashlib
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tagmill.config import DedupConfig, ImagePassConfig, TextConfig
from tagmill.labeling.image_pass import FORWARD_SCHEMA, HASH_SCHEMA, spark_schema

pytestmark = pytest.mark.spark

ONE_OR_NONE = pytest.mark.parametrize("rows", [0, 1], ids=["empty", "one-row"])


def _frame(spark, rows: list, ddl: str):
    """`rows` in two partitions, the first of them empty (parallelize puts one row in the second slice)."""
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, 2), ddl)


def _columns(df) -> str:
    """The DataFrame's schema written like labeling.image_pass.spark_schema."""
    return ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in df.schema)


def _rows(df, *order: str) -> list[dict]:
    """The rows as Arrow gives them (bytes stay bytes, float32 stays exact), sorted by `order`."""
    rows = df.toArrow().to_pylist()
    return sorted(rows, key=lambda r: tuple(r[k] for k in order)) if order else rows


def _picture(path, shade: int) -> Image.Image:
    """A 40 x 30 RGB picture with some structure (a gradient and a box), saved as PNG at `path`."""
    x = np.linspace(0, 255, 40, dtype=np.float32)
    rgb = np.stack([np.tile(x, (30, 1)), np.tile(x[::-1], (30, 1)), np.full((30, 40), shade, np.float32)], -1)
    rgb[8:20, 10:25] = 255 - shade
    image = Image.fromarray(rgb.astype(np.uint8), "RGB")
    image.save(path, format="PNG")
    return image


def test_the_frames_have_an_empty_partition(spark):
    assert _frame(spark, [], "x long").rdd.glom().map(len).collect() == [0, 0]
    assert _frame(spark, [(1,)], "x long").rdd.glom().map(len).collect() == [0, 1]


# ---- labeling.image_pass (file not owned here) ---------------------------------------------------------

@ONE_OR_NONE
def test_hash_images(spark, tmp_path, rows):
    from tagmill.labeling.image_pass import hash_file, hash_images

    _picture(tmp_path / "a.png", 40)
    out = hash_images(_frame(spark, [("k1", "a.png")][:rows], "image_key string, image_path string"),
                      str(tmp_path))
    assert _columns(out) == spark_schema(HASH_SCHEMA)
    digest, size, reason, detail = hash_file(str(tmp_path), "a.png")
    expected = [{"image_key": "k1", "image_path": "a.png", "content_hash": digest, "bytes": size,
                 "reason": reason, "detail": detail}]
    assert reason is None and _rows(out) == expected[:rows]


class _TinyTeacher(nn.Module):
    """Two labels scored from the mean colour; the three channel means are the embedding."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = images.mean(dim=(2, 3))
        return embedding[:, :2] * 4.0, embedding


@pytest.fixture()
def tiny_teacher(tmp_path) -> ImagePassConfig:
    torch.jit.script(_TinyTeacher()).save(str(tmp_path / "teacher.ts"))
    (tmp_path / "vocabulary.csv").write_text("LabelName,DisplayName\n/m/red,Red\n/m/green,Green\n")
    return ImagePassConfig(teacher=str(tmp_path / "teacher.ts"), vocabulary=str(tmp_path / "vocabulary.csv"),
                           image_size=16, threshold=0.01, batch_size=4, thumbnail_size=32)


@ONE_OR_NONE
def test_forward_images(spark, tmp_path, tiny_teacher, rows):
    from tagmill.labeling.image_pass import forward_batch, forward_images, worker_teacher

    _picture(tmp_path / "a.png", 40)
    out = forward_images(_frame(spark, [("h1", "a.png")][:rows], "content_hash string, image_path string"),
                         str(tmp_path), tiny_teacher)
    assert _columns(out) == spark_schema(FORWARD_SCHEMA)
    teacher, thresholds = worker_teacher(tiny_teacher)
    expected = forward_batch([("h1", "a.png")], str(tmp_path), teacher, thresholds, tiny_teacher).to_pylist()
    assert expected[0]["reason"] is None and len(expected[0]["tag_ids"]) == 2
    assert _rows(out) == expected[:rows]


@ONE_OR_NONE
def test_add_code(spark, rows):
    from tagmill.labeling.codes import encode, fit_projection
    from tagmill.labeling.image_pass import add_code

    projection = fit_projection(np.random.default_rng(0).normal(size=(20, 8)), 8, "pca")
    embedding = [0.5, -1.0, 0.25, 2.0, 0.0, 1.0, -0.5, 0.75]
    out = add_code(_frame(spark, [(7, embedding)][:rows], "item long, embedding array<float>"), "embedding",
                   projection, "code")
    assert _columns(out) == "item bigint, code binary"
    expected = [{"item": 7, "code": encode(np.array([embedding]), projection)[0].tobytes()}]
    assert _rows(out) == expected[:rows]


# ---- labeling.near_duplicates --------------------------------------------------------------------------

CODES = [(1, bytes(8), [1.0, 0.0]), (2, bytes([1]) + bytes(7), [0.9, 0.1]), (3, bytes([255]) * 8, [0.0, 1.0])]
"""Layout codes (and the descriptors the shortlist ranks by): 1 and 2 one bit apart, 3 far from both. The
descriptors are too short to have parts: the region candidates are off (region_shortlist=0)."""
NO_REGIONS = DedupConfig(region_shortlist=0)


@pytest.mark.parametrize("rows", [0, 1, 3], ids=["empty", "one-row", "three-rows"])
def test_code_candidates(spark, rows):
    from tagmill.labeling.near_duplicates import CANDIDATE_SCHEMA, code_candidates

    contents = _frame(spark, CODES[:rows], "item long, layout_code binary, layout array<float>")
    out = code_candidates(contents, 8, NO_REGIONS)
    assert _columns(out) == spark_schema(CANDIDATE_SCHEMA)
    assert _rows(out) == ([{"item_a": 1, "item_b": 2, "hamming": 1}] if rows == 3 else [])


def test_code_candidates_of_columns_spark_knows_are_never_null(spark):
    # spark.range's ids are `long not null`, so Spark's batches are typed not-null too
    from tagmill.labeling.near_duplicates import code_candidates

    contents = spark.range(0, 3, numPartitions=2).selectExpr(
        "id + 1 as item", "case id when 0 then x'0000000000000000' when 1 then x'0100000000000000' "
                          "else x'ffffffffffffffff' end as layout_code",
        "case id when 0 then array(1f, 0f) when 1 then array(0.9f, 0.1f) else array(0f, 1f) end as layout")
    assert _rows(code_candidates(contents, 8, NO_REGIONS)) == [{"item_a": 1, "item_b": 2, "hamming": 1}]


@ONE_OR_NONE
def test_verify_candidates(spark, tmp_path, rows):
    from tagmill.labeling.verification import thumbnail, verify_pairs
    from tagmill.labeling.near_duplicates import EVIDENCE_SCHEMA, PIXEL_SCORES, verify_candidates

    cfg = DedupConfig()
    thumbs = [thumbnail(_picture(tmp_path / f"{k}.png", shade), 32) for k, shade in ((1, 40), (2, 44))]
    embeddings = [[1.0, 0.5, 0.25], [1.0, 0.5, 0.3]]
    items = _frame(spark, [(k + 1, embeddings[k], thumbs[k]) for k in range(2)][: 2 * rows],
                   "item long, embedding array<float>, thumbnail binary")
    candidates = _frame(spark, [(1, 2, 1)][:rows], "item_a long, item_b long, hamming int")
    out = verify_candidates(candidates, items, cfg, 32)
    assert _columns(out) == spark_schema(EVIDENCE_SCHEMA)
    scores = verify_pairs(np.array(embeddings[:1], np.float32), np.array(embeddings[1:], np.float32), thumbs[:1],
                          thumbs[1:], cfg.min_cosine, cfg.min_pixel_similarity, 32)
    assert not math.isnan(scores["pixel_similarity"][0])  # the pixels were compared
    expected = [{"item_a": 1, "item_b": 2, "hamming": 1,
                 **{name: float(scores[name][0]) for name in ("cosine", *PIXEL_SCORES)},
                 "pixels_reused": False, "verified": bool(scores["verified"][0]), "reason": scores["reason"][0]}]
    got = _rows(out)
    assert len(got) == rows
    for row, want in zip(got, expected):
        assert row.keys() == want.keys()
        for key, value in want.items():
            assert row[key] == (pytest.approx(value, nan_ok=True) if isinstance(value, float) else value), key


@ONE_OR_NONE
def test_cluster_items(spark, rows):
    """No pair at all (a catalog without duplicates) used to raise `Must pass schema, or at least one
    RecordBatch`; one verified pair makes one cluster led by the larger image."""
    from tagmill.labeling.near_duplicates import CLUSTER_SCHEMA, cluster_items

    evidence = _frame(spark, [(1, 2, True, 0.95)][:rows],
                      "item_a long, item_b long, verified boolean, pixel_similarity float")
    items = _frame(spark, [(1, 10, 10, "h1"), (2, 20, 10, "h2"), (3, 30, 30, "h3")],
                   "item long, width int, height int, content_hash string")
    out = cluster_items(evidence, items, split_guard=1.0)
    assert _columns(out) == spark_schema(CLUSTER_SCHEMA)
    expected = [{"item": 1, "cluster_item": 2, "component_item": 2}, {"item": 2, "cluster_item": 2,
                                                                       "component_item": 2}]
    assert _rows(out, "item") == expected[: 2 * rows]


# ---- labeling.mining -----------------------------------------------------------------------------------

@ONE_OR_NONE
def test_normalize_query_column(spark, rows):
    from tagmill.labeling.mining import normalize_query_column
    from tagmill.labeling.text import normalize_queries

    text = TextConfig()
    events = _frame(spark, [("Red Running Shoes!", "s1")][:rows], "query string, session_id string")
    out = normalize_query_column(events, text)
    assert _columns(out) == "query string, session_id string, query_norm string"
    norm = normalize_queries(["Red Running Shoes!"], frozenset(text.stopwords), text.wordnet_dir)[0]
    assert norm == "red running shoe"
    assert _rows(out) == [{"query": "Red Running Shoes!", "session_id": "s1", "query_norm": norm}][:rows]


# ---- dataset.assemble ----------------------------------------------------------------------------------

@ONE_OR_NONE
def test_class_index(spark, rows):
    from tagmill.dataset.assemble import class_index

    out = class_index(_frame(spark, [("shoe",)][:rows], "label string"))
    assert _columns(out) == "class_id int, name string, path array<string>, taxonomy_id int"
    assert _rows(out) == [{"class_id": 0, "name": "shoe", "path": [], "taxonomy_id": None}][:rows]


# ---- dataset.publish (the executors' shard writer; dataset.shards writes the tar) ------------------------

SAMPLE_DDL = ("image_key string, image_path string, product_id string, split string, title string, "
              "class_ids array<int>, repeats int, labels array<struct<class_id: int, name: string, "
              "confidence: double, source: string, tier: string, clicks: long, contacts: long, "
              "in_conversations: long, sessions: long>>")


@ONE_OR_NONE
def test_shard_writer(spark, tmp_path, rows):
    from tagmill.dataset.publish import RESULT_SCHEMA, plan_shards, shard_writer
    from tagmill.dataset.shards import ImageOptions, write_shards
    from tagmill.demo.titled import sample_record

    (tmp_path / "images").mkdir()
    _picture(tmp_path / "images" / "a.png", 40)
    sample = sample_record("k1", 0, "shoe", "train", "p1", "red shoe", repeats=2, image_path="a.png")
    samples = _frame(spark, [sample][:rows], SAMPLE_DDL)  # the dict's fields by name
    opts = ImageOptions(max_side=32)
    planned = plan_shards(samples, {"train": rows}, 10, seed=1, partitions=2)
    staging = tmp_path / "staging"
    (staging / "shards").mkdir(parents=True)
    out = planned.mapInArrow(shard_writer(str(staging), str(tmp_path / "images"), (), opts, 10, 1 << 20),
                             RESULT_SCHEMA)
    assert _columns(out) == RESULT_SCHEMA
    written = _rows(out)

    shard = io.BytesIO()
    shard.close = lambda: None  # write_shards closes its output; keep the bytes readable
    expected = list(write_shards([sample], "train-00000", lambda name: shard,
                                 lambda path: (tmp_path / "images" / path).read_bytes(), opts, 10, 1 << 20))
    assert expected[0]["sha256"] == hashlib.sha256(shard.getvalue()).hexdigest()
    row = {"kind": "shard", "shard": "shards/train-00000-000.tar", "split": "train", "samples": 1, "repeats": 2,
           "bytes": len(shard.getvalue()), "sha256": expected[0]["sha256"], "image_key": None, "image_path": None,
           "reason": None, "detail": None, "classes": 1, "labels": json.dumps(expected[0]["labels"], sort_keys=True),
           "quarantined": "{}"}
    assert [{k: v for k, v in r.items() if k != "milliseconds"} for r in written] == [row][:rows]
    assert sorted(p.name for p in (staging / "shards").iterdir()) == ["train-00000-000.tar"][:rows]


# ---- jobs.side_info (a jobs adapter, checked too) ------------------------------------------------------

@ONE_OR_NONE
def test_tokenize_titles(spark, rows):
    from tagmill.jobs.side_info import tokenize_titles
    from tagmill.labeling.titles import DEFAULT_NOISE_PHRASES, title_tokens

    text = TextConfig()
    stopwords = frozenset(text.stopwords)
    out = tokenize_titles(_frame(spark, [("p1", "Red shoes free shipping")][:rows], "product_id string, title string"),
                          DEFAULT_NOISE_PHRASES, stopwords, text.wordnet_dir)
    assert _columns(out) == "product_id string, tokens array<string>"
    tokens = title_tokens("Red shoes free shipping", DEFAULT_NOISE_PHRASES, stopwords, text.wordnet_dir)
    assert tokens == ["red", "shoe"]
    assert _rows(out) == [{"product_id": "p1", "tokens": tokens}][:rows]
