"""assemble + gate + shards end to end on the small generated marketplace (local Spark): counts, the
manifest, the class ids, leakage, byte-identical re-runs, an interrupted publish and a failing gate."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from tagmill.dataset import publish
from tagmill.dataset.gate import GateFailed
from tagmill.jobs import assemble, io, mine_logs, runs, shards, side_info, taxonomy
from tagmill.jobs.build import run_stages
from tagmill.jobs.cli import main

pytestmark = [pytest.mark.spark, pytest.mark.slow]

IMAGE_REASON = {"missing": "missing_image", "empty": "empty_image", "truncated": "truncated_image",
                "corrupt": "undecodable_image"}


@pytest.fixture(scope="module")
def built(side_info_market):
    cfg, _ = side_info_market
    cfg = cfg.replace("dataset", shard_max_samples=60, image_max_side=48)
    summaries = run_stages(cfg, [taxonomy.STAGE, assemble.STAGE, shards.STAGE])
    return cfg, summaries


@pytest.fixture(scope="module")
def without_taxonomy(side_info_market, tmp_path_factory):
    """cfg of assemble + shards with the taxonomy off, in an outputs root of their own (mine-logs' and
    side-info's outputs copied in)."""
    cfg, _ = side_info_market
    root = tmp_path_factory.mktemp("no-taxonomy-out")
    for stage in (mine_logs.STAGE, side_info.STAGE):
        shutil.copytree(Path(cfg.outputs.root) / stage, root / stage)
    cfg = cfg.replace("outputs", root=str(root)).replace("taxonomy", enabled=False)
    run_stages(cfg, [assemble.STAGE, shards.STAGE])
    return cfg


def _published_classes(cfg) -> list[dict]:
    return json.loads((Path(shards.dataset_path(cfg)) / "classes.json").read_text())["classes"]


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _samples(dataset: Path, manifest: dict) -> list[dict]:
    out = []
    for shard in manifest["shards"]:
        with tarfile.open(dataset / shard["path"]) as tar:
            members = {m.name: m for m in tar.getmembers()}
            names, shard_samples = list(members), []
            for name in names:
                if name.endswith(".json"):  # each sample: <key>.jpg, <key>.json, and <key>.cls with one class
                    key, sample = name[:-5], json.loads(tar.extractfile(members[name]).read())
                    expected = [f"{key}.jpg", name] + ([f"{key}.cls"] if len(sample["class_ids"]) == 1 else [])
                    at = names.index(f"{key}.jpg")
                    assert names[at:at + len(expected)] == expected, shard["path"]
                    if len(sample["class_ids"]) == 1:
                        assert tar.extractfile(members[f"{key}.cls"]).read() == str(sample["class_ids"][0]).encode()
                    shard_samples.append({**sample, "shard": shard["path"]})
            # nothing else in the shard
            assert len(names) == sum(2 + (len(x["class_ids"]) == 1) for x in shard_samples), shard["path"]
            out += shard_samples
    return out


def test_counts_add_up_and_planted_bad_images_are_quarantined(spark, built):
    cfg, summaries = built
    images = summaries[assemble.STAGE]["images"]
    assert images["in"] == images["out"] + sum(images["quarantined"].values()) and images["out"] > 0
    # without an image pass nothing merges or is unusable; a labeled image is dropped only when the taxonomy
    # (its rare filter) or a weak-class drop left none of its labels
    assert set(images["quarantined"]) <= {"no_label_in_label_space"}
    samples = summaries[shards.STAGE]["samples"]
    assert samples["in"] == images["out"] == samples["out"] + sum(samples["quarantined"].values())
    # the summary names where the dataset and the gate's pages are once the run has committed
    published = summaries[shards.STAGE]
    for path in (published["manifest"], published["gate"]["data_docs"], published["gate"]["page"]):
        assert Path(path).is_file() and "_attempts" not in path, path
    market = Path(cfg.inputs.image_root).parent
    with open(market / "truth" / "bad_images.csv", encoding="utf-8") as f:
        planted = {r["image_path"]: IMAGE_REASON[r["kind"]] for r in csv.DictReader(f)}
    labeled = {r.image_path for r in io.read_table(spark, cfg.outputs.root, assemble.STAGE, "samples",
                                                   cfg.run.run_date()).select("image_path").collect()}
    quarantined = {r.image_path: r.reason for r in io.read_table(
        spark, cfg.outputs.root, shards.STAGE, "images_quarantine", cfg.run.run_date()).collect()}
    assert quarantined == {p: reason for p, reason in planted.items() if p in labeled}
    assert quarantined, "the small market should plant at least one bad labeled image"
    # each shard's stats file (img2dataset's habit): handed = written + quarantined, and all shards add up
    dataset = Path(shards.dataset_path(cfg))
    entries = json.loads((dataset / "manifest.json").read_text())["shards"]
    stats = [json.loads((dataset / s["stats"]).read_text()) for s in entries]
    assert [(s["shard"], s["successes"], s["sha256"]) for s in stats] == [(e["path"], e["samples"], e["sha256"])
                                                                        for e in entries]
    assert all(s["count"] == s["successes"] + sum(s["quarantined"].values()) for s in stats)
    assert sum(s["count"] for s in stats) == samples["in"]
    assert Counter(r for s in stats for r, n in s["quarantined"].items() for _ in range(n)) == Counter(
        quarantined.values())


def test_no_published_class_lacks_training_samples(built):
    cfg, summaries = built
    classes = _published_classes(cfg)
    assert classes and min(c["support"]["train"] for c in classes) >= cfg.dataset.min_train_samples
    folds = summaries[assemble.STAGE]["class_folds"]
    assert set(folds) == {"min_train_samples", "folded_into_parent", "dropped"}


def test_published_class_ids_are_dense_and_taxonomy_ids_name_the_same_class(spark, built):
    cfg, _ = built
    classes = _published_classes(cfg)
    taxonomy_names = {r["class_id"]: r["name"] for r in io.read_table(
        spark, cfg.outputs.root, taxonomy.STAGE, "taxonomy", cfg.run.run_date()).select("class_id", "name").collect()}
    assert [c["id"] for c in classes] == list(range(len(classes))) and classes
    assert [taxonomy_names.get(c["taxonomy_id"]) for c in classes] == [c["name"] for c in classes]


def test_a_build_without_a_taxonomy_publishes_null_taxonomy_ids(without_taxonomy):
    classes = _published_classes(without_taxonomy)
    assert classes and [c["taxonomy_id"] for c in classes] == [None] * len(classes)


def test_manifest_describes_the_shards_and_no_product_crosses_splits(built):
    cfg, summaries = built
    dataset = Path(shards.dataset_path(cfg))
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert not (dataset / "_staging").exists()
    for shard in manifest["shards"]:
        data = (dataset / shard["path"]).read_bytes()
        assert shard["bytes"] == len(data) and shard["sha256"] == hashlib.sha256(data).hexdigest()
        assert shard["samples"] <= 60 and shard["path"].startswith(f"shards/{shard['split']}-")
    samples = _samples(dataset, manifest)
    assert len(samples) == len({s["key"] for s in samples}) == summaries[shards.STAGE]["samples"]["out"]
    for split, counts in manifest["splits"].items():
        mine = [s for s in samples if s["split"] == split]
        assert counts["samples"] == len(mine) and counts["repeats"] == sum(s["repeats"] for s in mine)
    product_splits = {}
    for s in samples:
        product_splits.setdefault(s["product_id"], set()).add(s["split"])
    assert all(len(v) == 1 for v in product_splits.values())
    # a product's images share a shard, so a fold teacher (whole shards held out) never saw its other photos;
    # only where a bucket rolled over into a next shard may one product straddle the two
    product_shards = {}
    for s in samples:
        product_shards.setdefault(s["product_id"], set()).add(s["shard"])
    rolled_over = sum(not shard["path"].endswith("-000.tar") for shard in manifest["shards"])
    assert sum(len(v) > 1 for v in product_shards.values()) <= rolled_over
    assert len(product_shards) < len(samples)  # some product has several images: the check means something
    classes = json.loads((dataset / "classes.json").read_text())["classes"]
    assert [c["id"] for c in classes] == list(range(manifest["num_classes"]))
    names = {c["id"]: c["name"] for c in classes}
    for s in samples:
        assert s["class_ids"] == sorted(s["class_ids"]) == [x["class_id"] for x in s["labels"]]
        assert all(names[x["class_id"]] == x["name"] and 0 <= x["confidence"] <= 1 for x in s["labels"])
    # support counts images of a split that were labeled, before any image was quarantined
    assert sum(c["support"]["train"] for c in classes) >= sum(len(s["class_ids"]) for s in samples
                                                              if s["split"] == "train")
    assert manifest["dataset"] == cfg.run.run_date().isoformat() and len(manifest["config_sha256"]) == 64
    # side information: the build's word vectors travel with the dataset, each title as token ids
    vectors = manifest["word_vectors"]
    for name, digest in vectors["sha256"].items():
        assert hashlib.sha256((dataset / vectors["path"] / name).read_bytes()).hexdigest() == digest
    vocabulary = (dataset / vectors["path"] / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    assert all(isinstance(s["title_ids"], list) and len(s["title_ids"]) <= cfg.side_info.max_title_words
               and all(1 <= t < len(vocabulary) for t in s["title_ids"]) for s in samples)
    assert sum(1 for s in samples if any(t > 1 for t in s["title_ids"])) > 0.9 * len(samples)


def test_rerun_with_other_partitioning_gives_identical_bytes(spark, built):
    cfg, _ = built
    dataset = Path(shards.dataset_path(cfg))
    before = _files(dataset)
    history = Path(shards.gate_history_path(cfg))
    runs_before = history.read_text().splitlines()
    old = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "5")
    try:
        run_stages(cfg, [shards.STAGE])
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", old)
    assert _files(dataset) == before
    # the gate history of the outputs root gains exactly this run, and the committed page shows it
    runs_after = history.read_text().splitlines()
    assert runs_after[:-1] == runs_before
    entry = json.loads(runs_after[-1])
    assert entry["run_date"] == cfg.run.run_date().isoformat() and entry["success"] is True
    page = Path(shards.gate_page_path(cfg)).read_text(encoding="utf-8")
    assert entry["started"] in page and f"{len(runs_after)} gate runs" in page


def test_published_dataset_has_a_card_wids_indexes_and_the_samples_table_label_schema(spark, built):
    import yaml

    from tagmill.dataset.shards import LABEL_FIELDS

    cfg, _ = built
    dataset = Path(shards.dataset_path(cfg))
    manifest = json.loads((dataset / "manifest.json").read_text())
    classes = json.loads((dataset / "classes.json").read_text())["classes"]
    header = yaml.safe_load((dataset / manifest["card"]).read_text(encoding="utf-8").split("---\n")[1])
    features = {f["name"]: f for f in header["dataset_info"]["features"]}
    meta = {f["name"]: f for f in features["json"]["struct"]}
    names = meta["class_ids"]["list"]["class_label"]["names"]
    assert [names[str(i)] for i in range(len(names))] == [c["name"] for c in classes]
    assert ("cls" in features) == manifest["cls_entries"] == shards.CLS_ENTRIES
    for split, file in manifest["wids_index"].items():
        index = json.loads((dataset / file).read_text())
        assert index["shardlist"] == [{"url": s["path"], "nsamples": s["samples"]} for s in manifest["shards"]
                                      if s["split"] == split]
        assert sum(s["nsamples"] for s in index["shardlist"]) == manifest["splits"][split]["samples"] > 0
    assert set(manifest["wids_index"]) == {s for s, t in manifest["splits"].items() if t["shards"]}
    # one label schema: the shard JSON's labels have the samples table's label struct fields, same values
    table = io.read_table(spark, cfg.outputs.root, assemble.STAGE, "samples", cfg.run.run_date())
    struct = table.schema["labels"].dataType.elementType
    assert [(f.name, f.dataType.simpleString()) for f in struct.fields] == [
        (name, {"long": "bigint"}.get(kind, kind)) for name, kind in LABEL_FIELDS]
    published = {s["key"]: s["labels"] for s in _samples(dataset, manifest)}
    rows = {r["image_key"]: [x.asDict() for x in r["labels"]]
            for r in table.where(F.col("image_key").isin(sorted(published)[:20])).collect()}
    assert rows and all(published[key] == labels for key, labels in rows.items())


def test_interrupted_publish_keeps_the_published_dataset_and_next_run_publishes(spark, built, monkeypatch):
    cfg, _ = built
    dataset = Path(shards.dataset_path(cfg))
    before = _files(dataset)

    def crash(*args):
        raise KeyboardInterrupt("killed between shards and manifest")

    with monkeypatch.context() as patch:
        patch.setattr(publish, "write_manifest", crash)
        with pytest.raises(KeyboardInterrupt):
            run_stages(cfg, [shards.STAGE])
    assert _files(dataset) == before  # the last good dataset stays published, manifest and all
    attempt = runs.attempts(spark, cfg.outputs.root, cfg.run.run_date())[-1]
    assert not (Path(shards.dataset_path(cfg.replace("outputs", root=attempt.replace("file:", "")))) /
                "manifest.json").exists()
    run_stages(cfg, [shards.STAGE])
    assert _files(dataset) == before


def test_gate_failure_publishes_nothing_and_exits_non_zero(spark, built, tmp_path, capsys):
    cfg, _ = built
    run_date = cfg.run.run_date()
    samples_dir = io.table_path(cfg.outputs.root, assemble.STAGE, "samples", run_date)
    good = spark.read.parquet(samples_dir).persist()
    good.count()
    keep = tmp_path / "samples"
    good.write.parquet(str(keep))
    bad_key = good.orderBy("image_key").first()["image_key"]
    broken = good.withColumn("labels", F.when(
        F.col("image_key") == bad_key,
        F.transform("labels", lambda x: x.withField("confidence", F.lit(1.5)))).otherwise(F.col("labels")))
    broken.write.mode("overwrite").parquet(samples_dir)
    good.unpersist()
    config_file = tmp_path / "broken.toml"
    from tagmill.config import to_toml
    config_file.write_text(to_toml(cfg))
    dataset = Path(shards.dataset_path(cfg))
    published = _files(dataset)
    try:
        code = main(["-q", "shards", "--config", str(config_file)])
        err = capsys.readouterr().err
        assert code == 3
        assert _files(dataset) == published  # the last good dataset stays
        assert "confidence" in err and bad_key in err
        # the failed attempt keeps its gate report and Data Docs until the next run of the date
        attempt = runs.attempts(spark, cfg.outputs.root, run_date)[-1].replace("file:", "")
        gate = json.loads(Path(shards.gate_report_path(cfg.replace("outputs", root=attempt))).read_text())
        assert gate["success"] is False
        docs = Path(gate["data_docs"])
        assert docs.is_relative_to(attempt)
        assert docs.is_file() and str(docs) in err
        with pytest.raises(GateFailed):
            run_stages(cfg, [shards.STAGE])
    finally:
        spark.read.parquet(str(keep)).write.mode("overwrite").parquet(samples_dir)
    run_stages(cfg, [shards.STAGE])
    assert (Path(shards.dataset_path(cfg)) / "manifest.json").exists()

