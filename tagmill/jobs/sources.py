"""The label sources as the stages after mine-logs and the image pass read them (taxonomy, assemble)."""

from __future__ import annotations

from pyspark.sql import DataFrame

from tagmill import stages
from tagmill.dataset.assemble import confirming_tags, search_log_labels, seller_category_labels, teacher_labels
from tagmill.jobs.frame import StageRun
from tagmill.labeling.seller_categories import category_labels


def source_labels(stage: StageRun) -> DataFrame:
    """LABEL_COLUMNS rows of every source for the run date: the search log's (less the labels the image pass
    flagged as likely wrong, with dataset.drop_label_issues), the sellers' categories when
    dataset.seller_categories is on, and the teacher's tags when a teacher is configured (refusing a date the
    image pass did not finish); on an image the search log or its seller labeled, only the tags that confirm
    one of those labels unless dataset.teacher_adds_to_labeled_images (dataset.assemble.confirming_tags)."""
    cfg = stage.cfg
    mined = stage.read("image_labels", stages.MINE_LOGS)
    if cfg.dataset.drop_label_issues and cfg.image_pass.teacher:  # what the teacher flagged as likely wrong
        stage.summary_of(stages.IMAGE_PASS)
        mined = mined.join(stage.read("label_issues", stages.IMAGE_PASS).select("image_key", "label"),
                           ["image_key", "label"], "left_anti")
    labels = search_log_labels(mined)
    if cfg.dataset.seller_categories:
        categories = category_labels(stage.read("images", stages.MINE_LOGS), cfg.text,
                                     cfg.taxonomy.propagate_to_ancestors)
        labels = labels.unionByName(seller_category_labels(categories, cfg.dataset.seller_category_confidence))
    if cfg.image_pass.teacher:
        tags = all_teacher_labels(stage)
        if not cfg.dataset.teacher_adds_to_labeled_images:
            tags = confirming_tags(tags, labels)
        labels = labels.unionByName(tags)
    return labels


def all_teacher_labels(stage: StageRun) -> DataFrame:
    """Every teacher tag of the image pass as LABEL_COLUMNS rows (refusing a date the image pass did not
    finish), before `confirming_tags`."""
    calibrated = stage.summary_of(stages.IMAGE_PASS).get("calibration")
    precision = stage.read("teacher_thresholds", stages.IMAGE_PASS) if calibrated else None
    return teacher_labels(stage.read("teacher_tags", stages.IMAGE_PASS), stage.read("images", stages.MINE_LOGS),
                          precision)
