"""The side-info stage on the small generated marketplace: title tokens for every product, word vectors
byte-identical across runs with one seed, query clusters with examples; and their way into the samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tagmill.jobs import io, mine_logs, side_info
from tagmill.jobs.build import run_stages
from tagmill.labeling.word_vectors import load_word_vectors

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _run(cfg, root: Path, **side):
    shutil.copytree(Path(cfg.outputs.root) / mine_logs.STAGE, root / mine_logs.STAGE)
    cfg = cfg.replace("outputs", root=str(root)).replace("side_info", **side)
    return cfg, run_stages(cfg, [side_info.STAGE])[side_info.STAGE]


@pytest.fixture(scope="module")
def two_runs(mined_market, tmp_path_factory):
    cfg, _ = mined_market
    first = _run(cfg, tmp_path_factory.mktemp("side-info-a"), query_clusters=8)
    second = _run(cfg, tmp_path_factory.mktemp("side-info-b"), query_clusters=8)
    return first, second


def test_word_vectors_are_byte_identical_for_one_seed(two_runs):
    (cfg_a, summary), (cfg_b, _) = two_runs
    run_date = cfg_a.run.run_date()
    folder_a = Path(side_info.word_vectors_path(cfg_a.outputs.root, run_date))
    folder_b = Path(side_info.word_vectors_path(cfg_b.outputs.root, run_date))
    names = sorted(p.name for p in folder_a.iterdir() if not p.name.startswith("."))
    assert names == ["vectors.npy", "vocabulary.txt", "word_vectors.json"]
    assert all((folder_a / n).read_bytes() == (folder_b / n).read_bytes() for n in names)
    wv = load_word_vectors(folder_a)
    assert wv.seed == cfg_a.run.seed and wv.dim == cfg_a.side_info.vector_dim
    assert summary["word_vectors"]["words"] == len(wv.vocabulary) - 2 > 50


def test_every_product_title_is_tokenized_and_queries_are_clustered(spark, two_runs):
    (cfg, summary), _ = two_runs
    run_date = cfg.run.run_date()
    tokens = io.read_table(spark, cfg.outputs.root, side_info.STAGE, "title_tokens", run_date)
    products = io.read_table(spark, cfg.outputs.root, mine_logs.STAGE, "images", run_date).select("product_id")
    assert tokens.count() == products.distinct().count() == summary["titles"]
    clusters = io.read_table(spark, cfg.outputs.root, side_info.STAGE, "query_clusters", run_date).toPandas()
    assert len(clusters) == summary["queries"] and clusters["query"].is_unique
    clustered = clusters[clusters["cluster"] >= 0]
    assert clustered["cluster"].nunique() == summary["query_clusters"]["k"] == 8
    assert clustered.groupby("cluster")["example"].any().all()  # every cluster shows examples
    assert clustered["similarity"].between(-1.0001, 1.0001).all()


def test_query_clusters_as_a_label_space(spark):
    from tagmill.dataset.assemble import LABEL_COLUMNS, map_to_query_clusters

    row = {c: None for c in LABEL_COLUMNS}
    schema = ("image_key string, product_id string, label string, confidence double, source string, tier string, "
              "clicks long, contacts long, in_conversations long, sessions long, teacher string")
    labels = spark.createDataFrame(
        [{**row, "image_key": "i1", "label": "sofa", "source": "search_log", "confidence": 0.9},
         {**row, "image_key": "i2", "label": "couch", "source": "search_log", "confidence": 0.8},
         {**row, "image_key": "i3", "label": "zzz", "source": "search_log", "confidence": 0.7},
         {**row, "image_key": "i4", "label": "sofa", "source": "teacher", "confidence": 0.6}], schema)
    clusters = spark.createDataFrame([("sofa", 3), ("couch", 3), ("zzz", -1)], "query string, cluster int")
    mapped = sorted((r.image_key, r.label) for r in map_to_query_clusters(labels, clusters).collect())
    assert mapped == [("i1", "query cluster 3"), ("i2", "query cluster 3")]
