"""`tagmill image-pass`: every listing image -> teacher tags, embedding, compact code and duplicate cluster.

Read, call labeling/, write. Every image read by mine-logs' listing table ends in `images` or in
`images_quarantine` with its reason, and the job fails before writing its summary if they do not add up.
Without a teacher (image_pass.teacher empty) every image is still read, hashed, decoded, coded and
deduplicated (the thumbnails alone verify a pair); teacher tags, embeddings and their code are skipped.
"""

from __future__ import annotations

import io as bytes_io
import logging
import time

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tagmill import stages
from tagmill.config import Config
from tagmill.jobs import io
from tagmill.jobs.frame import StageRun
from tagmill.jobs.spark import partitions_kept
from tagmill.labeling.calibration import BINS, FLOOR, STATUSES, calibrate, label_shift_ratios
from tagmill.labeling.codes import fit_projection
from tagmill.labeling.image_pass import add_code, check_teacher, fit_sample, forward_images, hash_images
from tagmill.labeling.label_issues import ISSUE_SCHEMA, label_issues
from tagmill.labeling.near_duplicates import (PIXEL_SCORES, cluster_items, code_candidates, image_clusters,
                                             verify_candidates)
from tagmill.labeling.seller_categories import category_labels
from tagmill.labeling.verification import pixel_scores_version

STAGE = stages.IMAGE_PASS
log = logging.getLogger("tagmill.image-pass")


TAG_SCHEMA = "image_key string, mid string, name string, score float, teacher_id string, teacher_version string"
"""teacher_scores and teacher_tags: one row per (image, teacher class)."""


def projection_path(root: str, run_date, code: str) -> str:
    """Where the run's projection of one code is kept (so later runs and the report can reuse it)."""
    return f"{stages.runs_path(root, STAGE, run_date)}/{code}_projection.npz"


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run the image pass for cfg.run's date; returns the run summary (also written as summary.json)."""
    ip = cfg.image_pass
    teacher = check_teacher(ip)  # a bad teacher file is refused before this date's outputs are touched
    stage = StageRun(spark, cfg, STAGE)
    root, run_date = stage.root, stage.run_date
    image_root, allowed = cfg.inputs.image_root, cfg.inputs.allowed_image_roots

    images = stage.read("images", stages.MINE_LOGS).select("image_key", "image_path").distinct()
    log.info("image-pass %s: reading and hashing every listing image", run_date)
    hashed = stage.write(hash_images(images, image_root, allowed), "hashed")

    partitions = max(1, int(spark.conf.get("spark.sql.shuffle.partitions")))
    unique = (hashed.where(F.col("reason").isNull()).groupBy("content_hash")
              .agg(F.min("image_path").alias("image_path")))
    if teacher is not None and len(teacher.folds) > 1:  # a fold model need not score what it trained on
        unique = unique.join(_seen_by(spark, hashed, teacher), "content_hash", "left").fillna(0, ["seen_by"])
    unique = unique.repartition(partitions, "content_hash").sortWithinPartitions("content_hash")
    if teacher is None:
        log.info("image-pass %s: no teacher (image_pass.teacher): decoding each unique image once for its "
                 "layout code and thumbnail; no teacher tags, embeddings or cold-start tagging", run_date)
    else:
        log.info("image-pass %s: decoding and forwarding each unique image once (teacher %s %s)", run_date,
                 teacher.teacher_id, teacher.version)
    forward_started = time.time()
    with partitions_kept(spark):  # decoding and the forward pass on every core: see partitions_kept
        forwarded = stage.write(forward_images(unique, image_root, ip, allowed), "forwarded")
    forward_seconds = time.time() - forward_started
    # a 64-bit id per content for the steps that hold all of them at once; checked unique below
    decoded = (forwarded.where(F.col("reason").isNull()).drop("reason", "detail")
               .withColumn("item", F.xxhash64("content_hash")).persist(StorageLevel.MEMORY_AND_DISK))

    # two codes: the embedding's (the compact code MSURU stores; needs a teacher) and the layout's (near-duplicate
    # candidates)
    coded = [("layout", "layout_code")] if teacher is None else [("embedding", "code"), ("layout", "layout_code")]
    codes = decoded if teacher else decoded.withColumn("code", F.lit(None).cast("binary"))
    for column, name in coded:
        projection = fit_projection(fit_sample(decoded, column, ip.code_fit_sample, cfg.run.seed), ip.code_bits,
                                    ip.code_method, cfg.run.seed)
        buffer = bytes_io.BytesIO()
        projection.save(buffer)
        io.write_bytes(spark, projection_path(root, run_date, name), buffer.getvalue())
        codes = codes.join(add_code(decoded, column, projection, name), "item")
    contents = stage.write(codes, "contents")
    decoded.unpersist()

    log.info("image-pass %s: near-duplicate candidates within %d bits, then verification", run_date,
             cfg.dedup.max_hamming)
    candidates = code_candidates(contents, ip.code_bits // 8, cfg.dedup, cfg.run.seed)
    earlier, earlier_date = _earlier_pixel_scores(stage)
    evidence = verify_candidates(candidates, contents, cfg.dedup, ip.thumbnail_size, embeddings=teacher is not None,
                                 earlier=earlier)
    for side in ("a", "b"):  # the content hashes, so an analyst can look the pair up
        evidence = evidence.join(contents.select(F.col("item").alias(f"item_{side}"),
                                                 F.col("content_hash").alias(f"content_hash_{side}")), f"item_{side}")
    evidence = stage.write(evidence, "duplicate_pairs")
    clusters = stage.write(cluster_items(evidence, contents, cfg.dedup.split_guard), "clusters")
    readable = hashed.where(F.col("reason").isNull()).select("image_key", "image_path", "content_hash")
    out = stage.write(image_clusters(readable, contents.select("item", "content_hash"), clusters), "images")

    calibration, issues = None, spark.createDataFrame([], ISSUE_SCHEMA)
    if teacher is None:
        tags, trained_on = spark.createDataFrame([], TAG_SCHEMA), 0
    else:
        # pooled only under calibration: otherwise the forward pass kept each image's tags over a threshold
        # already, and a mean of what is left would not be a score
        pool = ip.pool_listing_images and ip.target_precision
        listings = stage.read("images", stages.MINE_LOGS) if pool else None
        tags, trained_on = _teacher_scores(spark, contents, out, teacher, listings)
    tags = stage.write(tags, "teacher_scores")  # out of fold, every score down to calibration.FLOOR
    if ip.target_precision and teacher:
        issues = _label_issues(stage, tags)
        tags, thresholds, calibration = _calibrated(stage, tags, teacher)
        stage.write(thresholds, "teacher_thresholds")
    stage.write(tags, "teacher_tags")
    stage.write(issues, "label_issues")

    failed = (hashed.where(F.col("reason").isNull()).select("image_key", "image_path", "content_hash")
              .join(forwarded.where(F.col("reason").isNotNull()).select("content_hash", "reason", "detail"),
                    "content_hash").drop("content_hash"))
    quarantine = hashed.where(F.col("reason").isNotNull()).select("image_key", "image_path", "reason", "detail")
    stage.write(quarantine.unionByName(failed), "images_quarantine")

    summary = stage.finish(_counts(stage, images.count(), teacher, forward_seconds, trained_on, calibration,
                                   earlier_date))
    log.info("image-pass %s: %d images, %d unique forwarded (%.1f images/s), %d near-duplicate pairs verified",
             run_date, summary["images"]["out"], summary["contents"]["forwarded"],
             summary["contents"]["images_per_second"], summary["dedup"]["verified_pairs"])
    return summary


def _earlier_pixel_scores(stage: StageRun) -> tuple[DataFrame | None, str | None]:
    """(item_a, item_b and the PIXEL_SCORES of the pairs a finished image pass compared, its run date), or
    (None, None): the committed run of this date (a rebuild, e.g. the demo's with its teacher) or else of the
    latest date before it (yesterday's daily build), when its pixel scores were made the same way
    (verification.pixel_scores_version). A pair's item ids are its contents' hashes (xxhash64), so the same
    two images meet as the same pair in every run."""
    spark, run_date = stage.spark, stage.run_date
    root = io.committed_path(stage.root)
    version = pixel_scores_version(stage.cfg.image_pass.thumbnail_size)
    # this date's committed run, unless this run writes over it in place (no attempt folder)
    days = [run_date] if root != stage.root else []
    days.append(io.previous_run_date(spark, root, STAGE, run_date))
    for day in days:
        if day is None or not io.exists(spark, stages.summary_path(root, STAGE, day)):
            continue
        summary = io.read_summary(spark, root, STAGE, day)
        if (summary.get("dedup") or {}).get("pixel_scores", {}).get("version") != version:
            continue
        pairs = io.read_table(spark, root, STAGE, "duplicate_pairs", day)
        return pairs.select("item_a", "item_b", *PIXEL_SCORES), day.isoformat()
    return None, None


def _seen_by(spark: SparkSession, hashed: DataFrame, teacher) -> DataFrame:
    """content_hash, seen_by: bit f set where fold model f (f > 0; the first runs on every image, for the
    embedding) trained on an image of that content (its trained_images.txt)."""
    bits = _trained_images(spark, teacher).where(F.col("fold") > 0).select(
        "image_key", F.pow(F.lit(2), F.col("fold")).cast("long").alias("bit"))
    return (hashed.select("image_key", "content_hash").join(bits, "image_key")
            .groupBy("content_hash").agg(F.bit_or("bit").alias("seen_by")))


def _trained_images(spark: SparkSession, teacher) -> DataFrame:
    """image_key, fold: the images each fold model trained on (its trained_images.txt; a model trained
    elsewhere names none)."""
    trained = spark.createDataFrame([], "image_key string, fold int")
    for fold, model in enumerate(teacher.folds):
        if model.trained_images is not None:
            keys = spark.read.text(str(model.trained_images)).select(F.col("value").alias("image_key"))
            trained = trained.unionByName(keys.select("image_key", F.lit(fold).alias("fold")))
    return trained


def _teacher_scores(spark: SparkSession, contents: DataFrame, images: DataFrame, teacher,
                    listings: DataFrame | None = None) -> tuple[DataFrame, int]:
    """(TAG_SCHEMA rows of every forwarded tag, out of fold; how many images no fold may tag).

    contents: content_hash, tag_ids, tag_scores; images: image_key, content_hash, cluster; listings:
    image_key, product_id, to pool each listing's scores (_pooled_by_listing), or None."""
    labels = spark.createDataFrame([(i, x.mid, x.name, x.fold) for i, x in enumerate(teacher.labels)],
                                   "label_index int, mid string, name string, fold int")  # the vocabulary
    tags = (images.select("image_key", "content_hash")
            .join(contents.select("content_hash", F.arrays_zip("tag_ids", "tag_scores").alias("tags")), "content_hash")
            .select("image_key", F.explode("tags").alias("tag"))
            .select("image_key", F.col("tag.tag_ids").alias("label_index"), F.col("tag.tag_scores").alias("score"))
            .join(F.broadcast(labels), "label_index")
            .select("image_key", "mid", "name", "fold", "score", F.lit(teacher.teacher_id).alias("teacher_id"),
                    F.lit(teacher.version).alias("teacher_version")))
    tags, unseen = _out_of_fold(spark, tags, images, teacher)
    if listings is not None:
        tags = _pooled_by_listing(tags, unseen.where(F.col("folds") > 0).select("image_key"), listings)
    return tags, unseen.where(F.col("folds") == 0).count()


def _pooled_by_listing(tags: DataFrame, scored: DataFrame, listings: DataFrame) -> DataFrame:
    """tags with each image's score of a class replaced by the mean of that class's scores over the scored
    images of its listing (ImagePassConfig.pool_listing_images): an image with no score for the class adds 0,
    a pooled score under calibration.FLOOR goes. An image listed by several products pools with the smallest
    product id's images.

    tags: image_key, mid, name, score, teacher_id, teacher_version (out of fold); scored: image_key of every
    image scored out of fold, tagged or not; listings: image_key, product_id."""
    listing = (listings.groupBy("image_key").agg(F.min("product_id").alias("listing"))
               .join(scored, "image_key"))
    size = listing.groupBy("listing").agg(F.count(F.lit(1)).alias("size"))
    pooled = (tags.join(listing, "image_key")
              .groupBy("listing", "mid", "name", "teacher_id", "teacher_version").agg(F.sum("score").alias("total"))
              .join(size, "listing")
              .select("listing", "mid", "name", (F.col("total") / F.col("size")).cast("float").alias("score"),
                      "teacher_id", "teacher_version")
              .where(F.col("score") >= FLOOR))
    return listing.join(pooled, "listing").select(*tags.columns)


def _out_of_fold(spark: SparkSession, tags: DataFrame, images: DataFrame, teacher) -> tuple[DataFrame, DataFrame]:
    """(tags, unseen): each image's tags from the folds that never trained on it nor on a duplicate of it (each
    fold model's trained_images.txt; a model trained elsewhere saw nothing), its score the mean over those
    folds (a class a fold did not keep counts 0): out of fold, since a model is overconfident on its own
    training images. unseen: image_key, folds (how many folds never saw it; 0: no tags).

    tags: image_key, mid, name, fold, score, teacher_id, teacher_version; images: image_key, cluster."""
    clusters = images.select("image_key", "cluster")
    seen = _trained_images(spark, teacher).join(clusters, "image_key").select("cluster", "fold").distinct()
    unseen = (clusters.join(seen.groupBy("cluster").count(), "cluster", "left")
              .select("image_key", (F.lit(len(teacher.folds)) - F.coalesce("count", F.lit(0))).alias("folds")))
    kept = (tags.join(clusters, "image_key").join(seen, ["cluster", "fold"], "left_anti")
            .groupBy("image_key", "mid", "name", "teacher_id", "teacher_version").agg(F.sum("score").alias("total"))
            .join(unseen, "image_key")
            .select("image_key", "mid", "name", (F.col("total") / F.col("folds")).cast("float").alias("score"),
                    "teacher_id", "teacher_version"))
    return kept, unseen


def _label_issues(stage: StageRun, scores: DataFrame) -> DataFrame:
    """label_issues rows (labeling.label_issues): the search-log labels of the images the teacher never
    trained on that its out-of-fold scores (down to calibration.FLOOR) flag as likely wrong."""
    checked = scores.select("image_key").distinct()
    labels = stage.read("image_labels", stages.MINE_LOGS).select("image_key", "label").join(checked, "image_key")
    return label_issues(labels, scores.select("image_key", F.col("name").alias("label"), "score"), checked.count(),
                        FLOOR)


def _calibrated(stage: StageRun, scores: DataFrame, teacher) -> tuple[DataFrame, DataFrame, dict]:
    """(teacher tags, thresholds table, summary part): each class's tags over its calibrated threshold
    (labeling.calibration), checked on the images with search-log labels (or seller categories) among `scores`'
    (every forwarded tag down to calibration.FLOOR, of the images the teacher never trained on)."""
    ip, spark = stage.cfg.image_pass, stage.spark
    scores = scores.withColumn(
        "bin", F.least(F.floor(F.col("score") * BINS).cast("int"), F.lit(BINS - 1)))
    mined = stage.read("image_labels", stages.MINE_LOGS)
    labels = mined.select("image_key", F.col("label").alias("name"))
    if stage.cfg.dataset.seller_categories:  # a seller's own category checks a tag as well as a search does
        sellers = category_labels(stage.read("images", stages.MINE_LOGS), stage.cfg.text, ancestors=True)
        labels = labels.unionByName(sellers.select("image_key", F.col("label").alias("name")))
    classes = _tag_classes(stage)
    if classes is not None:  # a tag checks the class the taxonomy put it in (the teacher's classes are those)
        labels = _in_classes(labels, classes)
    labels = labels.distinct().persist()  # read by three actions below: the seller categories are mapped once
    checks = labels.join(scores.select("image_key").distinct(), "image_key")
    checked = (scores.join(_check_weights(checks, mined.select("image_key").distinct()), "image_key")
               .join(checks.withColumn("right", F.lit(1)), ["image_key", "name"], "left"))
    histogram = (checked.groupBy("name", "bin").agg(
        F.count(F.lit(1)).alias("checked"), F.count("right").alias("right"),
        F.sum("weight").alias("checked_weight"), F.sum(F.when(F.col("right") == 1, F.col("weight"))
                                                       .otherwise(0.0)).alias("right_weight"))
                 .toPandas())  # one row per class and score bin
    names = sorted({x.name for x in teacher.labels})
    vocabulary = spark.createDataFrame([(n,) for n in names], "name string")
    checkable = {r["name"] for r in labels.select("name").distinct().join(vocabulary, "name").collect()}
    labels.unpersist()
    table = calibrate(histogram, names, checkable, ip.target_precision, ip.calibration_min_positives)
    if ip.keep_unchecked_tags:
        table.loc[table["status"] == "unchecked", "threshold"] = ip.threshold
    kept = table[table["threshold"].notna()]
    cut = spark.createDataFrame([(n, int(round(t * BINS))) for n, t in zip(kept["name"], kept["threshold"])],
                                "name string, min_bin int")
    tags = (scores.join(F.broadcast(cut), "name").where(F.col("bin") >= F.col("min_bin"))
            .select("image_key", "mid", "name", "score", "teacher_id", "teacher_version"))
    thresholds = spark.createDataFrame(
        [tuple(None if pd.isna(v) else v for v in row) for row in table.itertuples(index=False)],
        "name string, status string, threshold double, precision double, checked long, right long")
    # estimated_precision: right of checked above each kept class's threshold, all kept classes together
    summary = {"target_precision": ip.target_precision, "min_positives": ip.calibration_min_positives,
               "classes": {s: int((table["status"] == s).sum()) for s in STATUSES},
               "estimated_precision": round(int(kept["right"].sum()) / int(kept["checked"].sum()), 4)
               if int(kept["checked"].sum()) else None}
    return tags, thresholds, summary


def _tag_classes(stage: StageRun) -> DataFrame | None:
    """tag, class_name: the class the taxonomy put each mined tag in (a misspelling, synonym or translation in
    the class it was merged into), from the taxonomy run of this date, else of the latest date before it; None
    before any. A teacher trained on a tagmill dataset names these classes, while mine-logs' labels are the
    tags as searched: without the map, a wallet image searched as "billfold" or "钱包" checked a "wallet" tag as
    wrong. On the harder demo market (more misspellings and Chinese) that refused 17 classes and tagged 0.777
    of the cold-start images (at 0.959 against the truth); with it 12 and 0.812 (at 0.953)."""
    spark, root, run_date = stage.spark, io.committed_path(stage.root), stage.run_date
    for day in (run_date, io.previous_run_date(spark, root, stages.TAXONOMY, run_date)):
        if day is not None and io.exists(spark, stages.summary_path(root, stages.TAXONOMY, day)):
            return (io.read_table(spark, root, stages.TAXONOMY, "tag_map", day)
                    .where(F.col("class_name").isNotNull()).select("tag", "class_name").distinct())
    return None


def _in_classes(labels: DataFrame, classes: DataFrame) -> DataFrame:
    """labels (image_key, name) with each tag renamed to its class (classes: tag, class_name, _tag_classes);
    a tag the map lacks stays as it is."""
    return (labels.join(F.broadcast(classes), labels["name"] == classes["tag"], "left")
            .select("image_key", F.coalesce("class_name", "name").alias("name")))


def _check_weights(checks: DataFrame, searched: DataFrame) -> DataFrame:
    """image_key, weight of each checked image: the checks reweighted to the label mix of the images the
    teacher is there to tag, those of listings no search touched (labeling.calibration.label_shift_ratios,
    with that mix counted on the checked cold-start images); an image weighs the mean of its labels' ratios.

    checks: image_key, name (the labels of the images the teacher scored out of fold); searched: image_key of
    the images with search-log labels."""
    every = checks.groupBy("name").agg(F.count(F.lit(1)).alias("checked"))
    cold = (checks.join(searched, "image_key", "left_anti").groupBy("name")
            .agg(F.count(F.lit(1)).alias("cold")))
    # one row per label, in a fixed order so that the sums, and the published precision, never vary
    counts = every.join(cold, "name", "left").fillna(0, ["cold"]).orderBy("name").toPandas()
    ratios = label_shift_ratios(counts["checked"].to_numpy(float), counts["cold"].to_numpy(float))
    ratio = checks.sparkSession.createDataFrame(list(zip(counts["name"], ratios.tolist())),
                                                "name string, ratio double")
    return checks.join(F.broadcast(ratio), "name").groupBy("image_key").agg(F.avg("ratio").alias("weight"))


def _counts(stage: StageRun, images_in: int, teacher, forward_seconds: float, trained_on: int,
            calibration: dict | None, earlier_date: str | None) -> dict:
    """Counts read back from the written tables; they must add up."""
    cfg, table = stage.cfg, stage.read

    quarantined = {r["reason"]: r["count"] for r in
                   table("images_quarantine").groupBy("reason").count().orderBy("reason").collect()}
    images = table("images").agg(
        F.count(F.lit(1)).alias("out"), F.sum(F.col("canonical").cast("long")).alias("kept"),
        F.sum((F.col("relation") == "exact").cast("long")).alias("exact"),
        F.sum((F.col("relation") == "near").cast("long")).alias("near"),
        F.countDistinct("cluster").alias("clusters")).first()
    forwarded = table("forwarded").agg(F.count(F.lit(1)).alias("forwarded"),
                                       F.sum(F.col("reason").isNull().cast("long")).alias("decoded")).first()
    contents = table("contents").agg(F.count(F.lit(1)).alias("n"), F.countDistinct("item").alias("ids")).first()
    if contents["n"] != contents["ids"]:
        raise io.CountMismatch(f"content ids collide: {contents['n']} contents, {contents['ids']} distinct ids")
    by_reason = (table("duplicate_pairs").groupBy("reason")
                 .agg(F.count(F.lit(1)).alias("count"), F.sum(F.col("pixels_reused").cast("long")).alias("reused"))
                 .collect())
    pairs = {r["reason"]: r["count"] for r in by_reason}
    reused = sum(r["reused"] or 0 for r in by_reason)
    tags = table("teacher_tags").agg(F.count(F.lit(1)).alias("tags"),
                                     F.countDistinct("image_key").alias("images")).first()
    issues = table("label_issues").agg(F.count(F.lit(1)).alias("flagged"),
                                       F.countDistinct("label").alias("classes")).first()
    labeled = table("image_labels", stages.MINE_LOGS).select("image_key")
    cold = table("images").select("image_key").subtract(labeled.distinct())
    cold_tagged = cold.join(table("teacher_tags").select("image_key").distinct(), "image_key").count()
    n_forwarded = int(forwarded["forwarded"])
    ip = cfg.image_pass
    summary = {
        "images": {"in": images_in, "out": int(images["out"]), "quarantined": quarantined},
        "teacher": None if teacher is None else {
            "id": teacher.teacher_id, "version": teacher.version, "labels": len(teacher.folds[0].labels),
            "folds": len(teacher.folds), "image_size": teacher.image_size, "bf16": ip.bf16,
            "threshold": ip.threshold, "top_k": ip.top_k,
            # class prototypes (trainer.prototypes) or the logits
            "scores": "prototypes" if teacher.folds[0].prototypes is not None else teacher.folds[0].scores},
        "skipped": [] if teacher else ["teacher tags", "embeddings and their code", "cold-start tagging",
                                       "the embedding check of near-duplicate pairs (pixels alone decide)"],
        "contents": {"forwarded": n_forwarded, "decoded": int(forwarded["decoded"]),
                     "forward_seconds": round(forward_seconds, 1),
                     "images_per_second": round(n_forwarded / forward_seconds, 1) if forward_seconds else 0.0},
        "tags": {"tags": int(tags["tags"]), "images_tagged": int(tags["images"])},
        "images_the_teacher_trained_on": trained_on,  # and their duplicates: no teacher tags (out of fold)
        "calibration": calibration,
        # search-log labels the teacher's out-of-fold scores flag as likely wrong (dataset.drop_label_issues)
        "label_issues": {"flagged": int(issues["flagged"]), "classes": int(issues["classes"]),
                         "checked_images": table("teacher_scores").select("image_key").distinct().count()},
        "cold_start": {"images": cold.count(), "tagged": cold_tagged},
        "codes": {"bits": ip.code_bits, "method": ip.code_method},
        "dedup": {"max_hamming": cfg.dedup.max_hamming, "candidate_pairs": sum(pairs.values()),
                  "verified_pairs": pairs.get("verified", 0),
                  "rejected_pairs": {k: v for k, v in sorted(pairs.items()) if k != "verified"},
                  # pairs whose pixels an earlier run of the same version compared are not compared again
                  "pixel_scores": {"version": pixel_scores_version(ip.thumbnail_size), "reused": reused,
                                   "reused_from": earlier_date},
                  "clusters": int(images["clusters"]), "kept_images": int(images["kept"]),
                  "exact_duplicate_images": int(images["exact"] or 0),
                  "near_duplicate_images": int(images["near"] or 0)},
    }
    stage.check_counts("images", images_in, summary["images"]["out"], quarantined, "images_quarantine",
                       hint="missing_image on most rows usually means inputs.image_root is not the folder the "
                            "catalog's image_paths are relative to.")
    return summary
