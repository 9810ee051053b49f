"""`tagmill assemble`: mined image labels -> class index + one sample per image, split by product.

Read, call dataset.assemble, write. Every labeled image becomes exactly one sample (in = out), and the
job fails before writing its summary if that does not hold.
"""

from __future__ import annotations

import logging
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tagmill import __version__
from tagmill.config import SPLITS, Config
from tagmill.dataset.assemble import assemble_samples, class_index, class_support
from tagmill.jobs import io, mine_logs

STAGE = "assemble"
log = logging.getLogger("tagmill.assemble")


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run assemble for cfg.run's date; returns the run summary (also written as summary.json)."""
    started = time.time()
    run_date = cfg.run.run_date()
    root = cfg.outputs.root
    summary_file = io.summary_path(root, STAGE, run_date)
    io.delete(spark, summary_file)

    def mined(table):
        return io.read_table(spark, root, mine_logs.STAGE, table, run_date)

    image_labels = mined("image_labels")
    classes = class_index(image_labels)
    io.write_table(classes, root, STAGE, "class_index", run_date)
    classes = io.read_table(spark, root, STAGE, "class_index", run_date)
    samples = assemble_samples(image_labels, mined("images"), mined("repeats"), classes,
                               cfg.dataset.split_ratios, cfg.run.seed)
    io.write_table(samples, root, STAGE, "samples", run_date)
    samples = io.read_table(spark, root, STAGE, "samples", run_date)
    io.write_table(class_support(samples, classes), root, STAGE, "classes", run_date)

    images_in = image_labels.select("image_key").distinct().count()
    per_split = {r["split"]: r for r in samples.groupBy("split").agg(
        F.count(F.lit(1)).alias("samples"), F.countDistinct("product_id").alias("products"),
        F.sum("repeats").alias("repeats"), F.sum(F.size("class_ids")).alias("labels")).collect()}
    out = sum(r["samples"] for r in per_split.values())
    io.check_counts("labeled images", images_in, out, {})
    summary = {
        "stage": STAGE,
        "run_date": run_date.isoformat(),
        "tagmill_version": __version__,
        "images": {"in": images_in, "out": out, "quarantined": {}},
        "classes": classes.count(),
        "splits": {s: {k: int(per_split[s][k]) if s in per_split else 0
                       for k in ("samples", "products", "repeats", "labels")} for s in SPLITS},
        "seconds": round(time.time() - started, 1),
    }
    io.write_json(spark, summary_file, summary)
    log.info("assemble %s: %d samples, %d classes", run_date, out, summary["classes"])
    return summary
