"""The gate's own summary page and its history across runs: readable offline, with no external URL.

great-expectations' Data Docs load their CSS and JavaScript from CDNs, so offline they show unstyled pages.
This module renders a page of its own from a `GateResult` (Jinja2, autoescaped, styles inline, no script):
the verdict, every expectation with its outcome, the sampled rows of each failure, a link to the Data Docs,
and the history of the gate on one outputs root: every run, its date and each expectation's outcome.

The history is a JSON Lines file, one `history_entry` per gate run (passed or failed), appended by
`append_history`; `read_history` reads it back, oldest first. Local paths only (as the Data Docs).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence

from jinja2 import Environment, PackageLoader, StrictUndefined

from tagmill import __version__
from tagmill.dataset.gate import SAMPLE_ROWS, GateResult

TEMPLATE = "gate.html.j2"
"""The page template, in the templates folder of the tagmill.dataset package."""
HISTORY_COLUMNS = 30
"""Runs shown as columns of the page's expectation x run table (the newest); the runs table lists them all."""


def history_entry(result: GateResult, run_date: str, started: str) -> dict:
    """One gate run as a history line: started (UTC ISO time), run_date, success, seconds, spark_jobs,
    expectations, failed and results ([{suite, type, column, description, success, unexpected_count}], one per
    expectation; column is the checked column or columns, "" for a table-level rule)."""
    return {"started": started, "run_date": run_date, "success": result.success,
            "seconds": round(result.seconds, 1), "spark_jobs": result.spark_jobs,
            "expectations": result.expectations, "failed": len(result.failures),
            "results": [{"suite": r["suite"], "type": r["expectation"]["type"], "column": _columns(r),
                         "description": r["expectation"]["description"] or "", "success": r["success"],
                         "unexpected_count": r["unexpected_count"]} for r in result.results]}


def append_history(path: str, entry: dict) -> None:
    """Append one entry as one line to the history file at `path` (created with its folder when missing). The
    line goes out in a single O_APPEND write, so gate runs of other dates on the same root do not interleave;
    after a torn last line (a run killed while writing) it starts on a line of its own."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    line = json.dumps(entry, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)


def read_history(path: str) -> list[dict]:
    """The history entries at `path`, oldest first ([] when there is no file). A line that is not a JSON
    object (a run killed while writing it) is skipped."""
    if not os.path.exists(path):
        return []
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    return sorted(entries, key=lambda e: str(e.get("started", "")))


def render_gate_page(result: GateResult, entry: dict, history: Sequence[dict], docs_link: str,
                     history_file: str) -> str:
    """The gate page (HTML str) of one run. `entry`: its history_entry; `history`: the root's entries, this
    run's included, oldest first; `docs_link`: the Data Docs index as a relative path from the page (or ""
    for none); `history_file`: where the history lives, named on the page. Every value is HTML-escaped."""
    runs = list(reversed(history))  # newest first
    shown = runs[:HISTORY_COLUMNS]
    rows: dict[tuple, dict] = {}
    for column, run in enumerate(shown):
        for r in run.get("results", []):
            key = (r.get("suite", ""), r.get("type", ""), r.get("column", ""), r.get("description", ""))
            rows.setdefault(key, {})[column] = r.get("success")
    matrix = [{"suite": k[0], "type": k[1], "column": k[2], "description": k[3],
               "cells": [cells.get(i) for i in range(len(shown))]} for k, cells in sorted(rows.items())]
    samples = {_expectation_key(f): f for f in result.failures}
    checked = []
    for r in result.results:
        failure = samples.get(_expectation_key(r))
        checked.append({"suite": r["suite"], "type": r["expectation"]["type"], "column": _columns(r),
                        "description": r["expectation"]["description"] or "", "success": r["success"],
                        "unexpected_count": r["unexpected_count"], "observed": _observed(r["observed"]),
                        "sample_rows": _sample_table(failure["sample_rows"]) if failure else None})
    return _environment().get_template(TEMPLATE).render(
        entry=entry, result=result, checked=checked, runs=runs, shown=shown, matrix=matrix, docs_link=docs_link,
        history_file=history_file, version=__version__, sample_rows=SAMPLE_ROWS)


def _expectation_key(result: dict) -> tuple[str, str, str]:
    """Suite, type and kwargs of an expectation: what pairs a result with its failure (and sampled rows)."""
    expectation = result["expectation"]
    return result["suite"], expectation["type"], json.dumps(expectation["kwargs"], sort_keys=True, default=str)


def _columns(result: dict) -> str:
    kwargs = result["expectation"]["kwargs"]
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs:
        return f"{kwargs['column_A']}, {kwargs['column_B']}"
    return ""


def _observed(value) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)


def _sample_table(rows: list[dict]) -> dict:
    columns = sorted({k for row in rows for k in row})
    return {"columns": columns, "rows": [["" if row.get(c) is None else str(row.get(c)) for c in columns]
                                         for row in rows]}


@functools.cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("tagmill.dataset", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
