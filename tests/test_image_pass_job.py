"""image-pass -> assemble -> shards end to end on the small generated marketplace, with a teacher trained
here by `tagmill train`: counts, quarantine reasons, planted duplicates, the leak-free split, teacher tags
as a second label source (cold start included), and refused inputs."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import pickle
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from tagmill.jobs import assemble, image_pass, io, mine_logs, shards, side_info, taxonomy
from tagmill.jobs.build import run_stages
from tagmill.jobs.frame import StageRun
from tagmill.jobs.cli import main
from tagmill.labeling.image_pass import hash_images
from tagmill.labeling.near_duplicates import PIXEL_SCORES
from tagmill.labeling.verification import pixel_scores_version
from tagmill.trainer.train import train

pytestmark = [pytest.mark.spark, pytest.mark.slow]

IMAGE_REASON = {"missing": "missing_image", "empty": "empty_image", "truncated": "truncated_image",
                "corrupt": "undecodable_image"}


@pytest.fixture(scope="module")
def passed(side_info_market, tmp_path_factory):
    """(cfg, summaries, truth folder): a teacher trained on the search-log dataset, then the image pass,
    assemble and shards with it, in an outputs root of their own (mine-logs' and side-info's outputs copied in)."""
    cfg, _ = side_info_market
    root = tmp_path_factory.mktemp("image-pass-out")
    for stage in (mine_logs.STAGE, side_info.STAGE):
        shutil.copytree(Path(cfg.outputs.root) / stage, root / stage)
    cfg = cfg.replace("outputs", root=str(root)).replace("dataset", image_max_side=48)
    run_stages(cfg, [taxonomy.STAGE, assemble.STAGE, shards.STAGE])
    teacher = root / "teacher"
    tcfg = cfg.train.__class__(arch="resnet18", image_size=32, epochs=2, freeze_epochs=0, batch_size=32,
                               optimizer="adamw", lr=0.002, weight_decay=0.05, num_workers=0, use_repeats=False)
    train(shards.dataset_path(cfg) + "/manifest.json", teacher, tcfg, seed=1)
    # a 2-epoch 32-pixel teacher is near chance: calibrated to 0.9 it would tag next to nothing, so these tests
    # of dedup, split and provenance take its tags at the global threshold (calibration: test_calibration), by
    # its logits (its prototypes' softmax tags next to nothing at 0.5 either; they are test_teacher's)
    cfg = cfg.replace("image_pass", teacher=str(teacher), batch_size=16, code_fit_sample=2000, target_precision=0,
                      prototypes=False)
    summaries = run_stages(cfg, [image_pass.STAGE, taxonomy.STAGE, assemble.STAGE, shards.STAGE])
    return cfg, summaries, Path(cfg.inputs.image_root).parent / "truth"


def _truth(truth: Path, name: str) -> list[dict]:
    with open(truth / name, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _table(spark, cfg, stage, name):
    return io.read_table(spark, cfg.outputs.root, stage, name, cfg.run.run_date())


def test_counts_add_up_and_bad_images_are_quarantined_with_their_reason(spark, passed):
    cfg, summaries, truth = passed
    s = summaries[image_pass.STAGE]
    assert s["images"]["in"] == s["images"]["out"] + sum(s["images"]["quarantined"].values())
    quarantined = {r.image_path: r.reason for r in _table(spark, cfg, image_pass.STAGE, "images_quarantine").collect()}
    listed = {r.image_path for r in _table(spark, cfg, mine_logs.STAGE, "images").select("image_path").collect()}
    planted = {r["image_path"]: IMAGE_REASON[r["kind"]] for r in _truth(truth, "bad_images.csv")
               if r["image_path"] in listed}
    assert quarantined == planted and planted
    # exact copies were forwarded once: fewer forward passes than usable images
    assert s["contents"]["forwarded"] < s["images"]["out"] + len(planted)
    a = summaries[assemble.STAGE]["images"]
    assert a["in"] == a["out"] + sum(a["quarantined"].values())
    sh = summaries[shards.STAGE]["samples"]
    assert sh["in"] == a["out"] and sh["quarantined"] == {}  # the image pass already took out the bad images


def test_planted_duplicates_are_clustered_without_false_merges(spark, passed):
    cfg, _, truth = passed
    group_of = {r["image_path"]: r["group_id"] for r in _truth(truth, "duplicates.csv")}
    cluster_of = {r.image_path: r.cluster for r in _table(spark, cfg, image_pass.STAGE, "images").collect()}
    true_pairs, found_pairs = set(), set()
    by_cluster = defaultdict(list)
    for path, cluster in cluster_of.items():
        by_cluster[cluster].append(path)
    for members in by_cluster.values():
        found_pairs |= {(a, b) for a in members for b in members if a < b}
    by_group = defaultdict(list)
    for path, group in group_of.items():
        if path in cluster_of:
            by_group[group].append(path)
    for members in by_group.values():
        true_pairs |= {(a, b) for a in members for b in members if a < b}
    correct = true_pairs & found_pairs
    precision, recall = len(correct) / len(found_pairs), len(correct) / len(true_pairs)
    # The issue's targets (precision 0.99, recall 0.95) are asserted on the planted look-alike set, which is
    # deterministic (test_near_duplicates). Here about 32 planted pairs make each pair worth 3 points, and the
    # teacher trained for 2 epochs at 32 px gives embeddings that vary from run to run. Measured: precision
    # 0.85-0.97 (one-shape look-alikes on striped backgrounds, zoomed versions of each other) and recall
    # 0.91-1.0 (a JPEG quality-30 copy of a 64 px image, or a brightened copy the teacher embeds apart).
    assert precision >= 0.85, (precision, sorted(found_pairs - true_pairs)[:5])
    assert recall >= 0.85, (recall, sorted(true_pairs - found_pairs)[:5])


def test_no_duplicate_component_and_no_product_crosses_splits(spark, passed):
    cfg, _, truth = passed
    images = _table(spark, cfg, image_pass.STAGE, "images")
    samples = _table(spark, cfg, assemble.STAGE, "samples")
    # exact: every component of verified (or guarded) pairs lands in one split, through its samples
    component_splits = (images.join(samples.select("image_key", "split"), "image_key")
                        .groupBy("component").agg(F.countDistinct("split").alias("n")))
    assert component_splits.where("n > 1").count() == 0
    images = images.select("image_path", "cluster")
    split_of = {r.image_path: r.split for r in images.join(
        samples.join(images.withColumnRenamed("image_path", "canonical_path"),
                     F.col("image_path") == F.col("canonical_path")).select("cluster", "split"), "cluster").collect()}
    splits = defaultdict(set)
    for r in _truth(truth, "duplicates.csv"):
        if r["image_path"] in split_of:
            splits[r["group_id"]].add(split_of[r["image_path"]])
    # the planted truth: no duplicate group crosses a split
    crossing = {g: s for g, s in splits.items() if len(s) > 1}
    assert splits and not crossing, crossing
    per_product = samples.groupBy("product_id").agg(F.countDistinct("split").alias("n"))
    assert per_product.where("n > 1").count() == 0
    # the components stay small: no chain of look-alikes drags most products into one split
    sizes = {r["split"]: r["count"] for r in samples.groupBy("split").count().collect()}
    total = sum(sizes.values())
    assert all(sizes.get(split, 0) >= 0.04 * total for split in ("train", "validation", "test")), sizes


def test_teacher_tags_are_a_second_source_with_provenance_and_reach_cold_start_images(spark, passed):
    cfg, summaries, _ = passed
    s = summaries[image_pass.STAGE]
    assert s["cold_start"]["images"] > 0 and s["cold_start"]["tagged"] > 0
    tags = _table(spark, cfg, image_pass.STAGE, "teacher_tags")
    version = s["teacher"]["version"]
    assert {(r.teacher_id, r.teacher_version) for r in tags.select("teacher_id", "teacher_version").distinct()
            .collect()} == {("teacher", version)}
    labels = _table(spark, cfg, assemble.STAGE, "samples").select(F.explode("labels").alias("l")).select("l.*")
    teacher = labels.where(F.col("source") == "teacher")
    assert teacher.count() > 0
    assert {r.teacher for r in teacher.select("teacher").distinct().collect()} == {f"teacher@{version}"}
    assert labels.where((F.col("source") == "teacher") & ((F.col("confidence") < cfg.image_pass.threshold)
                                                           | (F.col("confidence") > 1))).count() == 0
    # cold-start listings get labels from the teacher (and their sellers), never from the search log
    sources = _table(spark, cfg, assemble.STAGE, "samples").select(F.transform("labels", lambda x: x["source"])
                                                                      .alias("s"))
    assert sources.where(F.array_contains("s", "teacher") & ~F.array_contains("s", "search_log")).count() > 0
    # a near-chance teacher at the global threshold adds look-alike classes to labeled images: they stay out
    left = summaries[assemble.STAGE]["teacher_tags"]
    assert left["in"] == left["kept"] + left["unchecked_additions_left_out"]
    assert left["kept"] > 0 and left["unchecked_additions_left_out"] > 0


def test_a_path_outside_the_image_root_is_refused(spark, tmp_path):
    (tmp_path / "inside.jpg").write_bytes(b"not really an image")
    rows = [("k1", "inside.jpg"), ("k2", "../outside.jpg"), ("k3", "a/../../x.jpg"), ("k4", "/etc/hostname")]
    df = spark.createDataFrame(rows, "image_key string, image_path string").repartition(2)
    reasons = {r.image_key: r.reason for r in hash_images(df, str(tmp_path)).collect()}
    assert reasons == {"k1": None, "k2": "bad_image_path", "k3": "bad_image_path", "k4": "bad_image_path"}


def test_a_pickle_that_is_not_a_model_is_refused_by_the_cli(passed, tmp_path, capsys):
    cfg, _, _ = passed
    evil = tmp_path / "teacher.pt"
    evil.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    config_file = tmp_path / "cfg.toml"
    from tagmill.config import to_toml
    config_file.write_text(to_toml(cfg))
    code = main(["image-pass", "--config", str(config_file), "--teacher", str(evil)])
    err = capsys.readouterr().err
    assert code == 2 and str(evil) in err and "unpickle" in err
    summary = json.loads(Path(io.summary_path(cfg.outputs.root, image_pass.STAGE, cfg.run.run_date())).read_text())
    assert summary["teacher"]["id"] == "teacher"  # the earlier run's summary is untouched: refused before any work


NO_DUPLICATES = {"listings": 40, "images_per_listing": [1, 1], "sessions": 800, "reupload_share": 0.0,
                 "stock_photo_groups": 0, "bad_row_share": 0.0, "bad_image_share": 0.0, "image_size": 64}
"""A catalog of 40 listings with one distinct image each: no duplicate pair anywhere."""


def test_a_catalog_without_any_duplicate_builds(passed, tmp_path):
    from tagmill.config import load_config
    from tagmill.jobs.demo import write_demo_market

    cfg, _, _ = passed
    small = load_config(write_demo_market(tmp_path, load_config(None, {"demo": NO_DUPLICATES})))
    small = small.replace("outputs", root=str(tmp_path / "out")).replace("spark", master="local[2]")
    small = small.replace("mining", min_label_images=2).replace("taxonomy", min_images=2)
    small = small.replace("image_pass", teacher=cfg.image_pass.teacher, batch_size=16, code_fit_sample=2000)
    summaries = run_stages(small)
    s = summaries[image_pass.STAGE]
    assert s["images"]["in"] == 40 and s["images"]["out"] == 40
    assert s["dedup"]["exact_duplicate_images"] == 0
    assert s["dedup"]["clusters"] == s["images"]["out"]  # every image its own cluster
    assert summaries[shards.STAGE]["samples"]["out"] > 0


def test_the_teacher_tags_no_image_it_trained_on(spark, passed):
    cfg, summaries, _ = passed
    trained = set((Path(cfg.image_pass.teacher) / "trained_images.txt").read_text().split())
    images = _table(spark, cfg, image_pass.STAGE, "images").select("image_key", "cluster")
    seen = {r.cluster for r in images.collect() if r.image_key in trained}
    assert trained and seen
    tags = _table(spark, cfg, image_pass.STAGE, "teacher_tags").join(images, "image_key")
    # out of fold: no tag on an image of the teacher's training split, nor on a duplicate of one
    assert tags.count() > 0 and tags.where(F.col("cluster").isin(sorted(seen))).count() == 0
    unseen = images.where(~F.col("cluster").isin(sorted(seen))).count()
    assert summaries[image_pass.STAGE]["images_the_teacher_trained_on"] == images.count() - unseen


def test_without_a_teacher_the_image_pass_still_deduplicates(spark, passed, tmp_path):
    """The same candidates and pixel scores as with the teacher; a pair is verified on its pixels alone, so
    every pair the teacher run verified is verified here too, and its duplicate components only grow."""
    cfg, summaries, truth = passed
    root = tmp_path / "out"
    for stage in (mine_logs.STAGE, side_info.STAGE):
        shutil.copytree(Path(cfg.outputs.root) / stage, root / stage)
    bare = cfg.replace("outputs", root=str(root)).replace("image_pass", teacher="")
    done = run_stages(bare, [image_pass.STAGE, taxonomy.STAGE, assemble.STAGE])
    s = done[image_pass.STAGE]
    assert s["teacher"] is None and "teacher tags" in s["skipped"]
    assert s["images"] == summaries[image_pass.STAGE]["images"]  # every image read, counts that add up
    assert _table(spark, bare, image_pass.STAGE, "teacher_tags").count() == 0

    def pairs(c):
        return {(r.item_a, r.item_b): r for r in _table(spark, c, image_pass.STAGE, "duplicate_pairs").collect()}
    with_teacher, without = pairs(cfg), pairs(bare)
    assert with_teacher.keys() == without.keys() and without  # the layout code needs no teacher
    min_pixel = cfg.dedup.min_pixel_similarity
    for key, bare_pair in without.items():
        assert bare_pair.verified == (bare_pair.pixel_similarity >= min_pixel)  # NaN compares False
        if with_teacher[key].reason != "embedding_differs":  # the teacher let the pixels decide: same decision
            assert with_teacher[key].verified == bare_pair.verified
            assert with_teacher[key].pixel_similarity == pytest.approx(bare_pair.pixel_similarity, nan_ok=True)
    components = {}
    for c in (cfg, bare):
        components[c.image_pass.teacher] = {r.image_key: r.component for r in
                                            _table(spark, c, image_pass.STAGE, "images").collect()}
    taught, plain = components[cfg.image_pass.teacher], components[""]
    groups = defaultdict(set)
    for key, component in taught.items():
        groups[component].add(plain[key])
    assert all(len(g) == 1 for g in groups.values())  # each component with the teacher sits in one without
    # assemble uses the image pass's clusters: one sample per cluster, not per image
    assert done[assemble.STAGE]["image_pass"] and done[assemble.STAGE]["images"]["quarantined"]["merged_duplicate"]


def test_a_rebuild_compares_no_pair_on_pixels_that_the_last_run_compared(spark, passed, tmp_path):
    """A rebuild of the date (the demo's, with its teacher; or tomorrow's build) reuses the pixel scores of the
    pairs the last run compared with the same rules and thumbnails, and decides exactly as comparing afresh;
    other thumbnails or other rules: nothing is reused."""
    cfg, _, _ = passed
    root = tmp_path / "out"
    for stage in (mine_logs.STAGE, side_info.STAGE, image_pass.STAGE):
        shutil.copytree(Path(cfg.outputs.root) / stage, root / stage)
    again = cfg.replace("outputs", root=str(root))

    def pairs(c):
        return {(r.item_a, r.item_b): r for r in _table(spark, c, image_pass.STAGE, "duplicate_pairs").collect()}
    first = pairs(again)
    compared = sum(not math.isnan(r.pixel_similarity) for r in first.values())
    assert compared and not any(r.pixels_reused for r in first.values())
    pixels = run_stages(again, [image_pass.STAGE])[image_pass.STAGE]["dedup"]["pixel_scores"]
    assert pixels == {"version": pixel_scores_version(cfg.image_pass.thumbnail_size), "reused": compared,
                      "reused_from": cfg.run.run_date().isoformat()}
    second = pairs(again)
    assert second.keys() == first.keys()
    for key, pair in second.items():
        assert pair.pixels_reused == (not math.isnan(first[key].pixel_similarity))
        assert (pair.verified, pair.reason) == (first[key].verified, first[key].reason)
        for name in PIXEL_SCORES:
            assert getattr(pair, name) == pytest.approx(getattr(first[key], name), nan_ok=True)
    # another thumbnail size or an older verifier (another version in the run's summary): nothing is reused
    attempt = again.replace("outputs", root=f"{io.attempts_path(str(root), again.run.run_date())}/check")
    date = again.run.run_date().isoformat()
    assert image_pass._earlier_pixel_scores(StageRun(spark, attempt, image_pass.STAGE))[1] == date
    tomorrow = attempt.replace("run", date=(again.run.run_date() + dt.timedelta(days=1)).isoformat())
    assert image_pass._earlier_pixel_scores(StageRun(spark, tomorrow, image_pass.STAGE))[1] == date  # the daily build
    assert image_pass._earlier_pixel_scores(StageRun(spark, attempt.replace("image_pass", thumbnail_size=48),
                                                     image_pass.STAGE)) == (None, None)
    summary = io.read_summary(spark, str(root), image_pass.STAGE, again.run.run_date())
    summary["dedup"]["pixel_scores"]["version"] = "pixel rules 0"
    io.write_json(spark, io.summary_path(str(root), image_pass.STAGE, again.run.run_date()), summary)
    assert image_pass._earlier_pixel_scores(StageRun(spark, attempt, image_pass.STAGE)) == (None, None)


def test_likely_wrong_labels_are_flagged_out_of_fold_and_dropped_only_on_request(spark, passed, tmp_path):
    cfg, _, _ = passed
    root = tmp_path / "out"
    # the image pass's outputs too: its pixel scores are reused (dedup is not what this test is about)
    for stage in (mine_logs.STAGE, side_info.STAGE, image_pass.STAGE):
        shutil.copytree(Path(cfg.outputs.root) / stage, root / stage)
    # the same model as if trained elsewhere (no trained_images.txt): every labeled image is out of fold, so
    # each class has enough labels to judge
    external = tmp_path / "external-teacher"
    shutil.copytree(cfg.image_pass.teacher, external)
    (external / "trained_images.txt").unlink()
    checked = cfg.replace("outputs", root=str(root)).replace("image_pass", target_precision=0.9,
                                                             teacher=str(external))
    s = run_stages(checked, [image_pass.STAGE])[image_pass.STAGE]
    issues = _table(spark, checked, image_pass.STAGE, "label_issues")
    scored = _table(spark, checked, image_pass.STAGE, "teacher_scores").select("image_key").distinct()
    mined = _table(spark, checked, mine_logs.STAGE, "image_labels")
    assert s["label_issues"]["flagged"] == issues.count() > 0
    assert s["label_issues"]["checked_images"] == scored.count()
    # each flag is a search-log label of an image the teacher never trained on (it has out-of-fold scores)
    assert issues.join(mined, ["image_key", "label"], "left_anti").count() == 0
    assert issues.join(scored, "image_key", "left_anti").count() == 0

    def search_log_labels(c):
        run_stages(c, [taxonomy.STAGE, assemble.STAGE])
        samples = _table(spark, c, assemble.STAGE, "samples")
        return samples.select(F.explode("labels").alias("l")).where(F.col("l.source") == "search_log").count()
    kept = search_log_labels(checked)
    dropped = search_log_labels(checked.replace("dataset", drop_label_issues=True))
    assert dropped < kept  # the flagged labels left the dataset, and only with drop_label_issues


def test_a_listing_s_images_are_scored_together(spark):
    tags = spark.createDataFrame(
        [("a1", "m1", "sofa", 0.9), ("a1", "m2", "lamp", 0.3), ("a2", "m1", "sofa", 0.6),
         ("b1", "m2", "lamp", 0.8)],
        "image_key string, mid string, name string, score float").selectExpr(
        "image_key", "mid", "name", "score", "'t' as teacher_id", "'1' as teacher_version")
    # a3 was scored and kept no tag (it counts 0); a9 is listed and was not scored (out of fold: a fold trained
    # on it), so it neither counts nor gets a score
    scored = spark.createDataFrame([(k,) for k in ("a1", "a2", "a3", "b1")], "image_key string")
    listings = spark.createDataFrame([("a1", "p1"), ("a2", "p1"), ("a3", "p1"), ("a9", "p1"), ("b1", "p2"),
                                      ("b1", "p3")], "image_key string, product_id string")
    pooled = image_pass._pooled_by_listing(tags, scored, listings)
    assert pooled.columns == tags.columns
    got = {(r.image_key, r.name): round(r.score, 6) for r in pooled.collect()}
    # sofa: (0.9 + 0.6 + 0) / 3 for every scored image of p1; lamp: 0.3 / 3 = 0.1, over the floor (0.05);
    # b1 pools with p2, the smaller of its two listings, alone
    assert got == {**{(k, "sofa"): 0.5 for k in ("a1", "a2", "a3")},
                   **{(k, "lamp"): 0.1 for k in ("a1", "a2", "a3")}, ("b1", "lamp"): 0.8}


def test_checks_are_reweighted_to_the_label_mix_of_the_cold_start_images(spark):
    # c1, c2: cold start, checked by their sellers' categories; s1-s3 searched: two of "mug", one of "vase"
    checks = spark.createDataFrame([("c1", "sofa"), ("c2", "sofa"), ("c2", "furniture"), ("s1", "mug"),
                                    ("s2", "mug"), ("s3", "vase")], "image_key string, name string")
    searched = spark.createDataFrame([("s1",), ("s2",), ("s3",), ("s9",)], "image_key string")
    got = {r.image_key: round(r.weight, 6) for r in image_pass._check_weights(checks, searched).collect()}
    # cold-start mix, add-one smoothed over 4 labels: sofa 3/7, furniture 2/7, mug 1/7, vase 1/7; among all
    # 6 checks: 2/6, 1/6, 2/6, 1/6; an image weighs the mean of its labels' ratios
    sofa, furniture, mug, vase = 18 / 14, 12 / 7, 3 / 7, 6 / 7
    assert got == {"c1": round(sofa, 6), "c2": round((sofa + furniture) / 2, 6), "s1": round(mug, 6),
                   "s2": round(mug, 6), "s3": round(vase, 6)}


def test_a_searched_tag_checks_the_class_the_taxonomy_merged_it_into(spark, passed):
    cfg, _, _ = passed
    attempt = StageRun(spark, cfg, image_pass.STAGE)
    classes = image_pass._tag_classes(attempt)  # the passed build's taxonomy run
    mapped = {r.tag: r.class_name for r in classes.collect()}
    taxonomy_map = _table(spark, cfg, taxonomy.STAGE, "tag_map").where(F.col("class_name").isNotNull())
    assert mapped == {r.tag: r.class_name for r in taxonomy_map.collect()}
    labels = spark.createDataFrame([("i1", "billfold"), ("i1", "wallet"), ("i2", "lamp")],
                                   "image_key string, name string")
    renamed = image_pass._in_classes(labels, spark.createDataFrame([("billfold", "wallet"), ("钱包", "wallet")],
                                                                    "tag string, class_name string"))
    assert sorted(map(tuple, renamed.collect())) == [("i1", "wallet"), ("i1", "wallet"), ("i2", "lamp")]
