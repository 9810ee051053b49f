"""Classes without enough training samples fold into their parent class or go (dataset/assemble.py), so no
published class can only be wrong in validation and test."""

from __future__ import annotations

import pytest

from tagmill.dataset.assemble import LABEL_COLUMNS, fold_weak_classes, weak_classes

SUPPORT = [("sofa", ["furniture", "seat"], 30, 4, 4), ("loveseat", ["furniture", "seat"], 0, 1, 0),
           ("tdedy bear", [], 0, 0, 1), ("seat", ["furniture"], 5, 1, 1)]


@pytest.fixture
def support(spark):
    return spark.createDataFrame(SUPPORT, "name string, path array<string>, support_train long, "
                                          "support_validation long, support_test long")


def test_weak_classes_fold_into_their_parent_or_go(spark, support):
    paths = support.select("name", "path")
    assert weak_classes(support, paths, 1) == {"loveseat": "seat", "tdedy bear": None}
    assert weak_classes(support, paths, 6) == {"loveseat": "seat", "tdedy bear": None, "seat": "furniture"}
    assert weak_classes(support, None, 1) == {"loveseat": None, "tdedy bear": None}  # no taxonomy: no parents


def test_folded_labels_take_the_parent_and_dropped_ones_go(spark):
    row = dict.fromkeys(LABEL_COLUMNS)
    rows = [{**row, "image_key": k, "product_id": "p", "label": label, "confidence": 0.9, "source": "search_log",
             "clicks": 1, "contacts": 1, "in_conversations": 1, "sessions": 1}
            for k, label in (("a", "sofa"), ("b", "loveseat"), ("c", "tdedy bear"), ("d", "seat"))]
    labels = spark.createDataFrame(rows, "image_key string, product_id string, label string, confidence double, "
                                         "source string, tier string, clicks long, contacts long, "
                                         "in_conversations long, sessions long, teacher string")
    folded = fold_weak_classes(labels, {"loveseat": "seat", "tdedy bear": None})
    assert folded.columns == list(LABEL_COLUMNS)
    assert sorted((r.image_key, r.label) for r in folded.collect()) == [("a", "sofa"), ("b", "seat"), ("d", "seat")]
    assert fold_weak_classes(labels, {}) is labels
