"""How the label sources meet in a sample (dataset/assemble.py): a teacher tag reaches the dataset where
nothing contradicts it unchecked (confirming_tags), its confidence is its class's estimated precision
(teacher_labels), and a sample's label of a class has one confidence from every source that gave it
(noisy_or in assemble_samples) under the provenance of its strongest source, the teacher's only where it alone
gave the class."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from tagmill.dataset.assemble import LABEL_COLUMNS, assemble_samples, confirming_tags, noisy_or, teacher_labels

pytestmark = pytest.mark.spark

SCHEMA = ("image_key string, product_id string, label string, confidence double, source string, tier string, "
          "clicks long, contacts long, in_conversations long, sessions long, teacher string")
RATIOS = {"train": 1.0, "validation": 0.0, "test": 0.0}


def _labels(spark, source, rows):
    """rows: (image_key, label) or (image_key, label, confidence)."""
    blank = dict.fromkeys(LABEL_COLUMNS)
    return spark.createDataFrame([{**blank, "image_key": r[0], "product_id": "p" + r[0][0], "label": r[1],
                                   "confidence": r[2] if len(r) > 2 else 0.8, "source": source} for r in rows],
                                 SCHEMA)


def test_tags_confirm_labeled_images_and_tag_cold_start_ones(spark):
    checked = (_labels(spark, "search_log", [("a", "sofa"), ("b", "mug")])
               .unionByName(_labels(spark, "seller_category", [("c", "lamp")])))
    teacher = _labels(spark, "teacher", [("a", "sofa"), ("a", "chair"),  # confirms one, adds another
                                         ("b", "cup"),                   # a look-alike of its search label
                                         ("c", "lamp"), ("c", "torch"),  # the seller's category, and another
                                         ("d", "kettle"), ("d", "pot")])  # cold start: no other label
    kept = confirming_tags(teacher, checked)
    assert kept.columns == list(LABEL_COLUMNS)
    assert sorted((r.image_key, r.label) for r in kept.collect()) == [
        ("a", "sofa"), ("c", "lamp"), ("d", "kettle"), ("d", "pot")]


def test_a_teacher_tag_is_as_confident_as_its_class_is_precise(spark):
    tags = spark.createDataFrame([("a", "sofa", 0.62, "t", "v1"), ("a", "lamp", 0.97, "t", "v1")],
                                 "image_key string, name string, score float, teacher_id string, "
                                 "teacher_version string")
    images = spark.createDataFrame([("a", "p1")], "image_key string, product_id string")
    precision = spark.createDataFrame([("sofa", 0.93)], "name string, precision double")
    got = {r.label: r.confidence for r in teacher_labels(tags, images, precision).collect()}
    assert got == pytest.approx({"sofa": 0.93, "lamp": 0.97})  # lamp has no estimate: its score
    scores = {r.label: r.confidence for r in teacher_labels(tags, images).collect()}
    assert scores == pytest.approx({"sofa": 0.62, "lamp": 0.97})


def test_noisy_or_grows_with_every_source(spark):
    def combined(*confidences):
        row = spark.createDataFrame([(list(confidences),)], "c array<double>").select(noisy_or(F.col("c"))).first()
        return row[0]
    assert combined(0.5) == pytest.approx(0.5)
    assert combined(0.7, 0.9, 0.5) == pytest.approx(1 - 0.3 * 0.1 * 0.5)
    assert combined(0.8, 0.9, 0.5) > combined(0.7, 0.9, 0.5)  # more evidence from one source
    assert combined(0.7, 0.9, 0.5, 0.2) > combined(0.7, 0.9, 0.5)  # one more source
    assert combined(0.7, 1.0) == 1.0 and combined() == 0.0


def test_a_sample_combines_its_sources_and_keeps_the_strongest_provenance(spark):
    # a1 and a2 are one duplicate cluster: the search log labeled both, the teacher and the seller a1
    labels = (_labels(spark, "search_log", [("a1", "sofa", 0.6), ("a2", "sofa", 0.7), ("b1", "lamp", 0.4)])
              .unionByName(_labels(spark, "teacher", [("a1", "sofa", 0.9)]))
              .unionByName(_labels(spark, "seller_category", [("a1", "sofa", 0.5), ("b1", "lamp", 0.5)])))
    images = spark.createDataFrame([("a1", "pa", "a sofa"), ("a2", "pa", "a sofa"), ("b1", "pb", "a lamp")],
                                   "image_key string, product_id string, title string")
    classes = spark.createDataFrame([(0, "lamp"), (1, "sofa")], "class_id int, name string")
    clusters = spark.createDataFrame([("a1", "a1.jpg", "A", True, "A"), ("a2", "a2.jpg", "A", False, "A"),
                                      ("b1", "b1.jpg", "B", True, "B")],
                                     "image_key string, image_path string, cluster string, canonical boolean, "
                                     "component string")
    samples = {r.image_key: r.labels for r in
               assemble_samples(labels, images, classes, clusters, RATIOS, 7).collect()}
    assert sorted(samples) == ["a1", "b1"]
    (sofa,) = samples["a1"]
    # the provenance of the strongest source that is not the teacher (the teacher's 0.9 is stronger)
    assert (sofa.name, sofa.source) == ("sofa", "search_log")
    assert sofa.confidence == pytest.approx(1 - 0.3 * 0.1 * 0.5)  # each source's strongest, combined
    (lamp,) = samples["b1"]
    assert (lamp.source, lamp.confidence) == ("seller_category", pytest.approx(1 - 0.6 * 0.5))
    # the teacher's provenance where it alone gave the class
    alone = assemble_samples(_labels(spark, "teacher", [("b1", "lamp", 0.7)]), images, classes, clusters, RATIOS,
                             7).first()
    assert [(x.source, x.confidence) for x in alone.labels] == [("teacher", pytest.approx(0.7))]
