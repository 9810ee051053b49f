"""Tag statistics, the rare filter, the co-occurrence table and its rules, on hand-made labels with every
expected number written out."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from tagmill.taxonomy.cooccurrence import cooccurrence, cooccurrence_rules, crowded_images
from tagmill.taxonomy.stats import accompanied_images, image_tags, rare_drops, tag_statistics
from tagmill.taxonomy.tables import columns

DECISION_COLUMNS, PAIR_COLUMNS = columns("decisions"), columns("cooccurrence")

pytestmark = pytest.mark.spark

LABEL_SCHEMA = ("image_key string, product_id string, label string, confidence double, source string, tier string, "
                "clicks long, contacts long, in_conversations long, sessions long, teacher string")


def _labels(spark, rows):
    full = [(i, p, label, 0.9, src, tier, 1, 0, 0, 1, None if src == "search_log" else "oi@1")
            for i, p, label, src, tier in rows]
    return spark.createDataFrame(full, LABEL_SCHEMA).repartition(2)


def _image_tags(spark, groups):
    """[(count, {tags})] -> image_key, tag rows over `count` images per tag set, in 2 partitions."""
    rows, n = [], 0
    for count, tags in groups:
        for _ in range(count):
            rows += [(f"img{n:03d}", t) for t in sorted(tags)]
            n += 1
    return spark.createDataFrame(rows, "image_key string, tag string").repartition(2), n


def _rows(df, columns):
    return sorted(tuple(r[c] for c in columns) for r in df.collect())


LABELS = [
    ("i1", "p1", "sofa", "search_log", "click"),
    ("i1", "p2", "sofa", "search_log", "contact"),  # the same image listed by a second product
    ("i1", "p1", "Sofa ", "teacher", None),  # the teacher's spelling folds onto the query
    ("i2", "p2", "sofa", "search_log", "click"),
    ("i2", "p2", "couch", "search_log", "click"),
    ("i3", "p3", "Mobile  Phone", "teacher", None),
    ("i4", "p4", "mobile phone", "search_log", "in_conversation"),
    ("i4", "p4", "", "search_log", "click"),  # empty: no tag, but i4 is labeled by its other label
    ("i5", "p5", "   ", "teacher", None),  # only an empty label: not a labeled image
]


def test_image_tags_are_distinct_folded_tags(spark):
    got = _rows(image_tags(_labels(spark, LABELS)), ("image_key", "tag"))
    assert got == [("i1", "sofa"), ("i2", "couch"), ("i2", "sofa"), ("i3", "mobile phone"), ("i4", "mobile phone")]


def test_tag_statistics_per_tag_and_per_source_and_tier(spark):
    stats, by_source, labeled = tag_statistics(_labels(spark, LABELS))
    assert labeled == 4
    assert stats.columns == ["tag", "images", "products", "share", "search_log_images", "teacher_images",
                             "seller_category_images"]
    assert _rows(stats, stats.columns) == [
        ("couch", 1, 1, 0.25, 1, 0, 0),
        ("mobile phone", 2, 2, 0.5, 1, 1, 0),
        ("sofa", 2, 2, 0.5, 2, 1, 0),
    ]
    assert by_source.columns == ["tag", "source", "tier", "images", "products"]
    got = sorted((r["tag"], r["source"], r["tier"] or "", r["images"], r["products"]) for r in by_source.collect())
    assert got == [
        ("couch", "search_log", "click", 1, 1),
        ("mobile phone", "search_log", "in_conversation", 1, 1),
        ("mobile phone", "teacher", "", 1, 1),
        ("sofa", "search_log", "click", 2, 2),
        ("sofa", "search_log", "contact", 1, 1),
        ("sofa", "teacher", "", 1, 1),
    ]


def _stats(spark, images_by_tag, labeled):
    rows = [(t, n, n, n / labeled, n, 0, 0) for t, n in images_by_tag.items()]
    return spark.createDataFrame(rows, "tag string, images long, products long, share double, "
                                       "search_log_images long, teacher_images long, seller_category_images long"
                                 ).repartition(2)


def test_rare_drops_by_share_and_by_images(spark):
    stats = _stats(spark, {"a": 4, "b": 7, "c": 10, "d": 5, "e": 1}, 10_000)
    drops = rare_drops(stats, min_share=0.0005, min_images=10)
    assert drops.columns == list(DECISION_COLUMNS)
    assert _rows(drops, DECISION_COLUMNS) == [
        ("a", "drop", "rare_share", None, 0.0004, 0.0005, "4 images = 0.040% of 10,000 labeled images < 0.05%"),
        ("b", "drop", "rare_images", None, 7.0, 10.0, "7 images < 10 images (= 0.070% of 10,000 labeled images)"),
        # 5 / 10,000 is exactly 0.05%: not below the share, but below 10 images
        ("d", "drop", "rare_images", None, 5.0, 10.0, "5 images < 10 images (= 0.050% of 10,000 labeled images)"),
        ("e", "drop", "rare_share", None, 0.0001, 0.0005, "1 image = 0.010% of 10,000 labeled images < 0.05%"),
    ]


def test_rare_drops_tiny_shares_keep_their_digits_and_zero_turns_a_rule_off(spark):
    stats = _stats(spark, {"x": 1, "y": 200}, 1_000_000)
    assert _rows(rare_drops(stats, min_share=0.0005, min_images=0), ("tag", "rule", "value", "detail")) == [
        ("x", "rare_share", 1e-06, "1 image = 0.000100% of 1,000,000 labeled images < 0.05%"),
        ("y", "rare_share", 0.0002, "200 images = 0.020% of 1,000,000 labeled images < 0.05%"),
    ]
    assert _rows(rare_drops(stats, min_share=0.0, min_images=2), ("tag", "rule")) == [("x", "rare_images")]
    with pytest.raises(ValueError, match="min_share"):
        rare_drops(stats, min_share=-0.1, min_images=0)




def test_cooccurrence_table_by_hand(spark):
    tags, _ = _image_tags(spark, [(1, {"sofa", "couch"}), (1, {"sofa", "couch", "leather sofa"}),
                                  (1, {"sofa", "leather sofa"}), (1, {"sofa"}), (1, {"chair"}),
                                  (1, {"chair", "sofa"}), (1, {"lamp"})])
    n = 8  # one more labeled image whose only tags were dropped
    got = cooccurrence(tags, n)
    assert got.columns == list(PAIR_COLUMNS)
    # sofa on 5 images, couch 2, leather sofa 2, chair 2, lamp 1 (and never with another tag)
    expected = [
        ("chair", "sofa", 1, 2, 5, 1 / 5, 1 / 2, math.log(1 * n / (2 * 5)), 1 / (2 + 5 - 1)),
        ("couch", "leather sofa", 1, 2, 2, 1 / 2, 1 / 2, math.log(1 * n / (2 * 2)), 1 / (2 + 2 - 1)),
        ("couch", "sofa", 2, 2, 5, 2 / 5, 2 / 2, math.log(2 * n / (2 * 5)), 2 / (2 + 5 - 2)),
        ("leather sofa", "sofa", 2, 2, 5, 2 / 5, 2 / 2, math.log(2 * n / (2 * 5)), 2 / (2 + 5 - 2)),
    ]
    rows = _rows(got, PAIR_COLUMNS)
    assert [r[:5] for r in rows] == [e[:5] for e in expected]
    for row, want in zip(rows, expected):
        assert row[5:] == pytest.approx(want[5:], abs=1e-9, rel=0)


def test_crowded_images_are_skipped_whole_and_counted(spark):
    tags, _ = _image_tags(spark, [(2, {"a", "b"}), (1, {"a", "b", "c", "d", "e"})])
    capped = _rows(cooccurrence(tags, 3, max_tags_per_image=3), PAIR_COLUMNS)
    # the five-tag image is out of the pairs, of images_a / images_b and of N (3 - 1 = 2)
    assert capped == [("a", "b", 2, 2, 2, 1.0, 1.0, pytest.approx(math.log(2 * 2 / (2 * 2))), 1.0)]
    assert crowded_images(tags, 3).count() == 1
    full = _rows(cooccurrence(tags, 3), PAIR_COLUMNS)  # default cap 64
    assert len(full) == 10 and full[0][:5] == ("a", "b", 3, 3, 3)
    assert crowded_images(tags).count() == 0
    with pytest.raises(ValueError, match="max_tags_per_image"):
        cooccurrence(tags, 3, max_tags_per_image=1)


def _tag_stats_of(tags, labeled):
    from pyspark.sql import functions as F

    return tags.groupBy("tag").agg(F.count("image_key").alias("images")).withColumn(
        "share", F.col("images") / labeled)


def test_merge_and_child_candidates(spark):
    tags, n = _image_tags(spark, [
        (10, {"television", "tv"}), (1, {"tv"}),  # near always together: television merges into tv
        (3, {"couch", "settee"}),  # always together, equal counts: the larger name merges into the other
        (4, {"leather sofa", "sofa"}), (6, {"sofa"}),  # leather sofa always with sofa, not vice versa
    ])
    decisions = cooccurrence_rules(cooccurrence(tags, n), _tag_stats_of(tags, n), isolated_max_conditional=0.0,
                                   isolated_min_images=10, merge_min_conditional=0.9, child_min_conditional=0.9)
    assert decisions.columns == list(DECISION_COLUMNS)
    assert _rows(decisions, DECISION_COLUMNS) == [
        ("leather sofa", "child", "implied_by", "sofa", 1.0, 0.9,
         "with sofa on 4 of its 4 images (P = 1.000 >= 0.9); sofa with it on 4 of 10 (P = 0.400 < 0.9)"),
        ("settee", "merge", "cooccurrence_merge", "couch", 1.0, 0.9,
         "together on 3 images: P(couch|settee) = 1.000, P(settee|couch) = 1.000, both >= 0.9"),
        ("television", "merge", "cooccurrence_merge", "tv", 10 / 11, 0.9,
         "together on 10 images: P(tv|television) = 1.000, P(television|tv) = 0.909, both >= 0.9"),
    ]


ISOLATED = [
    (8, {"sofa", "chair"}), (2, {"sofa", "noise"}), (8, {"noise"}),  # noise: with sofa on 2 of its 10 images
    (5, {"logo"}),  # always alone on its images: not noise by this rule
    (4, {"stray", "rare1"}),  # only ever with a tag the rare filter dropped
]


def test_isolated_tags(spark):
    from pyspark.sql import functions as F

    everything, n = _image_tags(spark, ISOLATED)
    kept = everything.where(F.col("tag") != "rare1")
    pairs, stats = cooccurrence(kept, n), _tag_stats_of(kept, n)
    rules = dict(isolated_max_conditional=0.25, isolated_min_images=4, merge_min_conditional=0.9,
                 child_min_conditional=0.95)
    child = ("chair", "child", "implied_by", "sofa", 1.0, 0.95,
             "with sofa on 8 of its 8 images (P = 1.000 >= 0.95); sofa with it on 8 of 10 (P = 0.800 < 0.9)")
    noise = ("noise", "drop", "isolated", None, 0.2, 0.25,
             "strongest partner sofa: P(sofa|noise) = 0.200 < 0.25 over its 10 images")
    assert _rows(cooccurrence_rules(pairs, stats, **rules), DECISION_COLUMNS) == [child, noise]
    # told which tags share images with others, stray (whose only company was dropped) counts as max 0
    with_company = cooccurrence_rules(pairs, stats, **rules, accompanied=accompanied_images(everything))
    assert _rows(with_company, DECISION_COLUMNS) == [child, noise, (
        "stray", "drop", "isolated", None, 0.0, 0.25,
        "no partner among the kept tags on its 4 images, 4 of which carry other tags (max P = 0 < 0.25)")]
    # below isolated_min_images a tag is not judged; 0 turns the rule off
    assert _rows(cooccurrence_rules(pairs, stats, **{**rules, "isolated_min_images": 11}), ("tag",)) == [("chair",)]
    assert _rows(cooccurrence_rules(pairs, stats, **{**rules, "isolated_max_conditional": 0.0}), ("tag",)) == [
        ("chair",)]
    with pytest.raises(ValueError, match="merge_min_conditional"):
        cooccurrence_rules(pairs, stats, **{**rules, "merge_min_conditional": 1.5})


def test_accompanied_images(spark):
    everything, _ = _image_tags(spark, ISOLATED)
    assert _rows(accompanied_images(everything), ("tag", "accompanied_images")) == [
        ("chair", 8), ("logo", 0), ("noise", 2), ("rare1", 4), ("sofa", 10), ("stray", 4)]


def test_cooccurrence_matches_scipy_x_transpose_x(spark):
    rng = np.random.default_rng(5)
    images, n_tags = 300, 40
    # ~2,000 random (image, tag) pairs, skewed tags, duplicates included (the table counts distinct images)
    image = rng.integers(0, images, 2000)
    tag = np.minimum(rng.zipf(1.3, 2000), n_tags) - 1
    rows = [(f"i{i:04d}", f"t{t:02d}") for i, t in zip(image, tag)]
    got = cooccurrence(spark.createDataFrame(rows, "image_key string, tag string").repartition(3),
                       len(set(image.tolist())))
    x = sp.csr_matrix((np.ones(len(image)), (image, tag)), shape=(images, n_tags))
    x.data[:] = 1.0  # duplicates summed on construction: back to binary
    c = (x.T @ x).toarray()
    n = int((np.asarray(x.sum(axis=1)).ravel() > 0).sum())
    a, b = np.triu_indices(n_tags, k=1)
    keep = c[a, b] > 0
    expected = {}
    for i, j in zip(a[keep], b[keep]):
        ab, ca, cb = c[i, j], c[i, i], c[j, j]
        expected[(f"t{i:02d}", f"t{j:02d}")] = (int(ab), int(ca), int(cb), ab / cb, ab / ca,
                                                math.log(ab * n / (ca * cb)), ab / (ca + cb - ab))
    actual = {(r[0], r[1]): r[2:] for r in _rows(got, PAIR_COLUMNS)}
    assert len(expected) > 100
    assert sorted(actual) == sorted(expected)
    for key, want in expected.items():
        assert actual[key][:3] == want[:3], key
        assert actual[key][3:] == pytest.approx(want[3:], abs=1e-9, rel=0), key
