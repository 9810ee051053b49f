"""Mining primitives on tiny inline inputs with exact expected outputs (local Spark)."""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from tagmill.config import MiningConfig
from tagmill.labeling.events import EVENT_SCHEMA, LISTING_SCHEMA, check_events, check_listings
from tagmill.labeling.mining import (
    aggregate_tuples, find_bot_sessions, image_labels, label_confidence, listing_images, product_labels)

pytestmark = pytest.mark.spark
RUN_DATE = dt.date(2026, 11, 20)
T0 = dt.datetime(2026, 11, 20, 10, 0, 0)


def _events(spark, rows):
    """rows: (query_norm, product, session, tier, minute)."""
    data = [(q, p, s, tier, T0 + dt.timedelta(minutes=m)) for q, p, s, tier, m in rows]
    return spark.createDataFrame(data, "query_norm string, product_id string, session_id string, tier int, "
                                       "event_time timestamp").repartition(2)


def test_tuples_count_distinct_sessions_and_nest(spark):
    rows = [
        # s1 clicks p1 three times and contacts once: one session at contact tier
        ("sofa", "p1", "s1", 0, 0), ("sofa", "p1", "s1", 1, 1), ("sofa", "p1", "s1", 1, 2),
        ("sofa", "p1", "s1", 1, 3), ("sofa", "p1", "s1", 2, 4),
        # s2 reaches in_conversation on p1; s3 only saw it
        ("sofa", "p1", "s2", 3, 10), ("sofa", "p1", "s3", 0, 20),
        # another query for p1, another product for sofa
        ("couch", "p1", "s4", 1, 30), ("sofa", "p2", "s4", 0, 31),
    ]
    got = sorted(tuple(r) for r in aggregate_tuples(_events(spark, rows)).collect())
    assert got == [
        ("couch", "p1", 1, 0, 0, 1, 1, T0 + dt.timedelta(minutes=30), T0 + dt.timedelta(minutes=30)),
        ("sofa", "p1", 2, 2, 1, 3, 7, T0, T0 + dt.timedelta(minutes=20)),
        ("sofa", "p2", 0, 0, 0, 1, 1, T0 + dt.timedelta(minutes=31), T0 + dt.timedelta(minutes=31)),
    ]


def test_labels_need_the_tier_and_confidence_is_noisy_or(spark):
    tuples = spark.createDataFrame(
        [("sofa", "p1", 3, 2, 1, 5), ("couch", "p1", 1, 0, 0, 2), ("lamp", "p2", 0, 0, 0, 9)],
        "query_norm string, product_id string, clicks long, contacts long, in_conversations long, sessions long")
    weights = MiningConfig().tier_weights
    by_tier = {}
    for tier in ("click", "contact", "in_conversation"):
        rows = product_labels(tuples, MiningConfig(label_tier=tier)).orderBy("label").collect()
        by_tier[tier] = [(r.product_id, r.label, r.tier) for r in rows]
        for r in rows:
            assert r.confidence == pytest.approx(label_confidence(r.clicks, r.contacts, r.in_conversations, weights))
    assert by_tier == {
        "click": [("p1", "couch", "click"), ("p1", "sofa", "in_conversation")],
        "contact": [("p1", "sofa", "in_conversation")],
        "in_conversation": [("p1", "sofa", "in_conversation")],
    }
    # 1 click-only, 1 contact-only and 1 in-conversation session: 1 - 0.7 * 0.4 * 0.1
    assert label_confidence(3, 2, 1, weights) == pytest.approx(1 - 0.7 * 0.4 * 0.1)


def test_labels_attach_to_all_images_and_rare_labels_drop(spark):
    listings = spark.createDataFrame([("p1", "sofa", ["a.jpg", "b.jpg", "a.jpg"]), ("p2", "lamp", ["c.jpg"])],
                                     "product_id string, title string, image_paths array<string>")
    labels = spark.createDataFrame([("p1", "sofa"), ("p2", "sofa"), ("p2", "lamp")], "product_id string, label string")
    images = listing_images(listings)
    kept, dropped = image_labels(labels, images, min_images=2)
    assert sorted((r.label, r.image_path) for r in kept.collect()) == [
        ("sofa", "a.jpg"), ("sofa", "b.jpg"), ("sofa", "c.jpg")]
    assert [(r.label, r.images, r.products, r.reason) for r in dropped.collect()] == [("lamp", 1, 1, "below_min_images")]
    keys = {r.image_path: r.image_key for r in images.collect()}
    assert len(set(keys.values())) == 3 and all(len(k) == 20 for k in keys.values())


def test_bot_rule(spark):
    rows = [("q", "p", "bot", 1, m) for m in range(5)] + [("q", "p", "human", 0, m) for m in range(5)]
    bots = find_bot_sessions(_events(spark, rows), MiningConfig(bot_max_events=10, bot_max_actions=4))
    assert [r.session_id for r in bots.collect()] == ["bot"]


def test_event_checks_give_one_reason_each(spark):
    good = {"time": "2026-11-20T10:00:00Z", "session_id": "s", "user_id": "u", "query": "sofa",
            "product_id": "p", "position": "2", "action": "click"}
    cases = {
        None: {},
        "malformed_row": {"_corrupt_record": '{"time": "2026'},
        "invalid_utf8": {"query": "so\ufffdfa"},
        "missing_field": {"session_id": " "},
        "oversized_field": {"query": "x" * 201},
        "unknown_action": {"action": "share"},
        "bad_timestamp": {"time": "yesterday"},
        "bad_position": {"position": "first"},
        "expired": {"time": "2026-08-01T00:00:00Z"},
        "future_event": {"time": "2026-11-21T00:00:00Z"},
    }
    rows = []
    for reason, change in cases.items():
        row = dict(good, _corrupt_record=None) | change
        if reason == "malformed_row":
            row = {k: None for k in row} | change
        rows.append(tuple(row[f.name] for f in EVENT_SCHEMA.fields) + (reason or "good",))
    schema = EVENT_SCHEMA.add("case", "string")
    checked = check_events(spark.createDataFrame(rows, schema), RUN_DATE, MiningConfig(retention_days=90))
    got = {r.case: r.reason for r in checked.collect()}
    assert got == {(k or "good"): k for k in cases}
    first = checked.where(F.col("case") == "good").first()
    assert (first.tier, first.event_position, first.event_time) == (1, 2, dt.datetime(2026, 11, 20, 10))


def test_listing_checks(spark):
    rows = [
        ("p1", "sofa", ["a.jpg"], None, None, 0),
        ("p1", "sofa again", ["b.jpg"], None, None, 5),          # later copy of p1
        ("p2", "broken first", [], None, None, 1),                # bad first copy of p2 ...
        ("p2", "good second", ["c.jpg"], None, None, 2),          # ... does not evict the good one
        ("p3", "escape", ["../etc/passwd"], None, None, 3),
        ("p4", "abs", ["/etc/passwd"], None, None, 4),
        (None, None, None, None, '{"product', 6),
        ("", "no id", ["d.jpg"], None, None, 7),
        ("p5", "t" * 1001, ["e.jpg"], None, None, 8),
        ("p6", "caf\ufffd", ["f.jpg"], None, None, 9),
    ]
    df = spark.createDataFrame(rows, LISTING_SCHEMA.add("row_order", "long"))
    got = sorted((r.row_order, r.reason) for r in check_listings(df, 1000, 128).collect())
    assert got == [(0, None), (1, "no_images"), (2, None), (3, "bad_image_path"), (4, "bad_image_path"),
                   (5, "duplicate_product"), (6, "malformed_row"), (7, "missing_field"),
                   (8, "oversized_field"), (9, "invalid_utf8")]
