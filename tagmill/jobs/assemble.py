"""`tagmill assemble`: labels of every source -> class index + one sample per duplicate cluster.

Read, call dataset.assemble, write. Every labeled image becomes a sample, or is merged into its duplicate
cluster's sample, or was unusable in the image pass; the job fails before writing its summary if those do
not add up. Without the image pass for the date, each image is its own cluster; without a teacher
(image_pass.teacher) there are no teacher tags.
"""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tagmill import stages
from tagmill.config import SPLITS, Config
from tagmill.dataset.assemble import (assemble_samples, class_index, class_support, fold_weak_classes,
                                      map_to_classes, map_to_query_clusters, own_clusters, weak_classes,
                                      with_repeats, with_title_ids)
from tagmill.jobs import io
from tagmill.jobs.frame import StageRun
from tagmill.jobs.sources import all_teacher_labels, source_labels
from tagmill.labeling.sources import TEACHER
from tagmill.word_vector_files import VOCABULARY_FILE

STAGE = stages.ASSEMBLE
log = logging.getLogger("tagmill.assemble")


MAX_FOLD_ROUNDS = 2
"""A weak class folds one level up per round; what is still weak after these rounds is dropped (dropping a
class's labels leaves every other class's training samples as they were, so one more round ends it)."""


def _fold_weak_classes(stage: StageRun, labels: DataFrame, taxonomy: DataFrame | None, clusters: DataFrame):
    """(labels, class index, samples, {folded class: the class it went into, None: dropped}) once no class has
    fewer than dataset.min_train_samples training samples. taxonomy: name, path, taxonomy_id of the taxonomy's
    classes, None without one. The split depends on the products only, so folding labels never moves a sample
    to another split."""
    cfg = stage.cfg
    images = stage.read("images", stages.MINE_LOGS)
    folds: dict[str, str | None] = {}
    for round_ in range(MAX_FOLD_ROUNDS + 2):
        classes = class_index(labels, taxonomy).persist(StorageLevel.MEMORY_AND_DISK)
        samples = assemble_samples(labels, images, classes, clusters, cfg.dataset.split_ratios, cfg.run.seed)
        weak = weak_classes(class_support(samples, classes), taxonomy if round_ < MAX_FOLD_ROUNDS else None,
                            cfg.dataset.min_train_samples)
        if not weak:
            return labels, classes, samples, folds
        log.info("assemble %s: %d classes with fewer than %d training samples folded into their parent or "
                 "dropped", stage.run_date, len(weak), cfg.dataset.min_train_samples)
        folds.update(weak)
        labels = fold_weak_classes(labels, weak).persist(StorageLevel.MEMORY_AND_DISK)
    raise AssertionError("unreachable: the round after the drop finds no weak class")


def _image_pass_finished(stage: StageRun) -> bool:
    """Whether the image pass finished for the date (its duplicate clusters exist); with a teacher it must have."""
    try:
        stage.summary_of(stages.IMAGE_PASS)
    except io.InputError:
        if stage.cfg.image_pass.teacher:
            raise
        return False
    return True


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run assemble for cfg.run's date; returns the run summary (also written as summary.json)."""
    stage = StageRun(spark, cfg, STAGE)
    run_date = stage.run_date
    raw = source_labels(stage)
    with_image_pass = _image_pass_finished(stage)
    if with_image_pass:
        clusters = stage.read("images", stages.IMAGE_PASS)
    else:
        log.info("assemble %s: no image pass for this date (it runs when inputs.image_root is set): each image "
                 "its own cluster", run_date)
        clusters = own_clusters(stage.read("images", stages.MINE_LOGS))
    raw = raw.persist(StorageLevel.MEMORY_AND_DISK)
    taxonomy, mapped = None, True
    if cfg.dataset.label_space == "query_clusters":
        stage.summary_of(stages.SIDE_INFO)
        labels = map_to_query_clusters(raw, stage.read("query_clusters", stages.SIDE_INFO))
    elif cfg.taxonomy.enabled:
        stage.summary_of(stages.TAXONOMY)  # refuses a date the taxonomy did not finish
        tax = stage.read("taxonomy", stages.TAXONOMY)
        labels = map_to_classes(raw, stage.read("tag_map", stages.TAXONOMY), tax, cfg.taxonomy.propagate_to_ancestors)
        # the taxonomy's class_id travels as taxonomy_id: the dataset numbers its own classes densely
        taxonomy = tax.select("name", "path", F.col("class_id").alias("taxonomy_id"))
    else:
        labels, mapped = raw, False
    labels, classes, samples, folds = _fold_weak_classes(stage, labels.persist(StorageLevel.MEMORY_AND_DISK),
                                                         taxonomy, clusters)
    mapped = mapped or bool(folds)
    samples, threshold = with_repeats(samples.persist(StorageLevel.MEMORY_AND_DISK), cfg.dataset.resample_factor,
                                      cfg.run.seed)
    classes = stage.write(classes, "class_index")
    stage.write(stage.spark.createDataFrame(sorted(folds.items()), "name string, into string"), "class_folds")
    if cfg.side_info.enabled:
        stage.summary_of(stages.SIDE_INFO)  # refuses a date side-info did not finish
        vocabulary = spark.sparkContext.textFile(
            io.resolve(spark, f"{stages.word_vectors_path(stage.root, run_date)}/{VOCABULARY_FILE}"), 1)
        samples = with_title_ids(samples, stage.read("title_tokens", stages.SIDE_INFO),
                                 vocabulary.zipWithIndex().toDF(["token", "id"]), cfg.side_info.max_title_words)
    samples = stage.write(samples, "samples")
    stage.write(class_support(samples, classes), "classes")

    images_in = raw.select("image_key").distinct().count()
    labeled = labels.select("image_key").distinct()
    with_class = labeled.count() if mapped else images_in  # the same images unless a label space mapped them
    usable = labeled.join(clusters.select("image_key"), "image_key").count()
    per_split = {r["split"]: r for r in samples.groupBy("split").agg(
        F.count(F.lit(1)).alias("samples"), F.countDistinct("product_id").alias("products"),
        F.sum("repeats").alias("repeats"), F.sum(F.size("class_ids")).alias("labels")).collect()}
    per_source = {r["source"]: r["count"] for r in
                  labels.groupBy("source").agg(F.countDistinct("image_key").alias("count")).collect()}
    teacher_tags = None
    if cfg.image_pass.teacher:  # how many tags confirming_tags left out (each a raw tag on one listing's image)
        tags_in, kept = all_teacher_labels(stage).count(), raw.where(F.col("source") == TEACHER).count()
        teacher_tags = {"in": tags_in, "kept": kept, "unchecked_additions_left_out": tags_in - kept,
                        "adds_to_labeled_images": cfg.dataset.teacher_adds_to_labeled_images}
    labels.unpersist()
    raw.unpersist()
    out = sum(r["samples"] for r in per_split.values())
    # a labeled image that is not a sample lost all its labels in the label space (tags the taxonomy dropped,
    # queries without a cluster), was merged into its duplicate cluster's sample, or was unusable
    dropped = {k: v for k, v in (("merged_duplicate", usable - out), ("unusable_image", with_class - usable),
                                 ("no_label_in_label_space", images_in - with_class)) if v}
    io.check_counts("labeled images", images_in, out, dropped)
    summary = stage.finish({
        "class_folds": {"min_train_samples": cfg.dataset.min_train_samples,
                        "folded_into_parent": sum(1 for into in folds.values() if into),
                        "dropped": sum(1 for into in folds.values() if not into)},
        "images": {"in": images_in, "out": out, "quarantined": dropped},
        "labeled_images_by_source": dict(sorted(per_source.items())),
        "teacher_tags": teacher_tags,
        "image_pass": with_image_pass,
        "taxonomy": cfg.taxonomy.enabled,
        "label_space": cfg.dataset.label_space,
        "resampling": {"factor": cfg.dataset.resample_factor, "threshold_t": threshold},
        "classes": classes.count(),
        "splits": {s: {k: int(per_split[s][k]) if s in per_split else 0
                       for k in ("samples", "products", "repeats", "labels")} for s in SPLITS},
    })
    log.info("assemble %s: %d samples, %d classes", run_date, out, summary["classes"])
    return summary
