"""The validation gate: great-expectations suites over Spark DataFrames, one Data Docs report, one verdict.

`run_gate` validates each `TableSuite` (a DataFrame and the expectations it must meet), writes a
great-expectations file project with the Data Docs under `docs_dir`, and returns a `GateResult`. It never
raises on a failed expectation: the caller decides, usually with `check_gate`, which raises `GateFailed`.

Cost. GX's Spark engine bundles the aggregate metrics of one domain into a single `agg` (all single-column
rules of a table: one pass), but column-pair and uniqueness rules count their bad rows with queries of their
own (about two Spark jobs each), and per-row samples of unexpected values cost one query per expectation. So each table is validated in two passes over its
persisted frame: the first asks only for counts (a passing table never pays for samples), the second runs
again only the expectations that failed, asking for a few sample rows with their index columns. The gate
counts the Spark jobs it triggers and times itself, so a run can report what the gate costs next to the
build it guards.

great_expectations is imported on first use (`load_gx`, about 1-3 s), so importing this module (e.g. for
`GateFailed`) stays cheap.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import shutil
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame

SAMPLE_ROWS = 5
"""Sample rows kept per failed expectation (in the result, the error message and the Data Docs)."""

_DATASOURCE = "tagmill"
_RUN_NAME = "tagmill-gate"
# Counts only: a passing expectation triggers no per-row sample query.
_COUNTS_ONLY = {"result_format": "BASIC", "partial_unexpected_count": 0}
_JOB_GROUP_PROPERTIES = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")

log = logging.getLogger("tagmill.gate")


@dataclass(frozen=True)
class TableSuite:
    """One table to validate.

    name: the GX suite and asset name, e.g. "mine-logs.tuples" (unique within a gate run).
    frame: the DataFrame to validate, with any derived columns the expectations need already added.
    expectations: GX expectation objects (`great_expectations.expectations.Expect...`); the gate validates
        copies and never changes them.
    index_columns: columns that identify a row in the failure report and the Data Docs, e.g. ("image_key",).
    """

    name: str
    frame: DataFrame
    expectations: tuple
    index_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateResult:
    """What a gate run found and cost.

    failures: one dict per failed expectation: suite, expectation ({"type", "kwargs", "description"}),
        observed (GX's observed value, or the error message when the expectation could not run, else None),
        unexpected_count (None for table-level expectations) and sample_rows (up to SAMPLE_ROWS dicts of the
        index columns and the checked columns of unexpected rows).
    docs_index: path of the Data Docs index.html, built whether the gate passed or not.
    seconds: wall time of the whole run (GX import and Data Docs included).
    spark_jobs: Spark jobs the run triggered (persisting the frames included).
    results: one dict per expectation, passed or failed, in suite order: suite, expectation ({"type",
        "kwargs", "description"}), success, unexpected_count and observed (as in failures, made JSON-safe);
        what the gate page and the gate history show.
    """

    success: bool
    failures: tuple[dict, ...]
    docs_index: str
    seconds: float
    spark_jobs: int
    suites: int
    expectations: int
    results: tuple[dict, ...] = ()


class GateFailed(RuntimeError):
    """The validation gate found data that breaks an expectation; the message lists each failure."""


def run_gate(suites: Sequence[TableSuite], docs_dir: str) -> GateResult:
    """Validate every suite, build the Data Docs under `docs_dir` and return the verdict.

    docs_dir: a local folder that holds the great-expectations project (`gx/`, Data Docs under
        `gx/uncommitted/data_docs/local_site/`). What an earlier run left in `docs_dir/gx` is replaced;
        nothing else in `docs_dir` is touched.
    Each frame is persisted (MEMORY_AND_DISK) while its suite runs and unpersisted after, unless the caller
    had already cached it. Raises ValueError for malformed suites (duplicate names, missing index columns);
    failed expectations are reported in the result, never raised.
    """
    started = time.perf_counter()
    _check_suites(suites)
    gx = load_gx()
    context = _fresh_context(gx, os.path.abspath(docs_dir))
    run_id = _run_id()
    failures: list[dict] = []
    results: list[dict] = []
    spark_jobs = 0
    if suites:
        spark_context = suites[0].frame.sparkSession.sparkContext
        with _job_group(spark_context) as group:
            for suite in suites:
                failed, checked = _validate(gx, context, suite, run_id)
                failures += failed
                results += checked
            spark_jobs = len(spark_context.statusTracker().getJobIdsForGroup(group))
    sites = context.build_data_docs()
    docs_index = _file_path(sites["local_site"])
    result = GateResult(
        success=not failures,
        failures=tuple(failures),
        docs_index=docs_index,
        seconds=time.perf_counter() - started,
        spark_jobs=spark_jobs,
        suites=len(suites),
        expectations=sum(len(s.expectations) for s in suites),
        results=tuple(results),
    )
    log.info("gate: %d suites, %d expectations, %d failed, %d Spark jobs, %.1f s; Data Docs: %s",
             result.suites, result.expectations, len(failures), spark_jobs, result.seconds, docs_index)
    return result


def check_gate(result: GateResult) -> None:
    """Raise GateFailed (listing each failure and the Data Docs path) unless the gate passed."""
    if not result.success:
        raise GateFailed(format_failures(result))


def format_failures(result: GateResult) -> str:
    """A readable list of the failed expectations with up to SAMPLE_ROWS sample rows each."""
    lines = [f"{len(result.failures)} of {result.expectations} expectations failed; "
             f"see the Data Docs at {result.docs_index}"]
    for failure in result.failures:
        expectation = failure["expectation"]
        kwargs = ", ".join(f"{k}={v!r}" for k, v in expectation["kwargs"].items())
        count = failure["unexpected_count"]
        found = f"{count} unexpected row{'' if count == 1 else 's'}" if count is not None else \
            f"observed {failure['observed']!r}"
        about = f" ({expectation['description']})" if expectation["description"] else ""
        lines.append(f"- {failure['suite']}: {expectation['type']}({kwargs}): {found}{about}")
        lines += [f"    {row}" for row in failure["sample_rows"][:SAMPLE_ROWS]]
    return "\n".join(lines)


def _check_suites(suites: Sequence[TableSuite]) -> None:
    names = [s.name for s in suites]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"gate suites need unique names, got {duplicates} more than once: rename one of each")
    for suite in suites:
        missing = [c for c in suite.index_columns if c not in suite.frame.columns]
        if missing:
            raise ValueError(f"suite {suite.name}: index columns {missing} are not in its frame "
                             f"(columns: {suite.frame.columns}); add them to the frame or fix index_columns")


def load_gx():
    """The `great_expectations` module (its `expectations` submodule loaded), imported the gate's way:
    analytics off (GX_ANALYTICS_ENABLED=False unless set), GX's loggers at WARNING, and an error instead of
    a silent exit when the import stops the interpreter. Costs 1-3 s the first time.

    Leaves behind: GX_ANALYTICS_ENABLED in os.environ and the level of the "great_expectations" logger
    (WARNING, when the caller had not set one)."""
    # Before GX is imported: no usage statistics may leave the machine (there is no network anyway), and
    # GX's INFO lines (dozens at import, more per metric) stay out of the job's log unless the caller asked.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    gx_log = logging.getLogger("great_expectations")
    if gx_log.level == logging.NOTSET:
        gx_log.setLevel(logging.WARNING)
    try:
        import great_expectations as gx
        import great_expectations.expectations  # noqa: F401  (gx.expectations.Expect...)
    except SystemExit as err:
        # pyspark's Spark Connect check exits the interpreter (status 0!) when Python runs from `-c` or
        # stdin without grpc installed; a gate must never end a run as if it had passed.
        raise RuntimeError("importing great_expectations stopped the interpreter (pyspark's Spark Connect "
                           "check under `python -c` / stdin); run tagmill from a file or its entry point") from err
    return gx


def _fresh_context(gx, docs_dir: str):
    """A new GX file project at docs_dir/gx with one Spark datasource, no analytics, no progress bars."""
    shutil.rmtree(os.path.join(docs_dir, "gx"), ignore_errors=True)
    os.makedirs(docs_dir, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=docs_dir)
    context.enable_analytics(False)
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    context.variables.save()
    # persist=False: GX would persist each batch and never unpersist it; the gate caches (and frees) itself.
    context.data_sources.add_spark(_DATASOURCE, persist=False)
    return context


def _run_id():
    from great_expectations.core.run_identifier import RunIdentifier

    return RunIdentifier(run_name=_RUN_NAME, run_time=dt.datetime.now(dt.timezone.utc))


def _validate(gx, context, suite: TableSuite, run_id) -> tuple[list[dict], list[dict]]:
    """Validate one table (counts first, samples for the failed expectations only); returns its failures and
    the outcome of each of its expectations."""
    asset = context.data_sources.get(_DATASOURCE).add_dataframe_asset(suite.name)
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    gx_suite = context.suites.add(
        gx.ExpectationSuite(name=suite.name, expectations=[copy.copy(e) for e in suite.expectations]))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=gx_suite))
    parameters = {"dataframe": suite.frame}
    with _persisted(suite.frame):
        result = definition.run(batch_parameters=parameters, result_format=_COUNTS_ONLY, run_id=run_id)
        failed = [r for r in result.results if not r.success]
        sampled = [r for r in failed if (r.result or {}).get("unexpected_count")]
        if sampled:
            # Built from the stored configurations, so the results keep the ids of pass one's results.
            retry = gx.ExpectationSuite(name=suite.name, expectations=[r.expectation_config for r in sampled])
            batch = batch_definition.get_batch(batch_parameters=parameters)
            details = {d.expectation_config.id: d.result
                       for d in batch.validate(retry, result_format=_with_samples(suite.index_columns)).results}
            for r in sampled:
                detail = details.get(r.expectation_config.id) or {}
                if "unexpected_count" in detail:  # else keep pass one's counts
                    r.result = _renderable(detail)
            _store_again(context, suite.name, run_id, result)
    described = [(r.success, _failure(suite.name, r)) for r in result.results]
    outcomes = [_json_safe({**{k: v for k, v in d.items() if k != "sample_rows"}, "success": bool(ok)})
                for ok, d in described]
    return [d for ok, d in described if not ok], outcomes


def _json_safe(value: Any) -> Any:
    """`value` as plain JSON data (GX's observed values may be numpy numbers, dates, ...)."""
    return json.loads(json.dumps(value, default=str))


def _with_samples(index_columns: tuple[str, ...]) -> dict:
    result_format: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_ROWS}
    if index_columns:
        result_format["unexpected_index_column_names"] = list(index_columns)
    return result_format


def _renderable(result: dict) -> dict:
    """Data Docs show the index columns of unexpected rows only from `unexpected_index_list` (a COMPLETE
    result, which collects every bad row); hand the renderer the bounded sample instead."""
    if result.get("partial_unexpected_index_list") and "unexpected_index_list" not in result:
        return {**result, "unexpected_index_list": result["partial_unexpected_index_list"]}
    return result


def _store_again(context, suite_name: str, run_id, result) -> None:
    """Replace the stored pass-one result of this suite and run with the one that carries the samples."""
    store = context.validation_results_store
    keys = [k for k in store.list_keys()
            if k.expectation_suite_identifier.name == suite_name and k.run_id == run_id]
    for key in keys:
        store.set(key, result)


def _failure(suite_name: str, r) -> dict:
    config = r.expectation_config
    details = r.result or {}
    errors = _errors(r.exception_info or {})
    if "partial_unexpected_index_list" in details:
        sample_rows = [dict(row) for row in details["partial_unexpected_index_list"]]
    else:
        sample_rows = [{"value": v} for v in details.get("partial_unexpected_list", [])]
    return {
        "suite": suite_name,
        "expectation": {"type": config.type,
                        "kwargs": {k: v for k, v in config.kwargs.items() if k != "batch_id"},
                        "description": config.description},
        "observed": "; ".join(errors) if errors else details.get("observed_value"),
        "unexpected_count": details.get("unexpected_count"),
        "sample_rows": sample_rows[:SAMPLE_ROWS],
    }


def _errors(exception_info: dict) -> list[str]:
    """Messages of the errors that kept an expectation from running. GX reports one error flat, or one per
    failed metric keyed by the metric's id."""
    if "raised_exception" in exception_info:
        return [exception_info["exception_message"]] if exception_info["raised_exception"] else []
    return sorted({info["exception_message"] for info in exception_info.values()
                   if isinstance(info, dict) and info.get("exception_message")})


@contextmanager
def _persisted(frame: DataFrame) -> Iterator[None]:
    """Cache `frame` for the duration (every metric query reads it), unless the caller already did."""
    if frame.is_cached:
        yield
        return
    frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        yield
    finally:
        frame.unpersist()


@contextmanager
def _job_group(spark_context) -> Iterator[str]:
    """Run the block under a job group of its own (so its jobs can be counted), then restore the caller's."""
    group = f"tagmill-gate-{uuid.uuid4().hex}"
    saved = {key: spark_context.getLocalProperty(key) for key in _JOB_GROUP_PROPERTIES}
    spark_context.setJobGroup(group, "tagmill validation gate")
    try:
        yield group
    finally:
        for key, value in saved.items():
            spark_context.setLocalProperty(key, value)


def _file_path(url: str) -> str:
    return urllib.request.url2pathname(urllib.parse.urlparse(url).path)
