"""Search-log mining (MSURU 3.1-3.2, 5.2-5.6): events -> (query, product) tuples -> image labels.

Every function takes DataFrames and returns new ones. Session and user ids are used only to count
distinct sessions and to find bots; no function here returns a column that holds them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tagmill.config import TIERS, MiningConfig, TextConfig

TIER_COUNT_COLUMNS = {"click": "clicks", "contact": "contacts", "in_conversation": "in_conversations"}
TIER_LEVEL = {name: level for level, name in enumerate(TIERS, start=1)}


def normalize_query_column(events: DataFrame, text: TextConfig) -> DataFrame:
    """Add `query_norm` to rows with a `query` column.

    Normalization (NFKC, case, punctuation, jieba, WordNet lemmas; see labeling.text) runs once per
    distinct query, not per event, and the result is joined back.
    """
    stopwords = frozenset(text.stopwords)
    wordnet_dir = text.wordnet_dir

    def normalize(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # imported where it runs, in the executor: the driver never loads jieba's dictionary or WordNet for it
        from tagmill.labeling.text import normalize_queries

        for batch in batches:
            batch["query_norm"] = normalize_queries(batch["query"].tolist(), stopwords, wordnet_dir)
            yield batch

    forms = events.select("query").distinct().mapInPandas(normalize, "query string, query_norm string")
    return events.join(forms, "query", "left")


def find_bot_sessions(events: DataFrame, cfg: MiningConfig) -> DataFrame:
    """Sessions that break the bot rule: more than `bot_max_events` events or more than `bot_max_actions`
    clicks, contacts and in-conversations together. Needs `session_id`, `tier`; returns `session_id`."""
    stats = events.groupBy("session_id").agg(
        F.count(F.lit(1)).alias("events"),
        F.sum((F.col("tier") > 0).cast("int")).alias("actions"),
    )
    return stats.where((F.col("events") > cfg.bot_max_events) | (F.col("actions") > cfg.bot_max_actions)).select(
        "session_id")


def aggregate_tuples(events: DataFrame) -> DataFrame:
    """(query, product) tuples counted by distinct sessions.

    Needs `query_norm`, `product_id`, `session_id`, `tier` (0-3), `event_time`. Returns one row per
    (query_norm, product_id) with `clicks`, `contacts`, `in_conversations` (distinct sessions whose
    strongest action reached that tier, so the counts nest: clicks >= contacts >= in_conversations),
    `sessions` (distinct sessions that saw the pair at all, impressions included), `events` (rows
    aggregated) and `first_seen`/`last_seen`. A session clicking one product ten times counts once.
    """
    per_session = events.groupBy("query_norm", "product_id", "session_id").agg(
        F.max("tier").alias("tier"),
        F.count(F.lit(1)).alias("events"),
        F.min("event_time").alias("first_seen"),
        F.max("event_time").alias("last_seen"),
    )
    return per_session.groupBy("query_norm", "product_id").agg(
        *[F.sum((F.col("tier") >= level).cast("long")).alias(TIER_COUNT_COLUMNS[name])
          for name, level in TIER_LEVEL.items()],
        F.count(F.lit(1)).alias("sessions"),
        F.sum("events").alias("events"),
        F.min("first_seen").alias("first_seen"),
        F.max("last_seen").alias("last_seen"),
    )


def label_confidence(clicks: int, contacts: int, in_conversations: int, weights: dict[str, float]) -> float:
    """Noisy-or over sessions: each session whose strongest action is tier T says "the query names the
    product" with probability weights[T]. Counts nest (clicks include contacts include in-conversations)."""
    only = {"click": clicks - contacts, "contact": contacts - in_conversations, "in_conversation": in_conversations}
    miss = math.prod((1.0 - weights[t]) ** n for t, n in only.items())
    return 1.0 - miss


def product_labels(tuples: DataFrame, cfg: MiningConfig) -> DataFrame:
    """A product's queries that reached `cfg.label_tier` become its labels.

    Needs the output of `aggregate_tuples`. Returns product_id, label (= query_norm), tier (name of the
    strongest tier reached), clicks, contacts, in_conversations, sessions, confidence in [0, 1).
    No-clicks never make a label, and never a negative one either.
    """
    w = cfg.tier_weights
    miss = (F.pow(F.lit(1.0 - w["click"]), F.col("clicks") - F.col("contacts"))
            * F.pow(F.lit(1.0 - w["contact"]), F.col("contacts") - F.col("in_conversations"))
            * F.pow(F.lit(1.0 - w["in_conversation"]), F.col("in_conversations")))
    strongest = (F.when(F.col("in_conversations") > 0, "in_conversation")
                 .when(F.col("contacts") > 0, "contact").otherwise("click"))
    return tuples.where(F.col(TIER_COUNT_COLUMNS[cfg.label_tier]) > 0).select(
        "product_id",
        F.col("query_norm").alias("label"),
        strongest.alias("tier"),
        "clicks", "contacts", "in_conversations", "sessions",
        (F.lit(1.0) - miss).alias("confidence"),
    )


def listing_images(listings: DataFrame) -> DataFrame:
    """One row per (product, image): product_id, title, category_path, image_path, image_key (a stable
    20-hex-digit key of the path). Needs product_id, title and image_paths, and takes category_path when the
    listings have it (null where the seller gave none); a path listed twice in one listing counts once."""
    category = F.col("category_path") if "category_path" in listings.columns else F.lit(None).cast("string")
    images = listings.select("product_id", "title", category.alias("category_path"),
                             F.explode(F.array_distinct("image_paths")).alias("image_path"))
    return images.withColumn("image_key", F.substring(F.sha2(F.col("image_path"), 256), 1, 20))


def image_labels(labels: DataFrame, images: DataFrame, min_images: int) -> tuple[DataFrame, DataFrame]:
    """Attach each product's labels to all of its images (MSURU 3.2) and drop labels on fewer than
    `min_images` images (the K threshold of MSURU 3.2 / 5.6).

    Returns (kept, dropped): kept has one row per (image, label) with the label's evidence; dropped has
    one row per removed label: label, images, products, reason.
    """
    joined = images.drop("title", "category_path").join(labels, "product_id")
    support = joined.groupBy("label").agg(
        F.count(F.lit(1)).alias("images"), F.countDistinct("product_id").alias("products"))
    kept = joined.join(support.where(F.col("images") >= min_images).select("label"), "label")
    dropped = support.where(F.col("images") < min_images).withColumn("reason", F.lit("below_min_images"))
    return kept, dropped


@dataclass(frozen=True)
class MinedTables:
    """Everything mine-logs produces for one run date (lazy DataFrames, nothing computed yet).

    `normalized` (good events with query_norm) and `all_tuples` (before the catalog check) are the shared
    intermediates every output is built on: a job persists them so each is computed once."""

    normalized: DataFrame
    all_tuples: DataFrame
    tuples: DataFrame
    query_forms: DataFrame
    labels: DataFrame
    image_labels: DataFrame
    dropped_labels: DataFrame
    images: DataFrame
    events_quarantine: DataFrame
    listings_quarantine: DataFrame


def mine_logs(checked_events: DataFrame, checked_listings: DataFrame, cfg: MiningConfig,
              text: TextConfig) -> MinedTables:
    """The mine-logs stage: checked events and listings (outputs of labeling.events) in, tables out.

    Good events are normalized, bot sessions and events of unknown products go to quarantine with their
    reason, the rest become tuples, product labels and image labels. Quarantine rows keep what helps to
    find the bad row (file, fields, a hash of the raw text) but never a session or user id.
    """
    listings = checked_listings.where(F.col("reason").isNull())
    good = normalize_query_column(checked_events.where(F.col("reason").isNull()), text)
    nonempty = good.where(F.col("query_norm") != "")
    bots = find_bot_sessions(nonempty, cfg)
    used_all = nonempty.join(bots, "session_id", "left_anti")
    tuples_all = aggregate_tuples(used_all)
    known = listings.select("product_id")
    unknown = tuples_all.select("product_id").distinct().join(known, "product_id", "left_anti")
    tuples = tuples_all.join(known, "product_id", "left_semi")
    used = used_all.join(unknown, "product_id", "left_anti")

    labels = product_labels(tuples, cfg)
    images = listing_images(listings)
    kept, dropped = image_labels(labels, images, cfg.min_label_images)
    query_forms = used.groupBy("query_norm", "query").agg(F.count(F.lit(1)).alias("events"))

    quarantine = checked_events.where(F.col("reason").isNotNull()).unionByName(
        good.where(F.col("query_norm") == "").drop("query_norm").withColumn("reason", F.lit("empty_query"))
    ).unionByName(
        nonempty.join(bots, "session_id", "left_semi").drop("query_norm").withColumn("reason", F.lit("bot_session"))
    ).unionByName(
        used_all.join(unknown, "product_id", "left_semi").drop("query_norm")
        .withColumn("reason", F.lit("unknown_product"))
    )
    return MinedTables(
        normalized=good,
        all_tuples=tuples_all,
        tuples=tuples,
        query_forms=query_forms,
        labels=labels,
        image_labels=kept,
        dropped_labels=dropped,
        images=images,
        events_quarantine=quarantine.select(
            "source_file", "reason",
            *[F.substring(F.col(c).cast("string"), 1, 200).alias(c)
              for c in ("time", "query", "product_id", "action", "position")],
            F.sha2(F.col("_corrupt_record"), 256).alias("raw_sha256"),
        ),
        listings_quarantine=checked_listings.where(F.col("reason").isNotNull()).select(
            "source_file", "reason",
            F.substring("product_id", 1, 200).alias("product_id"),
            F.substring("title", 1, 200).alias("title"),
            F.size("image_paths").alias("images"),
            F.sha2(F.col("_corrupt_record"), 256).alias("raw_sha256"),
        ),
    )
