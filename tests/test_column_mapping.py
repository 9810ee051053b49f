"""Inputs whose columns are named otherwise (issue 19): inputs.event_columns / inputs.catalog_columns map them,
a wrong or missing name fails before Spark starts naming the column, the file, the columns found and the key
to set, and a stage that quarantines more than inputs.max_quarantined_share fails before it publishes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from tagmill.config import ConfigError, InputsConfig, to_toml
from tagmill.jobs import build, inputs, io, mine_logs, runs
from tagmill.jobs.build import run_stages
from tagmill.jobs.cli import main

EVENT_NAMES = {"time": "ts", "session_id": "sid"}
CATALOG_NAMES = {"image_paths": "images"}
EVENT_MAPPING = {theirs: ours for ours, theirs in EVENT_NAMES.items()}
CATALOG_MAPPING = {theirs: ours for ours, theirs in CATALOG_NAMES.items()}
TABLES = ("tuples", "query_forms", "labels", "images", "image_labels", "dropped_labels",
          "events_quarantine", "listings_quarantine")


def _rename_keys(source: Path, target: Path, names: dict[str, str], hashes: dict[str, str]) -> None:
    """Copy a JSON Lines file with some keys renamed, byte for byte otherwise (bad bytes and truncated lines
    stay as they are); `hashes` gets sha256(renamed line) -> sha256(original line)."""
    pattern = re.compile(rb'([{,])"(' + b"|".join(re.escape(n.encode()) for n in names) + rb')":')
    lines = []
    for line in source.read_bytes().split(b"\n"):
        renamed = pattern.sub(lambda m: m[1] + b'"' + names[m[2].decode()].encode() + b'":', line)
        hashes[hashlib.sha256(renamed).hexdigest()] = hashlib.sha256(line).hexdigest()
        lines.append(renamed)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\n".join(lines))


def _renamed_market(cfg, folder: Path) -> tuple[Path, Path, dict[str, str]]:
    """(events, catalog, raw line hashes) of a copy of the demo market whose columns are named otherwise."""
    hashes: dict[str, str] = {}
    for what, names in (("events", EVENT_NAMES), ("catalog", CATALOG_NAMES)):
        top = Path(getattr(cfg.inputs, what))
        for file in sorted(top.rglob("*.jsonl")):
            _rename_keys(file, folder / what / file.relative_to(top), names, hashes)
    return folder / "events", folder / "catalog", hashes


@pytest.fixture(scope="module")
def renamed(small_market, tmp_path_factory):
    _, cfg = small_market
    return cfg, _renamed_market(cfg, tmp_path_factory.mktemp("renamed-market"))


# ---- the check before Spark ------------------------------------------------------------------------------

def test_a_wrong_name_fails_before_spark_naming_the_column_and_the_key(renamed):
    cfg, (events, catalog, _) = renamed
    wrong = cfg.inputs.model_copy(update={"events": str(events)})
    started = time.perf_counter()
    with pytest.raises(inputs.InputError) as err:
        inputs.preflight(wrong)
    seconds = time.perf_counter() - started
    message = str(err.value)
    assert "no columns 'time', 'session_id'" in message
    assert 'inputs.event_columns = {ts = "time", sid = "session_id"}' in message
    assert f"{events}/date=" in message  # the file it looked at
    assert "Columns found: ts, sid, user_id, query, product_id, position, action" in message
    print(f"pre-Spark check of the renamed events: {seconds:.3f} s")
    assert seconds < 30  # about 0.01 s measured; only a generous bound here

    mapped = wrong.model_copy(update={"event_columns": EVENT_MAPPING, "catalog": str(catalog)})
    with pytest.raises(inputs.InputError, match=r"has no column 'image_paths'.*"
                                                r'inputs.catalog_columns = \{images = "image_paths"\}'):
        inputs.preflight(mapped)
    inputs.preflight(mapped.model_copy(update={"catalog_columns": CATALOG_MAPPING}))  # passes


def test_a_mapping_that_names_an_absent_column_is_refused(renamed):
    cfg, (events, _, _) = renamed
    typo = cfg.inputs.model_copy(update={"events": str(events), "event_columns": {"tss": "time", "sid": "session_id"}})
    with pytest.raises(inputs.InputError) as err:
        inputs.preflight(typo)
    assert "inputs.event_columns maps 'tss'" in str(err.value) and "has no such column" in str(err.value)
    assert '{sid = "session_id", ts = "time"}' in str(err.value)
    with pytest.raises(ConfigError, match="'times', which is not one of our columns"):
        inputs.event_columns({"ts": "times"})
    with pytest.raises(ConfigError, match="more than one column is mapped to time"):
        inputs.event_columns({"ts": "time", "when": "time"})


def test_a_missing_input_fails_before_spark(tmp_path):
    with pytest.raises(inputs.InputError, match="input not found: .*nowhere .set inputs.events"):
        inputs.preflight(InputsConfig(events=str(tmp_path / "nowhere"), catalog=str(tmp_path)))


def test_csv_headers_and_parquet_footers_are_read_without_spark(tmp_path):
    (tmp_path / "events.csv").write_text("sid,ts,query,product_id,action\ns1,2026-11-20T10:00:00Z,mouse,p1,click\n")
    assert inputs.file_columns(str(tmp_path / "events.csv"), "csv") == ["sid", "ts", "query", "product_id", "action"]
    pq.write_table(pa.table({"id": ["p1"], "title": ["t"], "images": [["a.jpg"]]}), tmp_path / "catalog.parquet")
    assert inputs.file_columns(str(tmp_path / "catalog.parquet"), "parquet") == ["id", "title", "images"]
    spec = inputs.catalog_columns({"id": "product_id"})
    with pytest.raises(inputs.InputError, match=r'inputs.catalog_columns = \{id = "product_id", images = "image_paths"\}'):
        spec.check(inputs.file_columns(str(tmp_path / "catalog.parquet"), "parquet"), "catalog.parquet")


def test_the_command_refuses_a_wrong_name_before_touching_anything(renamed, tmp_path, capsys):
    cfg, (events, _, _) = renamed
    root = tmp_path / "out"
    config_file = tmp_path / "tagmill.toml"
    config_file.write_text(to_toml(cfg.replace("inputs", events=str(events)).replace("outputs", root=str(root))))
    assert main(["-q", "mine-logs", "--config", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tagmill: error: the events file") and "Traceback" not in err
    assert "inputs.event_columns = {ts" in err
    assert not root.exists()


# ---- once Spark runs -------------------------------------------------------------------------------------

def test_the_reader_and_the_build_check_the_columns_too(spark, renamed):
    cfg, (events, catalog, _) = renamed
    with pytest.raises(io.InputError, match="no columns 'time', 'session_id'"):
        io.read_events(spark, str(events), "jsonl", cfg.run.run_date())
    wrong = cfg.replace("inputs", catalog=str(catalog), events=str(events), event_columns=EVENT_MAPPING)
    with pytest.raises(io.InputError, match="no column 'image_paths'"):
        build.check_inputs(spark, wrong, [mine_logs.STAGE])
    build.check_inputs(spark, wrong.replace("inputs", catalog_columns=CATALOG_MAPPING), [mine_logs.STAGE])


def test_csv_columns_are_read_by_their_header_names(spark, tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "part.csv").write_text("action,sid,query,ts,product_id,extra\n"
                                     "click,s1,mouse,2026-11-20T10:00:00Z,p1,x\n")
    rows = io.read_events(spark, str(folder), "csv", dt.date(2026, 11, 20), EVENT_MAPPING).rows
    got = rows.select("time", "session_id", "query", "product_id", "action", "_corrupt_record").collect()
    assert [tuple(r) for r in got] == [("2026-11-20T10:00:00Z", "s1", "mouse", "p1", "click", None)]


def _tables(spark, cfg, hashes: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Every mine-logs table's rows, sorted; source files relative to the market, raw line hashes those of
    the original lines."""
    out = {}
    for table in TABLES:
        df = io.read_table(spark, cfg.outputs.root, mine_logs.STAGE, table, cfg.run.run_date())
        if "source_file" in df.columns:
            df = df.withColumn("source_file", F.regexp_extract("source_file", r"/((events|catalog)/.*)$", 1))
        rows = [r.asDict() for r in df.collect()]
        if hashes is not None:
            for row in rows:
                if row.get("raw_sha256"):
                    row["raw_sha256"] = hashes.get(row["raw_sha256"], row["raw_sha256"])
        out[table] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
    return out


@pytest.mark.slow
def test_renamed_inputs_build_the_same_tables_through_the_mapping(spark, mined_market, renamed, tmp_path):
    cfg, summary = mined_market
    _, (events, catalog, hashes) = renamed
    mapped = (cfg.replace("inputs", events=str(events), catalog=str(catalog), event_columns=EVENT_MAPPING,
                          catalog_columns=CATALOG_MAPPING).replace("outputs", root=str(tmp_path / "out")))
    again = run_stages(mapped, [mine_logs.STAGE])[mine_logs.STAGE]
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in summary.items() if k != "seconds"}
    assert _tables(spark, mapped, hashes) == _tables(spark, cfg)


# ---- the quarantine limit --------------------------------------------------------------------------------

def test_the_share_check_names_the_top_reasons_with_an_example(spark):
    table = spark.createDataFrame(
        [("unknown_action", "p1", "share"), ("unknown_action", "p2", "share"), ("unknown_action", "p0", "like"),
         ("bad_timestamp", "p3", "click"), ("expired", "p4", "click"), ("expired", "p5", "click")],
        "reason string, product_id string, action string").repartition(2)
    counts = {"unknown_action": 3, "bad_timestamp": 1, "expired": 2}
    io.check_quarantined_share("events", 10, counts, 0.5, table, ("expired",))  # 4 of 8: not over
    with pytest.raises(io.QuarantineLimit) as err:
        io.check_quarantined_share("events", 10, counts, 0.45, table, ("expired",), "Map the columns.")
    assert str(err.value).splitlines() == [
        "events: 4 of 8 rows (50.0%) were quarantined, more than inputs.max_quarantined_share = 0.45 (rows left "
        "out by rule, expired, not counted). Top reasons:",
        '  unknown_action: 3 rows, e.g. {"product_id": "p0", "action": "like"}',
        '  bad_timestamp: 1 rows, e.g. {"product_id": "p3", "action": "click"}',
        "Map the columns. Fix the input, or raise inputs.max_quarantined_share (1 turns the check off)."]
    io.check_quarantined_share("events", 10, {"unknown_action": 10}, 1.0, table)  # 1 turns it off


def _committed(root: str) -> dict[str, str]:
    top = Path(root)
    return {str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(top.rglob("*"))
            if p.is_file() and p.relative_to(top).parts[0] not in (runs.LOCKS, io.ATTEMPTS)}


@pytest.mark.slow
def test_a_stage_over_the_quarantine_limit_fails_and_leaves_the_last_good_run(spark, mined_market, tmp_path, capsys):
    cfg, _ = mined_market
    root = tmp_path / "out"
    shutil.copytree(Path(cfg.outputs.root) / mine_logs.STAGE, root / mine_logs.STAGE)
    before = _committed(str(root))
    summary = io.read_summary(spark, str(root), mine_logs.STAGE, cfg.run.run_date())
    event = {"ts": "2026-11-20T10:00:00Z", "sid": "s1", "query": "mouse", "product_id": "p1", "action": "click"}
    lines = [event, {**event, "sid": "s2"}] + [{**event, "action": "share", "sid": f"s{i}"} for i in range(3, 11)]
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "part.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "listings.jsonl").write_text(json.dumps({"product_id": "p1", "title": "mouse",
                                                                     "images": ["a.jpg"]}) + "\n")
    bad = cfg.replace("inputs", events=str(tmp_path / "events"), catalog=str(tmp_path / "catalog"),
                      event_columns=EVENT_MAPPING, catalog_columns=CATALOG_MAPPING).replace("outputs", root=str(root))
    config_file = tmp_path / "tagmill.toml"
    config_file.write_text(to_toml(bad))
    assert main(["-q", "mine-logs", "--config", str(config_file)]) == 6
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "mine-logs events: 8 of 10 rows (80.0%) were quarantined, more than inputs.max_quarantined_share = 0.5" in err
    assert '  unknown_action: 8 rows, e.g. {"source_file": "' in err and '"action": "share"' in err
    assert _committed(str(root)) == before
    assert io.read_summary(spark, str(root), mine_logs.STAGE, cfg.run.run_date()) == summary
    assert not Path(runs.lock_path(str(root), cfg.run.run_date())).exists()


# ---- progress of long stages -----------------------------------------------------------------------------

def test_long_stages_report_tasks_rate_and_time_left(caplog):
    from types import SimpleNamespace

    from tagmill.jobs.progress import ProgressReporter, progress_line

    assert progress_line(7, "parquet at x", 140, 200, 40, 50.0) == \
        "spark stage 7 (parquet at x): 140/200 tasks, 2.0 tasks/s, about 30 s left"
    assert progress_line(7, "p", 0, 200, 0, 5.0).endswith("0.0 tasks/s, time left unknown yet")
    assert "about 1 h 23 min left" in progress_line(1, "p", 1, 5001, 0, 1.0)

    done = {"n": 10}
    tracker = SimpleNamespace(
        getActiveStageIds=lambda: [3],
        getStageInfo=lambda _: SimpleNamespace(name="collect at y", numCompletedTasks=done["n"], numTasks=100))
    spark = SimpleNamespace(sparkContext=SimpleNamespace(statusTracker=lambda: tracker))
    reporter = ProgressReporter(spark, every=10.0)
    with caplog.at_level("INFO", logger="tagmill.progress"):
        assert reporter.poll(100.0) == []  # first seen: nothing yet
        done["n"] = 30
        assert reporter.poll(105.0) == []  # a short stage says nothing
        done["n"] = 50
        assert reporter.poll(110.0) == ["spark stage 3 (collect at y): 50/100 tasks, 4.0 tasks/s, about 12 s left"]
        assert reporter.poll(111.0) == []
    assert [r.message for r in caplog.records] == ["spark stage 3 (collect at y): 50/100 tasks, 4.0 tasks/s, "
                                                   "about 12 s left"]
