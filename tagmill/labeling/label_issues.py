"""Likely-wrong search-log labels: confident learning on the teacher's out-of-fold scores (cleanlab).

A search-log label is a shopper's click, and some clicks name the wrong thing. cleanlab's multi-label check
(`cleanlab.multilabel_classification.filter.find_multilabel_issues_per_class`) treats each class as its
own one-vs-rest problem: the class's labels against the model's predicted probability of the class, both
over every checked image, through `cleanlab.filter.find_label_issues` (Northcutt et al., "Confident
Learning", 2021: per-class thresholds are the mean predicted probability of the images labeled with the
class; a labeled image whose probability falls confidently on the other side counts towards the confident
joint, and the noise rates it estimates decide how many labels are pruned, least confident first).

`class_label_issues` is that per-class step on one class's data; `label_issues` runs it per class in Spark,
one task per class, so no step holds the whole (images x classes) matrix. The scores must be out of fold:
a model is overconfident on its own training images, whose labels it has learned, wrong ones included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

ISSUE_SCHEMA = "image_key string, label string, score float, class_labels long, class_issues long"
"""label_issues rows: the flagged label, the teacher's out-of-fold score of its class on the image, and how
many labels of that class were checked and flagged."""

MIN_CLASS_LABELS = 5
"""A class with fewer checked labels is not judged (its thresholds would rest on a handful of images)."""


def class_label_issues(labeled: np.ndarray, scores: np.ndarray, absent: int, absent_score: float) -> np.ndarray:
    """Which of one class's labels are likely wrong (bool per row; False where `labeled` is False).

    labeled: (n,) bool, the image carries the class's label; scores: (n,) the teacher's probability of the
    class on the image; absent: further checked images, without the label, whose score was too low to keep,
    each taken as `absent_score` (half the floor under which scores are not kept: the mean of a score known
    only to lie below it): they weigh in the class's thresholds as cleanlab's dense matrix would have them."""
    labeled = np.asarray(labeled, bool)
    if labeled.sum() < MIN_CLASS_LABELS or labeled.all() and absent == 0:
        return np.zeros(len(labeled), bool)  # nothing to estimate noise from: no judgement
    y = np.concatenate([labeled, np.zeros(absent, bool)]).astype(int)
    p = np.clip(np.concatenate([np.asarray(scores, np.float64), np.full(absent, absent_score)]), 1e-6, 1 - 1e-6)
    issues = find_label_issues(labels=y, pred_probs=np.stack([1 - p, p], axis=1), n_jobs=1)
    return issues[: len(labeled)] & labeled


def label_issues(labels: DataFrame, scores: DataFrame, checked_images: int, floor: float) -> DataFrame:
    """ISSUE_SCHEMA rows of the labels likely wrong.

    labels: image_key, label (the labels to check, of images with out-of-fold scores); scores: image_key,
    label, score (the teacher's out-of-fold scores kept for those images, any image may appear);
    checked_images: how many images the check covers; floor: the score under which the image pass keeps
    none (an image's missing score of a class counts as floor / 2)."""
    vocabulary = scores.select("label").distinct()
    rows = (labels.select("image_key", "label").distinct().join(vocabulary, "label")  # a class the teacher knows
            .withColumn("labeled", F.lit(True))
            .join(scores.select("image_key", "label", "score"), ["image_key", "label"], "full")
            .select("image_key", "label", F.coalesce("labeled", F.lit(False)).alias("labeled"),
                    F.coalesce("score", F.lit(floor / 2)).cast("float").alias("score")))

    def judge(group: pd.DataFrame) -> pd.DataFrame:
        group = group.sort_values("image_key", kind="stable")  # the same rows in the same order on a re-run
        flagged = class_label_issues(group["labeled"].to_numpy(), group["score"].to_numpy(),
                                     max(0, checked_images - len(group)), floor / 2)
        out = group.loc[flagged, ["image_key", "label", "score"]]
        return out.assign(class_labels=int(group["labeled"].sum()), class_issues=int(flagged.sum()))

    return rows.groupBy("label").applyInPandas(judge, ISSUE_SCHEMA)
