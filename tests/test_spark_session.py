"""jobs.spark: the settings a stage changes for its own actions."""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import functions as F

from tagmill.jobs.spark import partitions_kept

COALESCE = "spark.sql.adaptive.coalescePartitions.enabled"


def _rows_per_task(frame) -> list[int]:
    """How many rows each task of a Python (mapInArrow) stage over `frame` gets, sorted."""
    def run(batches):
        yield pa.RecordBatch.from_arrays([pa.array([sum(batch.num_rows for batch in batches)])], names=["n"])
    return sorted(row.n for row in frame.mapInArrow(run, "n long").collect())


def test_partitions_kept_keeps_a_small_shuffles_partitions_and_puts_the_setting_back(spark):
    """97 small rows after a shuffle: adaptive execution merges the session's 2 shuffle partitions into one
    task (the image pass's forward stage ran on one core so); inside the block the Python stage gets both,
    and the setting is as it was after, the session's default or a user's own."""
    counted = spark.range(1000).withColumn("key", F.col("id") % 97).groupBy("key").count()
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert _rows_per_task(counted) == [97]
    with partitions_kept(spark):
        inside = _rows_per_task(counted)
    assert len(inside) == 2 and sum(inside) == 97 and min(inside) > 0
    assert spark.conf.get(COALESCE, None) is None and _rows_per_task(counted) == [97]
    spark.conf.set(COALESCE, "true")
    try:
        with partitions_kept(spark):
            assert spark.conf.get(COALESCE) == "false"
        assert spark.conf.get(COALESCE) == "true"
    finally:
        spark.conf.unset(COALESCE)
