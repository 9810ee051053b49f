"""mine-logs end to end on a small generated marketplace (local Spark): counts, quarantine, privacy,
re-runs and label quality against the generator's ground truth."""

from __future__ import annotations

import csv
from collections import Counter

import pytest
from pyspark.sql import functions as F

from tagmill.jobs import io
from tagmill.jobs.build import run_stages
from tagmill.jobs.mine_logs import STAGE
from tagmill.labeling.text import normalize_query

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TABLES = ("tuples", "query_forms", "labels", "images", "image_labels", "dropped_labels",
          "events_quarantine", "listings_quarantine")
PLANTED_EVENT_REASON = {
    "malformed": "malformed_row", "missing_field": "missing_field", "unknown_action": "unknown_action",
    "bad_timestamp": "bad_timestamp", "bad_position": "bad_position", "invalid_utf8": "invalid_utf8",
    "oversized_field": "oversized_field", "unknown_product": "unknown_product", "future_event": "future_event",
}
PLANTED_LISTING_REASON = {"malformed": "malformed_row", "missing_field": "missing_field", "no_images": "no_images",
                          "duplicate_product": "duplicate_product", "bad_image_path": "bad_image_path",
                          "invalid_utf8": "invalid_utf8", "oversized_field": "oversized_field"}


def _truth(cfg, name):
    market = cfg.inputs.catalog.rsplit("/catalog", 1)[0]
    with open(f"{market}/truth/{name}.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def mined(mined_market):
    return mined_market


def _rows(spark, cfg, table):
    return sorted(map(repr, io.read_table(spark, cfg.outputs.root, STAGE, table, cfg.run.run_date()).collect()))


def test_counts_add_up(mined):
    _, summary = mined
    for part in ("events", "listings"):
        counts = summary[part]
        assert counts["in"] == counts["used"] + sum(counts["quarantined"].values()), part
        assert counts["used"] > 0


def test_every_planted_bad_row_is_quarantined_with_its_reason(mined):
    cfg, summary = mined
    planted = Counter(PLANTED_EVENT_REASON[r["kind"]] for r in _truth(cfg, "bad_event_rows"))
    got = summary["events"]["quarantined"]
    for reason, n in planted.items():
        if reason == "unknown_product":  # also the events of listings whose own row was bad
            assert got[reason] >= n
        else:
            assert got.get(reason) == n, reason
    planted_listings = Counter(PLANTED_LISTING_REASON[r["kind"]] for r in _truth(cfg, "bad_catalog_rows"))
    assert summary["listings"]["quarantined"] == dict(planted_listings)


def test_bots_and_expired_events_are_counted(mined):
    _, summary = mined
    got = summary["events"]["quarantined"]
    assert got.get("bot_session", 0) > 0 and got.get("expired", 0) > 0


def test_no_session_or_user_id_leaves_mine_logs(spark, mined):
    cfg, _ = mined
    raw = spark.read.json(cfg.inputs.events)
    ids = {r[0] for r in raw.select("session_id").union(raw.select("user_id")).distinct().collect() if r[0]}
    assert len(ids) > 100
    for table in TABLES:
        df = io.read_table(spark, cfg.outputs.root, STAGE, table, cfg.run.run_date())
        assert not {"session_id", "user_id"} & set(df.columns), table
        strings = [c for c, t in df.dtypes if t == "string"]
        values = {v for row in df.select(*strings).collect() for v in row if v}
        assert not values & ids, table


def test_rerun_of_a_date_gives_the_same_output(spark, mined):
    cfg, summary = mined
    before = {t: _rows(spark, cfg, t) for t in TABLES}
    again = run_stages(cfg, [STAGE])[STAGE]
    assert {t: _rows(spark, cfg, t) for t in TABLES} == before
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in summary.items() if k != "seconds"}


def _precision(pairs, truth_forms, leaf_of):
    hits = [q in truth_forms[leaf_of[p]] for q, p in pairs]
    return sum(hits) / len(hits), len(hits)


def test_label_quality_against_ground_truth(spark, mined):
    """A label is right when it is a form of the listing's true category: its name, plural, a synonym, its
    Chinese name, or a user's misspelling of one of them ("lptop" on a laptop). The strict figure leaves
    misspellings out."""
    cfg, _ = mined
    wordnet, stop = cfg.text.wordnet_dir, frozenset(cfg.text.stopwords)
    leaf_of = {r["product_id"]: r["leaf_id"] for r in _truth(cfg, "listings")}
    forms: dict[str, set[str]] = {}
    strict: dict[str, set[str]] = {}
    for r in _truth(cfg, "query_forms"):
        form = normalize_query(r["form"], stop, wordnet)
        forms.setdefault(r["leaf_id"], set()).add(form)
        if r["kind"] != "misspelling":
            strict.setdefault(r["leaf_id"], set()).add(form)
    tuples = io.read_table(spark, cfg.outputs.root, STAGE, "tuples", cfg.run.run_date())
    report = {}
    for tier, column in (("click", "clicks"), ("contact", "contacts"), ("in_conversation", "in_conversations")):
        pairs = [(r.query_norm, r.product_id) for r in tuples.where(F.col(column) > 0).collect()]
        report[tier] = _precision(pairs, forms, leaf_of)
        report[tier + "_strict"] = _precision(pairs, strict, leaf_of)
    image_pairs = [(r.label, r.product_id) for r in
                   io.read_table(spark, cfg.outputs.root, STAGE, "image_labels", cfg.run.run_date()).collect()]
    report["in_conversation_images_after_K"] = _precision(image_pairs, forms, leaf_of)
    report["in_conversation_images_after_K_strict"] = _precision(image_pairs, strict, leaf_of)
    print("label precision by tier (precision, labels):", report)
    assert report["in_conversation"][0] >= 0.9
    assert report["in_conversation_images_after_K_strict"][0] >= 0.9
    assert report["click"][0] < report["contact"][0] < report["in_conversation"][0]


def test_parquet_and_csv_events_are_read_like_json_lines(spark, small_market, tmp_path):
    from tagmill.labeling.events import EVENT_FIELDS, check_events

    _, cfg = small_market
    run_date = cfg.run.run_date()
    jsonl = check_events(io.read_events(spark, cfg.inputs.events, "jsonl", run_date).rows, run_date, cfg.mining)
    good = jsonl.where(F.col("reason").isNull())
    # Parquet keeps types (timestamp, int); CSV is all text. Both are date-partitioned like the JSON input.
    typed = good.select(F.col("event_time").alias("time"), *EVENT_FIELDS[1:5],
                        F.col("event_position").alias("position"), "action",
                        F.to_date("event_time").alias("date"))
    typed.write.partitionBy("date").parquet(str(tmp_path / "parquet"))
    good.select(*EVENT_FIELDS, F.to_date("event_time").alias("date")).write.partitionBy("date") \
        .option("header", "true").csv(str(tmp_path / "csv"))
    expected = good.count()
    for fmt in ("parquet", "csv"):
        checked = check_events(io.read_events(spark, str(tmp_path / fmt), fmt, run_date).rows, run_date, cfg.mining)
        assert checked.where(F.col("reason").isNull()).count() == expected, fmt
        assert checked.count() == expected, fmt
