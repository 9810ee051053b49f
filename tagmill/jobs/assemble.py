"""`tagmill assemble`: labels of every source -> class index + one sample per duplicate cluster.

Read, call dataset.assemble, write. Every labeled image becomes a sample, or is merged into its duplicate
cluster's sample, or was unusable in the image pass; the job fails before writing its summary if those do
not add up. Without a teacher configured (image_pass.teacher) the search log is the only source and each
image is its own cluster.
"""

from __future__ import annotations

import logging
import time

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tagmill import __version__
from tagmill.config import SPLITS, Config
from tagmill.dataset.assemble import (assemble_samples, class_index, class_support, map_to_classes, own_clusters,
                                      map_to_query_clusters, search_log_labels, teacher_labels, with_title_ids)
from tagmill.jobs import image_pass, io, mine_logs, side_info, taxonomy
from tagmill.labeling.word_vectors import VOCABULARY_FILE

STAGE = "assemble"
log = logging.getLogger("tagmill.assemble")


def source_labels(spark: SparkSession, cfg: Config) -> DataFrame:
    """LABEL_COLUMNS rows of every source for cfg.run's date: the search log's, and the teacher's tags when a
    teacher is configured (refusing a date the image pass did not finish)."""
    root, run_date = cfg.outputs.root, cfg.run.run_date()
    labels = search_log_labels(io.read_table(spark, root, mine_logs.STAGE, "image_labels", run_date))
    if cfg.image_pass.teacher:
        io.read_summary(spark, root, image_pass.STAGE, run_date)
        tags = io.read_table(spark, root, image_pass.STAGE, "teacher_tags", run_date)
        labels = labels.unionByName(teacher_labels(tags, io.read_table(spark, root, mine_logs.STAGE, "images",
                                                                       run_date)))
    return labels


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run assemble for cfg.run's date; returns the run summary (also written as summary.json)."""
    started = time.time()
    run_date = cfg.run.run_date()
    root = cfg.outputs.root
    summary_file = io.summary_path(root, STAGE, run_date)
    io.delete(spark, summary_file)

    def mined(table):
        return io.read_table(spark, root, mine_logs.STAGE, table, run_date)

    def image_pass_table(table):
        return io.read_table(spark, root, image_pass.STAGE, table, run_date)

    image_labels = mined("image_labels")
    raw = source_labels(spark, cfg)
    with_image_pass = bool(cfg.image_pass.teacher)
    if with_image_pass:
        clusters = image_pass_table("images")
    else:
        log.info("assemble %s: no teacher configured (image_pass.teacher): search-log labels only, each image "
                 "its own cluster", run_date)
        clusters = own_clusters(image_labels)
    raw = raw.persist(StorageLevel.MEMORY_AND_DISK)
    paths, mapped = None, True
    if cfg.dataset.label_space == "query_clusters":
        io.read_summary(spark, root, side_info.STAGE, run_date)
        labels = map_to_query_clusters(raw, io.read_table(spark, root, side_info.STAGE, "query_clusters", run_date))
    elif cfg.taxonomy.enabled:
        io.read_summary(spark, root, taxonomy.STAGE, run_date)  # refuses a date the taxonomy did not finish
        tax = io.read_table(spark, root, taxonomy.STAGE, "taxonomy", run_date)
        labels = map_to_classes(raw, io.read_table(spark, root, taxonomy.STAGE, "tag_map", run_date), tax,
                                cfg.taxonomy.propagate_to_ancestors)
        paths = tax.select("name", "path")
    else:
        labels, mapped = raw, False
    labels = labels.persist(StorageLevel.MEMORY_AND_DISK)
    classes = class_index(labels, paths)
    io.write_table(classes, root, STAGE, "class_index", run_date)
    classes = io.read_table(spark, root, STAGE, "class_index", run_date)
    samples = assemble_samples(labels, mined("images"), mined("repeats"), classes, clusters,
                               cfg.dataset.split_ratios, cfg.run.seed)
    if cfg.side_info.enabled:
        io.read_summary(spark, root, side_info.STAGE, run_date)  # refuses a date side-info did not finish
        vocabulary = spark.sparkContext.textFile(
            io.resolve(spark, f"{side_info.word_vectors_path(root, run_date)}/{VOCABULARY_FILE}"), 1)
        samples = with_title_ids(samples, io.read_table(spark, root, side_info.STAGE, "title_tokens", run_date),
                                 vocabulary.zipWithIndex().toDF(["token", "id"]), cfg.side_info.max_title_words)
    io.write_table(samples, root, STAGE, "samples", run_date)
    samples = io.read_table(spark, root, STAGE, "samples", run_date)
    io.write_table(class_support(samples, classes), root, STAGE, "classes", run_date)

    images_in = raw.select("image_key").distinct().count()
    labeled = labels.select("image_key").distinct()
    with_class = labeled.count() if mapped else images_in  # the same images unless a label space mapped them
    usable = labeled.join(clusters.select("image_key"), "image_key").count()
    per_split = {r["split"]: r for r in samples.groupBy("split").agg(
        F.count(F.lit(1)).alias("samples"), F.countDistinct("product_id").alias("products"),
        F.sum("repeats").alias("repeats"), F.sum(F.size("class_ids")).alias("labels")).collect()}
    per_source = {r["source"]: r["count"] for r in
                  labels.groupBy("source").agg(F.countDistinct("image_key").alias("count")).collect()}
    labels.unpersist()
    raw.unpersist()
    out = sum(r["samples"] for r in per_split.values())
    # a labeled image that is not a sample lost all its labels in the label space (tags the taxonomy dropped,
    # queries without a cluster), was merged into its duplicate cluster's sample, or was unusable
    dropped = {k: v for k, v in (("merged_duplicate", usable - out), ("unusable_image", with_class - usable),
                                 ("no_label_in_label_space", images_in - with_class)) if v}
    io.check_counts("labeled images", images_in, out, dropped)
    summary = {
        "stage": STAGE,
        "run_date": run_date.isoformat(),
        "tagmill_version": __version__,
        "images": {"in": images_in, "out": out, "quarantined": dropped},
        "labeled_images_by_source": dict(sorted(per_source.items())),
        "image_pass": with_image_pass,
        "taxonomy": cfg.taxonomy.enabled,
        "label_space": cfg.dataset.label_space,
        "classes": classes.count(),
        "splits": {s: {k: int(per_split[s][k]) if s in per_split else 0
                       for k in ("samples", "products", "repeats", "labels")} for s in SPLITS},
        "seconds": round(time.time() - started, 1),
    }
    io.write_json(spark, summary_file, summary)
    log.info("assemble %s: %d samples, %d classes", run_date, out, summary["classes"])
    return summary
