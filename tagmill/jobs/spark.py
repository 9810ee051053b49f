"""The one place that starts Spark. Library code receives DataFrames and never builds a session.

Local by default (`local[*]`); the master URL (spark://, yarn, k8s://) and any Spark setting come from the
config or `--master`, so the same job runs unchanged on a cluster. An active session is reused and only a
session created here is stopped. Spark's console progress bar is off; a session created here reports its
long stages' progress as tagmill log lines instead (jobs/progress.py).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from pyspark.sql import SparkSession

from tagmill.config import SparkConfig
from tagmill.jobs.progress import reporting_progress


def session_settings(cfg: SparkConfig) -> dict[str, str]:
    """The Spark settings tagmill applies, before the user's own `spark.settings` (which win)."""
    local = cfg.master.startswith("local")
    cores = os.cpu_count() or 2
    settings = {
        # No console progress bar (it draws over the log; jobs/progress.py logs progress), no UI open to
        # the network.
        "spark.ui.showConsoleProgress": "false",
        "spark.ui.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.adaptive.enabled": "true",
        # Executors must run the same interpreter (and so the same installed tagmill) as the driver.
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    if local:
        settings |= {
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.memory": cfg.driver_memory or _fitted_memory(),
            # A handful of partitions per core: the default 200 costs more in task overhead than it gains.
            "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions or 2 * cores),
            # Shuffle files never leave this machine: compressing them only spends the scarce cores
            # (measured: about 10% of mine-logs' wall time on 2 cores).
            "spark.shuffle.compress": "false",
            "spark.shuffle.spill.compress": "false",
        }
    elif cfg.shuffle_partitions:
        settings["spark.sql.shuffle.partitions"] = str(cfg.shuffle_partitions)
    return settings | dict(cfg.settings)


def _fitted_memory() -> str:
    """A third of physical memory, between 1g and 16g: a small heap makes the JVM spend its time in GC
    (mine-logs on 10M events: 2g took twice as long as 6g)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return "2g"
    return f"{max(1, min(16, total // 3 // 2**30))}g"


@contextlib.contextmanager
def spark_session(cfg: SparkConfig) -> Iterator[SparkSession]:
    """Yield the active session if there is one, else a new one built from `cfg` (stopped on exit)."""
    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if cfg.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # bind to loopback, and say nothing about it
    builder = SparkSession.builder.master(cfg.master).appName(cfg.app_name)
    for key, value in session_settings(cfg).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level.upper())
    try:
        with reporting_progress(spark):
            yield spark
    finally:
        spark.stop()


_COALESCE = "spark.sql.adaptive.coalescePartitions.enabled"


@contextlib.contextmanager
def partitions_kept(spark: SparkSession) -> Iterator[None]:
    """Spark actions run inside keep every shuffle's `spark.sql.shuffle.partitions` partitions: adaptive query
    execution does not merge small ones.

    AQE merges shuffle partitions by their bytes. That suits SQL, not a Python stage whose rows are small and
    whose work per row is heavy: the image pass's rows to decode and forward (a content hash and a path each,
    ~0.7 MB for the demo's 7,065) became one partition, so decoding and the teacher's forward pass ran on one
    core of the demo's two (writing them: 46.6 s; in 4 partitions 27.6 s). Where rows carry their own bulk (the
    verifier's pairs, thumbnails joined on) AQE's merging is left alone: there it already leaves several
    partitions, and 4 measured slower (62 s against 57 s; each partition decodes its own thumbnails). The
    setting is read when an action runs, so the block must hold the action (a write). A setting of the user's
    own (`spark.settings`) is put back after."""
    before = spark.conf.get(_COALESCE, None)
    spark.conf.set(_COALESCE, "false")
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(_COALESCE)
        else:
            spark.conf.set(_COALESCE, before)
