"""Likely-wrong search-log labels (labeling.label_issues): cleanlab's per-class confident learning, one Spark
task per class, against cleanlab's own multi-label function on the same scores."""

from __future__ import annotations

import numpy as np
import pytest
from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class

from tagmill.labeling.label_issues import MIN_CLASS_LABELS, class_label_issues, label_issues


def _planted(seed: int = 0):
    """120 images, 4 classes; each image labeled with its true class, and 8 labels planted on a wrong class
    (the teacher scores the true class high and the planted one low)."""
    rng = np.random.default_rng(seed)
    n, k = 120, 4
    true = np.arange(n) % k
    scores = rng.uniform(0.01, 0.15, (n, k))
    scores[np.arange(n), true] = rng.uniform(0.6, 0.99, n)
    labels = [[int(c)] for c in true]
    wrong = {(i, int((true[i] + 1) % k)) for i in range(0, 64, 8)}
    for i, c in wrong:
        labels[i].append(c)
    return labels, scores, wrong


def test_planted_wrong_labels_are_flagged_and_nothing_else():
    labels, scores, wrong = _planted()
    flagged = set()
    for c in range(scores.shape[1]):
        labeled = np.array([c in ls for ls in labels])
        flagged |= {(int(i), c) for i in np.flatnonzero(class_label_issues(labeled, scores[:, c], 0, 0.025))}
    assert flagged <= wrong and len(flagged) >= len(wrong) // 2, (sorted(flagged), sorted(wrong))


def test_a_class_with_few_labels_is_not_judged():
    labeled = np.zeros(50, bool)
    labeled[: MIN_CLASS_LABELS - 1] = True
    assert not class_label_issues(labeled, np.full(50, 0.01), 0, 0.025).any()


def test_per_class_in_spark_equals_cleanlabs_multilabel_check(spark):
    labels, scores, _ = _planted(seed=3)
    expected = find_multilabel_issues_per_class(labels=labels, pred_probs=scores, return_indices_ranked_by=None,
                                                n_jobs=1)
    expected = {(i, c) for i, c in zip(*np.nonzero(expected)) if c in labels[i]}  # flagged labels, not missing ones
    label_rows = spark.createDataFrame([(f"i{i:03d}", f"c{c}") for i, ls in enumerate(labels) for c in ls],
                                       "image_key string, label string")
    score_rows = spark.createDataFrame([(f"i{i:03d}", f"c{c}", float(scores[i, c])) for i in range(len(labels))
                                        for c in range(scores.shape[1])], "image_key string, label string, score float")
    found = label_issues(label_rows, score_rows, len(labels), floor=0.0).collect()
    assert {(int(r.image_key[1:]), int(r.label[1:])) for r in found} == expected and expected
    per_class = {r.label: (r.class_labels, r.class_issues) for r in found}
    for name, (n_labels, n_issues) in per_class.items():
        c = int(name[1:])
        assert n_labels == sum(c in ls for ls in labels)
        assert n_issues == sum(1 for _, cc in expected if cc == c)


@pytest.mark.parametrize("absent", [0, 200])
def test_images_without_a_kept_score_weigh_in_as_low_scores(absent):
    """Scores under the floor are not kept; counting those images at half the floor gives the flags the
    dense matrix gives when their true scores lie evenly under it."""
    rng = np.random.default_rng(1)
    labeled = np.zeros(60, bool)
    labeled[:40] = True
    scores = rng.uniform(0.6, 0.99, 60)
    scores[35:] = rng.uniform(0.05, 0.1, 25)  # five labeled images the teacher scores low, 20 unlabeled
    dense = class_label_issues(np.concatenate([labeled, np.zeros(absent, bool)]),
                               np.concatenate([scores, np.linspace(0.0, 0.05, absent)]), 0, 0.025)[:60]
    assert (class_label_issues(labeled, scores, absent, 0.025) == dense).all()
