"""`tagmill mine-logs`: search-log events + listing catalog -> tuples, labels, repeat factors, quarantine.

Read, call labeling/, write. The run summary is computed from what was written, and the job fails if
rows in != rows used + rows quarantined.
"""

from __future__ import annotations

import logging
import time

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tagmill import __version__
from tagmill.config import Config
from tagmill.jobs import io
from tagmill.labeling.events import check_events, check_listings
from tagmill.labeling.mining import mine_logs
from tagmill.labeling.resample import repeat_factors

STAGE = "mine-logs"
log = logging.getLogger("tagmill.mine-logs")


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run mine-logs for cfg.run's date; returns the run summary (also written as summary.json)."""
    started = time.time()
    run_date = cfg.run.run_date()
    root = cfg.outputs.root
    summary_file = io.summary_path(root, STAGE, run_date)
    io.delete(spark, summary_file)  # from here on, this date is untrusted until the summary is back

    raw_events = io.read_events(spark, cfg.inputs.events, cfg.inputs.events_format, run_date)
    raw_listings = io.read_listings(spark, cfg.inputs.catalog, cfg.inputs.catalog_format)
    for what, files in (("events", raw_events.files), ("catalog", raw_listings.files)):
        if files.skipped:
            log.warning("mine-logs %s: %d %s file(s) not read (names starting with '.' or '_'): %s", run_date,
                        len(files.skipped), what, ", ".join(files.skipped[:5]))
    events = check_events(raw_events.rows, run_date, cfg.mining).persist(StorageLevel.MEMORY_AND_DISK)
    listings = check_listings(raw_listings.rows, cfg.mining.max_title_chars, cfg.mining.max_id_chars
                              ).persist(StorageLevel.MEMORY_AND_DISK)
    mined = mine_logs(events, listings, cfg.mining, cfg.text)
    # Spark matches cached plans inside later plans: every output below reuses these two.
    mined.normalized.persist(StorageLevel.MEMORY_AND_DISK)
    mined.all_tuples.persist(StorageLevel.MEMORY_AND_DISK)

    log.info("mine-logs %s: writing tuples and labels", run_date)
    for name in ("tuples", "query_forms", "labels", "images", "image_labels", "dropped_labels",
                 "events_quarantine", "listings_quarantine"):
        io.write_table(getattr(mined, name), root, STAGE, name, run_date)
    image_labels = io.read_table(spark, root, STAGE, "image_labels", run_date)
    repeats, threshold = repeat_factors(image_labels, cfg.mining.resample_factor, cfg.run.seed)
    paths = image_labels.select("image_key", "image_path", "product_id").distinct()
    io.write_table(repeats.join(paths, "image_key"), root, STAGE, "repeats", run_date)

    summary = _summarize(spark, cfg, events.count(), listings.count(), threshold)
    summary["input_files"] = {"events": raw_events.files.summary(), "catalog": raw_listings.files.summary()}
    summary["seconds"] = round(time.time() - started, 1)
    for df in (events, listings, mined.normalized, mined.all_tuples):
        df.unpersist()
    io.write_json(spark, summary_file, summary)
    return summary


def _summarize(spark: SparkSession, cfg: Config, events_in: int, listings_in: int, threshold: float) -> dict:
    """Counts read back from the written tables; they must add up."""
    run_date = cfg.run.run_date()

    def table(name):
        return io.read_table(spark, cfg.outputs.root, STAGE, name, run_date)

    def by_reason(name) -> dict[str, int]:
        return {r["reason"]: r["count"] for r in table(name).groupBy("reason").count().orderBy("reason").collect()}

    tuples = table("tuples").agg(F.coalesce(F.sum("events"), F.lit(0)).alias("events"),
                                 F.count(F.lit(1)).alias("tuples")).first()
    image_labels = table("image_labels").agg(
        F.countDistinct("image_key").alias("images"), F.countDistinct("product_id").alias("products"),
        F.countDistinct("label").alias("labels"), F.count(F.lit(1)).alias("pairs")).first()
    repeats = table("repeats").agg(F.coalesce(F.sum("repeats"), F.lit(0)).alias("repeats")).first()
    events_q, listings_q = by_reason("events_quarantine"), by_reason("listings_quarantine")
    events_used = int(tuples["events"])
    listings_used = table("images").select("product_id").distinct().count()
    summary = {
        "stage": STAGE,
        "run_date": run_date.isoformat(),
        "tagmill_version": __version__,
        "events": {"in": events_in, "used": events_used, "quarantined": events_q},
        "listings": {"in": listings_in, "used": listings_used, "quarantined": listings_q},
        "tuples": tuples["tuples"],
        "labels": {
            "tier": cfg.mining.label_tier,
            "min_images": cfg.mining.min_label_images,
            "kept": image_labels["labels"],
            "dropped": table("dropped_labels").count(),
            "images": image_labels["images"],
            "products": image_labels["products"],
            "image_label_pairs": image_labels["pairs"],
        },
        "resampling": {"factor": cfg.mining.resample_factor, "threshold_t": threshold,
                       "repeats": int(repeats["repeats"])},
    }
    io.check_counts("events", events_in, events_used, events_q)
    io.check_counts("listings", listings_in, listings_used, listings_q)
    return summary
