"""Stage names and where each stage's tables, run summary and published dataset live.

Plain strings, no Spark: the jobs write through these paths, and the taxonomy report, the notebook and the
trainer read through them. A stage's tables live under ROOT/<stage>/<table>/run_date=D/, its run summary at
ROOT/<stage>/_runs/run_date=D/summary.json, and the dataset it publishes under ROOT/datasets/D/.
"""

from __future__ import annotations

import datetime as dt

MINE_LOGS = "mine-logs"
IMAGE_PASS = "image-pass"
SIDE_INFO = "side-info"
TAXONOMY = "taxonomy"
ASSEMBLE = "assemble"
SHARDS = "shards"
ORDER = (MINE_LOGS, IMAGE_PASS, SIDE_INFO, TAXONOMY, ASSEMBLE, SHARDS)
"""Every stage, in pipeline order."""

WORD_VECTORS = "word_vectors"
"""side-info's folder of the run date's word vectors, beside its tables."""
RUNS = "_runs"
"""The folder of a stage's run summaries (beside its tables)."""
DATASETS = "datasets"


def stage_path(root: str, stage: str, table: str) -> str:
    return f"{root.rstrip('/')}/{stage}/{table}"


def runs_path(root: str, stage: str, run_date: dt.date) -> str:
    """The folder of one run's own files: its summary.json, and what a stage keeps beside it (gate.json, code
    projections)."""
    return f"{stage_path(root, stage, RUNS)}/run_date={run_date.isoformat()}"


def summary_path(root: str, stage: str, run_date: dt.date) -> str:
    return f"{runs_path(root, stage, run_date)}/summary.json"


def table_path(root: str, stage: str, table: str, run_date: dt.date) -> str:
    return f"{stage_path(root, stage, table)}/run_date={run_date.isoformat()}"


def dataset_path(root: str, run_date: dt.date) -> str:
    """The published dataset of a run date (manifest.json, classes.json, shards/)."""
    return f"{root.rstrip('/')}/{DATASETS}/{run_date.isoformat()}"


def word_vectors_path(root: str, run_date: dt.date) -> str:
    """The folder of the run date's word vectors (vocabulary.txt, vectors.npy, word_vectors.json)."""
    return table_path(root, SIDE_INFO, WORD_VECTORS, run_date)
