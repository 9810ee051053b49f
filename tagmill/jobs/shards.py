"""`tagmill shards`: validate, then write and publish the dataset of one run date.

1. withdraw the date's dataset (its manifest goes first: from here on no reader trusts it);
2. the great-expectations gate over the mined tables, the image pass (when a teacher is configured) and
   the samples: its outcome goes to gate.json and an offline page gate.html beside the run summary, and one
   line to the outputs root's gate history (ROOT/gate/history.jsonl, committed or not); a failure publishes
   nothing, leaves the Data Docs report and exits non-zero;
3. executors write the shards into the staging folder; a sample whose image is unusable is quarantined;
4. counts are checked (samples in = samples in shards + quarantined), the shards move into place, the
   class index, one stats file per shard (stats/), the dataset card (README.md) and the wids indexes are
   written, and the manifest, last.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tagmill import __version__, stages
from tagmill.config import Config, to_dict
from tagmill.dataset.expectations import image_pass_suites, mined_suites, sample_suites
from tagmill.dataset.gate import check_gate, run_gate
from tagmill.dataset.gate_page import append_history, history_entry, read_history, render_gate_page
from tagmill.dataset.publish import RESULT_SCHEMA, finish_publish, plan_shards, shard_writer, start_publish
from tagmill.dataset.shards import ImageOptions
from tagmill.jobs import io
from tagmill.jobs.frame import StageRun
from tagmill.word_vector_files import FILES as WORD_VECTOR_FILES

STAGE = stages.SHARDS
log = logging.getLogger("tagmill.shards")

CLS_ENTRIES = True
"""Write `<key>.cls` members (WebDataset's class label) for single-class samples; the manifest records it
(cls_entries) and the trainer's reader skips them (trainer.reader._next_pair)."""


def dataset_path(cfg: Config) -> str:
    """Where the run date's dataset is published: ROOT/datasets/YYYY-MM-DD/ (manifest.json inside)."""
    return stages.dataset_path(cfg.outputs.root, cfg.run.run_date())


def gate_docs_path(cfg: Config) -> str:
    """The gate's great-expectations project (Data Docs under uncommitted/data_docs/)."""
    return os.path.abspath(f"{cfg.outputs.root.rstrip('/')}/gate/run_date={cfg.run.run_date().isoformat()}")


def gate_report_path(cfg: Config) -> str:
    """The gate's outcome for the run date (gate.json beside the stage's run summary), pass or fail."""
    return f"{stages.runs_path(cfg.outputs.root, STAGE, cfg.run.run_date())}/gate.json"


def gate_page_path(cfg: Config) -> str:
    """The gate's offline summary page for the run date (gate.html beside gate.json), pass or fail."""
    return f"{stages.runs_path(cfg.outputs.root, STAGE, cfg.run.run_date())}/gate.html"


def gate_history_path(cfg: Config) -> str:
    """The outputs root's gate history (one JSON line per gate run, every date): in the committed root, not
    in the run's attempt, so failed runs are kept too."""
    return os.path.abspath(io.committed_path(f"{cfg.outputs.root.rstrip('/')}/gate/history.jsonl"))


def config_sha256(cfg: Config) -> str:
    """Hash of every setting that shapes the dataset's content (not where or how fast it is built)."""
    data = to_dict(cfg)
    shaping = {k: data[k] for k in ("run", "inputs", "text", "mining", "dataset")}
    shaping["run"] = {"seed": cfg.run.seed, "date": cfg.run.run_date().isoformat()}
    return hashlib.sha256(repr(sorted(shaping.items())).encode("utf-8")).hexdigest()


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run the gate and publish the dataset for cfg.run's date; returns the run summary."""
    stage = StageRun(spark, cfg, STAGE)
    run_date = stage.run_date
    dataset = dataset_path(cfg)
    start_publish(dataset)

    mine_summary = stage.summary_of(stages.MINE_LOGS)
    assemble_summary = stage.summary_of(stages.ASSEMBLE)
    samples = stage.read("samples", stages.ASSEMBLE)
    classes = stage.read("classes", stages.ASSEMBLE)

    log.info("shards %s: validation gate", run_date)
    suites = mined_suites(stage.read("tuples", stages.MINE_LOGS), stage.read("image_labels", stages.MINE_LOGS),
                          mine_summary)
    if cfg.image_pass.teacher:
        suites += image_pass_suites(stage.read("teacher_tags", stages.IMAGE_PASS),
                                    stage.read("images", stages.IMAGE_PASS), stage.summary_of(stages.IMAGE_PASS))
    suites += sample_suites(samples, classes, assemble_summary["images"]["out"])
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    gate = run_gate(suites, gate_docs_path(cfg))
    page = gate_page_path(cfg)
    gate_summary = {"success": gate.success, "seconds": round(gate.seconds, 1), "spark_jobs": gate.spark_jobs,
                    "suites": gate.suites, "expectations": gate.expectations,
                    "failed": [f"{f['suite']}: {f['expectation']['type']} ({f['expectation']['description']})"
                               for f in gate.failures],
                    "data_docs": gate.docs_index, "page": page}
    io.write_json(spark, gate_report_path(cfg), gate_summary)
    entry = history_entry(gate, run_date.isoformat(), started)
    history = gate_history_path(cfg)
    append_history(history, entry)
    docs_link = os.path.relpath(gate.docs_index, os.path.dirname(os.path.abspath(page)))
    io.write_bytes(spark, page, render_gate_page(gate, entry, read_history(history), docs_link, history)
                   .encode("utf-8"))
    check_gate(gate)

    log.info("shards %s: writing shards", run_date)
    d = cfg.dataset
    opts = ImageOptions(max_side=d.image_max_side, quality=d.jpeg_quality)
    split_sizes = {s: v["samples"] for s, v in assemble_summary["splits"].items()}
    partitions = max(1, int(spark.conf.get("spark.sql.shuffle.partitions")))
    planned = plan_shards(samples, split_sizes, d.shard_max_samples, cfg.run.seed, partitions)
    writer = shard_writer(f"{dataset}/_staging", cfg.inputs.image_root, cfg.inputs.allowed_image_roots, opts,
                          d.shard_max_samples, d.shard_max_bytes, CLS_ENTRIES)
    written = stage.write(planned.mapInArrow(writer, RESULT_SCHEMA), "written")
    quarantine = written.where(F.col("kind") == "quarantine").select("image_key", "image_path", "split", "reason",
                                                                      "detail")
    stage.write(quarantine, "images_quarantine")
    shards = [r.asDict() for r in written.where(F.col("kind") == "shard")
              .select("shard", "split", "samples", "repeats", "bytes", "sha256", "classes", "labels", "quarantined",
                      "milliseconds").collect()]  # one row per shard
    quarantined = {r["reason"]: r["count"] for r in quarantine.groupBy("reason").count().collect()}
    samples_in = assemble_summary["images"]["out"]
    sharded = sum(s["samples"] for s in shards)
    stage.check_counts("samples", samples_in, sharded, quarantined, "images_quarantine")

    meta = {"dataset": run_date.isoformat(), "tagmill_version": __version__, "config_sha256": config_sha256(cfg),
            "image": {"max_side": d.image_max_side, "format": "jpeg", "quality": d.jpeg_quality}}
    class_rows = [r.asDict() for r in classes.collect()]  # the class index is part of the manifest anyway
    vectors = None
    if cfg.side_info.enabled:  # the build's word vectors travel with the dataset (SICoT side information)
        folder = stages.word_vectors_path(stage.root, run_date)
        vectors = {name: io.read_bytes(spark, f"{folder}/{name}") for name in WORD_VECTOR_FILES}
    manifest = finish_publish(dataset, shards, class_rows, meta, vectors, CLS_ENTRIES)
    # where the dataset and the gate's pages are once the run commits (a summary is read after it)
    published = io.committed_path(dataset)
    summary = stage.finish({
        "samples": {"in": samples_in, "out": sharded, "quarantined": quarantined},
        "splits": {split: totals.model_dump() for split, totals in manifest.splits.items()},
        "shards": len(shards),
        "shard_seconds": {"total": round(sum(s["milliseconds"] for s in shards) / 1000, 1),
                          "slowest": round(max((s["milliseconds"] for s in shards), default=0) / 1000, 1)},
        "classes": manifest.num_classes,
        "dataset": published,
        "manifest": f"{published}/manifest.json",
        "gate": {**gate_summary, "data_docs": io.committed_path(gate.docs_index), "page": io.committed_path(page)},
    })
    log.info("shards %s: published %d samples in %d shards at %s", run_date, sharded, len(shards), published)
    return summary

