"""Shared fixtures: one local Spark session for the whole test run, and the demo marketplace."""

from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture(scope="session")
def spark():
    from tagmill.config import SparkConfig
    from tagmill.jobs.spark import spark_session

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    cfg = SparkConfig(master="local[2]", shuffle_partitions=2, log_level="ERROR", driver_memory="1g")
    with spark_session(cfg) as session:
        yield session


SMALL_DEMO = {"listings": 360, "sessions": 3000, "stock_photo_groups": 6, "bot_sessions": 2, "image_size": 64}
"""A demo marketplace small enough for tests (seconds to generate and mine)."""


@pytest.fixture(scope="session")
def small_market(tmp_path_factory):
    """(config file, Config) of a small generated demo marketplace, with K lowered to fit its size."""
    from tagmill.config import load_config
    from tagmill.jobs.demo import write_demo_market

    out = tmp_path_factory.mktemp("demo")
    cfg = load_config(None, {"demo": SMALL_DEMO, "mining": {"min_label_images": 3},
                             "spark": {"master": "local[2]", "shuffle_partitions": 2}})
    config_file = write_demo_market(out, cfg)
    return config_file, load_config(config_file)
