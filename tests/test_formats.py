"""A published dataset read by other tools: `.cls` members for `webdataset`, the dataset card's YAML header
for Hugging Face `datasets`, the `wids` shard indexes; and one label schema in the shard JSON and the samples
table. No Spark: the dataset is published with the project's writer (dataset.shards + dataset.publish)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from tagmill.dataset.card import WIDS_KIND, card_features
from tagmill.dataset.publish import STAGING, finish_publish, start_publish
from tagmill.dataset.shards import LABEL_FIELDS, ImageOptions, write_shards

CLASSES = ["armchair", "lamp", "沙发", "sofa: 3-seat"]  # YAML-awkward names on purpose (non-ASCII, a colon)


def _jpeg(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (shade, 40, 200 - shade)).save(out, format="JPEG")
    return out.getvalue()


def _sample(i: int, split: str, class_ids: list[int]) -> dict:
    labels = [{"class_id": c, "name": CLASSES[c], "confidence": 0.8, "source": "search_log", "tier": "click",
               "clicks": 2, "contacts": 1, "in_conversations": 0, "sessions": 3, "teacher": None} for c in class_ids]
    if i % 5 == 0:  # a teacher tag: no tier, zero counts, the teacher named
        labels.append({"class_id": 3, "name": CLASSES[3], "confidence": 0.6, "source": "teacher", "tier": None,
                       "clicks": 0, "contacts": 0, "in_conversations": 0, "sessions": 0, "teacher": "t@1"})
    ids = sorted({x["class_id"] for x in labels})
    return {"image_key": f"{i:020x}", "image_path": f"{i}.jpg", "product_id": f"p{i}", "split": split,
            "title": f"title {i}", "class_ids": ids, "labels": sorted(labels, key=lambda x: x["class_id"]),
            "repeats": 1 + i % 2}


SAMPLES = [_sample(i, "train" if i % 4 else "validation", [i % 3] if i % 7 else [0, 1]) for i in range(1, 23)]


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A dataset of 22 samples (train and validation, no test) in shards of at most 4, with `.cls` members."""
    folder = tmp_path_factory.mktemp("formats")
    start_publish(str(folder))
    staged, shards = folder / STAGING / "shards", []
    for split in ("train", "validation"):
        chosen = [s for s in SAMPLES if s["split"] == split]
        for r in write_shards(chosen, f"{split}-00000", lambda name: open(staged / name, "wb"),
                              lambda path: _jpeg(int(path.split(".")[0]) * 9), ImageOptions(max_side=0), 4, 1 << 30,
                              cls_entries=True):
            shards.append({**r, "split": split, "shard": f"shards/{r['shard']}"})
    index = [{"class_id": c, "name": name, "path": ["things"], "taxonomy_id": None,
              **{f"support_{s}": sum(1 for x in SAMPLES if x["split"] == s and c in x["class_ids"])
                 for s in ("train", "validation", "test")}} for c, name in enumerate(CLASSES)]
    finish_publish(str(folder), shards, index, {"dataset": "2026-11-20", "tagmill_version": "test",
                                                "config_sha256": "0" * 64, "image": {"max_side": 0}},
                   cls_entries=True)
    return folder


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _card_header(folder: Path) -> dict:
    yaml = pytest.importorskip("yaml")
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_webdataset_reads_cls_for_single_class_samples_only(published):
    wds = pytest.importorskip("webdataset")
    urls = [str(published / s["path"]) for s in _manifest(published)["shards"]]
    seen = {}
    for sample in wds.WebDataset(urls, shardshuffle=False).decode():
        meta = sample["json"]
        seen[meta["key"]] = (sample.get("cls"), meta["class_ids"])
    assert len(seen) == len(SAMPLES)
    for key, (cls, class_ids) in seen.items():
        assert cls == (class_ids[0] if len(class_ids) == 1 else None), key
    assert sum(cls is not None for cls, _ in seen.values()) > 0 and any(cls is None for cls, _ in seen.values())


def test_card_yaml_names_every_class_in_class_index_order_and_each_split_s_shards(published):
    header = _card_header(published)
    classes = json.loads((published / "classes.json").read_text())["classes"]
    features = {f["name"]: f for f in header["dataset_info"]["features"]}
    names = {int(k): v for k, v in features["cls"]["dtype"]["class_label"]["names"].items()}
    assert [names[i] for i in sorted(names)] == [c["name"] for c in classes] == CLASSES
    meta = {f["name"]: f for f in features["json"]["struct"]}
    assert meta["class_ids"]["list"] == features["cls"]["dtype"]
    assert [f["name"] for f in meta["labels"]["list"]] == [name for name, _ in LABEL_FIELDS]
    manifest = _manifest(published)
    [config] = header["configs"]
    files = {d["split"]: d["path"] for d in config["data_files"]}
    assert set(files) == {"train", "validation"}  # no test shards: no test split the loader would fail on
    for shard in manifest["shards"]:
        assert [split for split, pattern in files.items()
                if Path(shard["path"]).match(pattern)] == [shard["split"]], shard["path"]
    assert {s["name"]: (s["num_examples"], s["num_bytes"]) for s in header["dataset_info"]["splits"]} == {
        s: (manifest["splits"][s]["samples"], manifest["splits"][s]["bytes"]) for s in files}


def test_card_features_are_what_datasets_writes():
    datasets = pytest.importorskip("datasets")
    names = datasets.ClassLabel(names=CLASSES)
    dtypes = {"string": "string", "double": "float64", "long": "int64", "int": "int64"}
    label = {name: names if name == "class_id" else datasets.Value(dtypes[kind]) for name, kind in LABEL_FIELDS}
    meta = {"class_ids": datasets.List(names), "key": datasets.Value("string"), "labels": datasets.List(label),
            "product_id": datasets.Value("string"), "repeats": datasets.Value("int64"),
            "split": datasets.Value("string"), "title": datasets.Value("string")}
    expected = datasets.Features({"__key__": datasets.Value("string"), "__url__": datasets.Value("string"),
                                  "jpg": datasets.Image(), "json": meta, "cls": names})
    assert datasets.Features._from_yaml_list(card_features(CLASSES, True, False)) == expected


def test_load_dataset_on_the_folder_shows_class_names(published, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    builder = datasets.load_dataset_builder(str(published), cache_dir=str(tmp_path / "cache"))
    assert {name: split.num_examples for name, split in builder.info.splits.items()} == {
        "train": sum(s["split"] == "train" for s in SAMPLES), "validation": sum(s["split"] == "validation"
                                                                               for s in SAMPLES)}
    loaded = datasets.load_dataset(str(published), cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train", "validation"}
    train = loaded["train"]
    assert train.features["cls"].names == CLASSES
    assert train.features["json"]["class_ids"].feature.names == CLASSES
    rows = {r["__key__"]: r for r in train}
    expected = {s["image_key"]: s for s in SAMPLES if s["split"] == "train"}
    assert set(rows) == set(expected)
    for key, row in rows.items():
        ids = expected[key]["class_ids"]
        assert row["cls"] == (ids[0] if len(ids) == 1 else None)
        assert row["json"]["class_ids"] == ids and row["jpg"].size == (16, 12)


def test_wids_index_lists_every_shard_with_its_sample_count(published):
    manifest = _manifest(published)
    for split, file in manifest["wids_index"].items():
        index = json.loads((published / file).read_text())
        assert index["__kind__"] == WIDS_KIND and index["wids_version"] == 1 and index["name"]
        assert index["shardlist"] == [{"url": s["path"], "nsamples": s["samples"]}
                                      for s in manifest["shards"] if s["split"] == split]
        assert sum(s["nsamples"] for s in index["shardlist"]) == manifest["splits"][split]["samples"]
        for entry in index["shardlist"]:  # each url, relative to the index, is the tar with that many samples
            with tarfile.open(published / entry["url"]) as tar:
                assert len({m.name.split(".")[0] for m in tar.getmembers()}) == entry["nsamples"]
    assert set(manifest["wids_index"]) == {"train", "validation"}


def test_shard_json_labels_carry_the_samples_table_label_fields(published):
    manifest = _manifest(published)
    with tarfile.open(published / manifest["shards"][0]["path"]) as tar:
        metas = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    by_key = {s["image_key"]: s for s in SAMPLES}
    for meta in metas:
        assert meta["labels"] == [{name: x[name] for name, _ in LABEL_FIELDS} for x in by_key[meta["key"]]["labels"]]
