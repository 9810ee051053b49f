"""`tagmill mine-logs`: search-log events + listing catalog -> tuples, labels, quarantine.

Read, call labeling/, write. The inputs are read (their columns mapped and checked) before any output is
touched. The run summary is computed from what was written, and the job fails before publishing if rows in !=
rows used + rows quarantined, or if more than inputs.max_quarantined_share of the events or of the listings
was quarantined.
"""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tagmill import stages
from tagmill.config import Config
from tagmill.jobs import io
from tagmill.jobs.frame import StageRun
from tagmill.labeling.events import RULE_REASONS, check_events, check_listings
from tagmill.labeling.mining import mine_logs

STAGE = stages.MINE_LOGS
log = logging.getLogger("tagmill.mine-logs")


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run mine-logs for cfg.run's date; returns the run summary (also written as summary.json)."""
    cfg = cfg.replace("run", date=cfg.run.run_date().isoformat())  # one date, also when it is today's
    inputs, run_date = cfg.inputs, cfg.run.run_date()
    raw_events = io.read_events(spark, inputs.events, inputs.events_format, run_date, inputs.event_columns)
    raw_listings = io.read_listings(spark, inputs.catalog, inputs.catalog_format, inputs.catalog_columns)
    stage = StageRun(spark, cfg, STAGE)  # withdraws the summary: only once the inputs have passed their checks
    for what, files in (("events", raw_events.files), ("catalog", raw_listings.files)):
        if files.skipped:
            log.warning("mine-logs %s: %d %s file(s) not read (names starting with '.' or '_'): %s", stage.run_date,
                        len(files.skipped), what, ", ".join(files.skipped[:5]))
    events = check_events(raw_events.rows, stage.run_date, cfg.mining).persist(StorageLevel.MEMORY_AND_DISK)
    listings = check_listings(raw_listings.rows, cfg.mining.max_title_chars, cfg.mining.max_id_chars
                              ).persist(StorageLevel.MEMORY_AND_DISK)
    mined = mine_logs(events, listings, cfg.mining, cfg.text)
    # Spark matches cached plans inside later plans: every output below reuses these two.
    mined.normalized.persist(StorageLevel.MEMORY_AND_DISK)
    mined.all_tuples.persist(StorageLevel.MEMORY_AND_DISK)

    log.info("mine-logs %s: writing tuples and labels", stage.run_date)
    for name in ("tuples", "query_forms", "labels", "images", "dropped_labels", "events_quarantine",
                 "listings_quarantine"):
        stage.write(getattr(mined, name), name)
    stage.write(mined.image_labels, "image_labels")

    body = _counts(stage, events.count(), listings.count())
    body["input_files"] = {"events": raw_events.files.summary(), "catalog": raw_listings.files.summary()}
    for df in (events, listings, mined.normalized, mined.all_tuples):
        df.unpersist()
    return stage.finish(body)


def _counts(stage: StageRun, events_in: int, listings_in: int) -> dict:
    """Counts read back from the written tables; they must add up."""
    mining = stage.cfg.mining

    def by_reason(name) -> dict[str, int]:
        return {r["reason"]: r["count"] for r in stage.read(name).groupBy("reason").count().orderBy("reason").collect()}

    tuples = stage.read("tuples").agg(F.coalesce(F.sum("events"), F.lit(0)).alias("events"),
                                      F.count(F.lit(1)).alias("tuples")).first()
    image_labels = stage.read("image_labels").agg(
        F.countDistinct("image_key").alias("images"), F.countDistinct("product_id").alias("products"),
        F.countDistinct("label").alias("labels"), F.count(F.lit(1)).alias("pairs")).first()
    events_q, listings_q = by_reason("events_quarantine"), by_reason("listings_quarantine")
    events_used = int(tuples["events"])
    listings_used = stage.read("images").select("product_id").distinct().count()
    io.check_counts("events", events_in, events_used, events_q)  # both first: a mismatch is a bug, and says so
    io.check_counts("listings", listings_in, listings_used, listings_q)
    stage.check_counts("events", events_in, events_used, events_q, "events_quarantine", RULE_REASONS,
                       "missing_field on most rows usually means a column the events name otherwise: map it "
                       "with inputs.event_columns.")
    stage.check_counts("listings", listings_in, listings_used, listings_q, "listings_quarantine", (),
                       "missing_field or no_images on most rows usually means a column the catalog names "
                       "otherwise: map it with inputs.catalog_columns.")
    return {
        "events": {"in": events_in, "used": events_used, "quarantined": events_q},
        "listings": {"in": listings_in, "used": listings_used, "quarantined": listings_q},
        "tuples": tuples["tuples"],
        "labels": {
            "tier": mining.label_tier,
            "min_images": mining.min_label_images,
            "kept": image_labels["labels"],
            "dropped": stage.read("dropped_labels").count(),
            "images": image_labels["images"],
            "products": image_labels["products"],
            "image_label_pairs": image_labels["pairs"],
        },
    }
