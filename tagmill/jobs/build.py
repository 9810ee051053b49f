"""`tagmill build`: every stage that exists, in order, for one run date, in one Spark session."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyspark.sql import SparkSession

from tagmill.config import Config
from tagmill.jobs import assemble, image_pass, inputs, io, mine_logs, runs, shards, side_info, taxonomy
from tagmill.jobs.spark import spark_session

STAGES: dict[str, Callable[[SparkSession, Config], dict]] = {
    mine_logs.STAGE: mine_logs.run,
    image_pass.STAGE: image_pass.run,
    side_info.STAGE: side_info.run,
    taxonomy.STAGE: taxonomy.run,
    assemble.STAGE: assemble.run,
    shards.STAGE: shards.run,
}
"""Stage name -> job, in pipeline order. Later stages add themselves here."""

log = logging.getLogger("tagmill.build")


def run_stages(cfg: Config, stages: list[str] | None = None) -> dict[str, dict]:
    """Run the named stages (default: all, in order, the image pass only when images are configured
    (inputs.image_root; with or without a teacher), side-info and the taxonomy only when enabled);
    returns each stage's run summary."""
    optional = {image_pass.STAGE: bool(cfg.inputs.image_root), side_info.STAGE: cfg.side_info.enabled,
                taxonomy.STAGE: cfg.taxonomy.enabled}
    names = stages or [n for n in STAGES if optional.get(n, True)]
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; known: {list(STAGES)}")
    summaries = {}
    with spark_session(cfg.spark) as spark:
        check_inputs(spark, cfg, names)
        with runs.attempt(spark, cfg) as attempt_cfg:  # one writer; the old run stays until this one commits
            for name in names:
                log.info("stage %s: starting for %s", name, cfg.run.run_date())
                summaries[name] = STAGES[name](spark, attempt_cfg)
                log.info("stage %s: done in %ss", name, summaries[name].get("seconds"))
    return summaries


def check_inputs(spark: SparkSession, cfg: Config, names: list[str]) -> None:
    """Refuse a run whose configured inputs are missing, or whose events or catalog lack a column mine-logs
    needs (once inputs.event_columns / inputs.catalog_columns map their names), before anything is locked
    or written. Reads file listings and a sample of the files only (jobs.inputs)."""
    needed = {"inputs.events": cfg.inputs.events, "inputs.catalog": cfg.inputs.catalog} \
        if mine_logs.STAGE in names else {}
    if image_pass.STAGE in names or shards.STAGE in names:
        needed["inputs.image_root"] = cfg.inputs.image_root
    for key, path in needed.items():
        if not path:
            raise io.InputError(f"no input configured for {key}: set it in the config")
        if not io.exists(spark, path):
            raise io.InputError(f"input not found: {path} (set {key} in the config)")
    if mine_logs.STAGE in names:
        for path, fmt, columns in (
                (cfg.inputs.events, cfg.inputs.events_format, inputs.event_columns(cfg.inputs.event_columns)),
                (cfg.inputs.catalog, cfg.inputs.catalog_format, inputs.catalog_columns(cfg.inputs.catalog_columns))):
            io.check_columns(spark, io.list_input(spark, path, fmt, probe=False), fmt, columns)
