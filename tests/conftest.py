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
    cfg = load_config(None, {"demo": SMALL_DEMO, "mining": {"min_label_images": 3}, "taxonomy": {"min_images": 3},
                             "spark": {"master": "local[2]", "shuffle_partitions": 2}})
    config_file = write_demo_market(out, cfg)
    return config_file, load_config(config_file)


@pytest.fixture(scope="session")
def mined_market(spark, small_market):
    """(Config, mine-logs summary) of the small marketplace, mined once for every test module."""
    from tagmill.jobs import mine_logs
    from tagmill.jobs.build import run_stages

    _, cfg = small_market
    return cfg, run_stages(cfg, [mine_logs.STAGE])[mine_logs.STAGE]


@pytest.fixture(scope="session")
def side_info_market(mined_market, tmp_path_factory):
    """(Config, side-info summary): the small marketplace's mine-logs tables plus one side-info run (8 query
    clusters) in an outputs root of their own; later stages' fixtures copy both instead of re-running."""
    import shutil
    from pathlib import Path

    from tagmill.jobs import mine_logs, side_info
    from tagmill.jobs.build import run_stages

    cfg, _ = mined_market
    root = tmp_path_factory.mktemp("side-info-out")
    shutil.copytree(Path(cfg.outputs.root) / mine_logs.STAGE, root / mine_logs.STAGE)
    cfg = cfg.replace("outputs", root=str(root)).replace("side_info", query_clusters=8)
    return cfg, run_stages(cfg, [side_info.STAGE])[side_info.STAGE]


def make_tiny_dataset(folder, classes: int = 8, per_class: int = 30, size: int = 32, shard_samples: int = 25,
                      seller_every: int = 0):
    """Publish a small dataset with the project's own writer: demo-generator images of `classes` leaves
    (class path = domain, group), 70% train / 30% validation, single labels, repeats 1 or 2; with
    seller_every = n, image i of each class with i % n == 0 is labeled by its seller's category alone (a
    cold-start listing's), the others by the search log. Returns the manifest path."""
    from tagmill.demo.images import design_signatures, draw_image
    from tagmill.demo.titled import publish_samples, sample_record
    from tagmill.demo.vocabulary import build_leaves
    from tagmill.labeling.sources import SELLER_CATEGORY

    leaves = build_leaves()
    signatures = design_signatures(leaves, seed=7)
    picked = leaves[:: len(leaves) // classes][:classes]
    images, samples = {}, []
    for class_id, leaf in enumerate(picked):
        for i in range(per_class):
            key = f"{class_id:04d}{i:016x}"
            images[key] = draw_image(signatures[leaf.index], size, 7, class_id * 1000 + i)
            samples.append(sample_record(key, class_id, leaf.name_en, "train" if i % 10 < 7 else "validation",
                                         f"p{class_id}-{i}", leaf.name_en, repeats=1 + i % 2))
            if seller_every and i % seller_every == 0:
                samples[-1]["labels"][0].update(source=SELLER_CATEGORY, tier=None)
    class_rows = [{"class_id": c, "name": leaf.name_en, "path": [leaf.domain, leaf.group]}
                  for c, leaf in enumerate(picked)]
    return str(publish_samples(folder, samples, images.__getitem__, class_rows, "tiny", shard_samples=shard_samples))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """manifest.json of a small published dataset: 8 classes x 30 images of 32 px, shards of 25 samples."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny-dataset"))
