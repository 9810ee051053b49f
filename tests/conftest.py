"""Shared fixtures: one local Spark session for the whole test run, and the demo marketplace."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def spark():
    from tagmill.config import SparkConfig
    from tagmill.jobs.spark import spark_session

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    cfg = SparkConfig(master="local[2]", shuffle_partitions=2, log_level="ERROR", driver_memory="1g")
    with spark_session(cfg) as session:
        yield session
