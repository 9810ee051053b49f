"""One writer per run date, and a re-run that replaces the last good run all at once or not at all
(jobs/runs.py): a second run is refused naming the holder, a stale lock is taken over, a killed or failed
re-run leaves the old run complete and trusted, a commit stopped halfway is rolled forward, and a mistyped
input fails before any output is touched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tagmill.config import to_toml
from tagmill.jobs import build, io, mine_logs, runs
from tagmill.jobs.build import run_stages
from tagmill.jobs.cli import main

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture
def good_run(mined_market, tmp_path):
    """(Config, config file) of an outputs root of its own holding a finished mine-logs run."""
    cfg, _ = mined_market
    root = tmp_path / "out"
    shutil.copytree(Path(cfg.outputs.root) / mine_logs.STAGE, root / mine_logs.STAGE)
    cfg = cfg.replace("outputs", root=str(root))
    config_file = tmp_path / "tagmill.toml"
    config_file.write_text(to_toml(cfg), encoding="utf-8")
    return cfg, config_file


def _committed(root: str) -> dict[str, str]:
    """sha256 of every file of the committed run (not the lock, not the attempts)."""
    top = Path(root)
    return {str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(top.rglob("*"))
            if p.is_file() and p.relative_to(top).parts[0] not in (runs.LOCKS, io.ATTEMPTS)}


def _summary(spark, cfg) -> dict:
    return io.read_summary(spark, cfg.outputs.root, mine_logs.STAGE, cfg.run.run_date())


def _rows(spark, cfg, table: str) -> list[str]:
    return sorted(map(repr, io.read_table(spark, cfg.outputs.root, mine_logs.STAGE, table,
                                          cfg.run.run_date()).collect()))


def _plant_lock(cfg, host: str, pid: int) -> Path:
    path = Path(runs.lock_path(cfg.outputs.root, cfg.run.run_date()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "pid_started": runs._process_start(pid),
                                "started": "2026-11-20T06:00:00+00:00", "attempt": "planted"}))
    return path


def test_a_second_run_of_the_date_is_refused_naming_the_holder(spark, good_run, capsys):
    cfg, config_file = good_run
    before = _committed(cfg.outputs.root)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = _plant_lock(cfg, socket.gethostname(), holder.pid)
        started = time.time()
        assert main(["-q", "mine-logs", "--config", str(config_file)]) == 5
        assert time.time() - started < 10, "a locked date must be refused at once, not after the stage"
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and socket.gethostname() in err and str(lock) in err
        assert _committed(cfg.outputs.root) == before and lock.exists()
    finally:
        holder.kill()
        holder.wait()
    # its process is gone now: the lock is stale, taken over, and released after the run
    run_stages(cfg, [mine_logs.STAGE])
    assert not lock.exists()
    assert runs.attempts(spark, cfg.outputs.root, cfg.run.run_date()) == []


def test_a_lock_held_on_another_host_is_never_presumed_dead(spark, good_run):
    cfg, _ = good_run
    _plant_lock(cfg, "some-other-host.internal", 1)
    with pytest.raises(runs.RunLocked, match="host some-other-host.internal, pid 1"):
        run_stages(cfg, [mine_logs.STAGE])


def test_a_killed_rerun_leaves_the_last_good_run_complete_and_trusted(spark, good_run):
    cfg, config_file = good_run
    before = _committed(cfg.outputs.root)
    summary = _summary(spark, cfg)
    attempts = Path(io.attempts_path(cfg.outputs.root, cfg.run.run_date()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY")}
    child = subprocess.Popen([sys.executable, "-m", "tagmill.jobs.cli", "-q", "mine-logs", "--config",
                              str(config_file)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:  # killed once the re-run has written its first tables into its attempt
        deadline = time.time() + 240
        while not list(attempts.glob(f"*/{mine_logs.STAGE}/labels/run_date=*/_SUCCESS")):
            assert child.poll() is None, "the re-run ended before it could be killed"
            assert time.time() < deadline, "the re-run wrote no table in time"
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert _committed(cfg.outputs.root) == before
    assert _summary(spark, cfg) == summary
    # the next run takes over the dead run's lock, deletes its attempt and publishes the same tables
    rows = _rows(spark, cfg, "image_labels")
    run_stages(cfg, [mine_logs.STAGE])
    assert _rows(spark, cfg, "image_labels") == rows
    assert not list(attempts.iterdir())
    assert not Path(runs.lock_path(cfg.outputs.root, cfg.run.run_date())).exists()


def test_a_failed_rerun_changes_nothing_and_keeps_its_attempt_until_the_next_run(spark, good_run, monkeypatch):
    cfg, _ = good_run
    before = _committed(cfg.outputs.root)

    def fail(spark, cfg):
        raise RuntimeError("a stage after mine-logs failed")

    monkeypatch.setitem(build.STAGES, "side-info", fail)
    with pytest.raises(RuntimeError, match="after mine-logs"):
        run_stages(cfg.replace("mining", min_label_images=4), [mine_logs.STAGE, "side-info"])
    assert _committed(cfg.outputs.root) == before
    kept = runs.attempts(spark, cfg.outputs.root, cfg.run.run_date())
    assert len(kept) == 1 and io.exists(spark, io.summary_path(kept[0], mine_logs.STAGE, cfg.run.run_date()))
    assert not Path(runs.lock_path(cfg.outputs.root, cfg.run.run_date())).exists()
    monkeypatch.undo()
    run_stages(cfg, [mine_logs.STAGE])
    assert runs.attempts(spark, cfg.outputs.root, cfg.run.run_date()) == []


def test_a_commit_stopped_halfway_is_rolled_forward_by_the_next_run(spark, good_run, monkeypatch):
    cfg, _ = good_run
    run_date = cfg.run.run_date()
    old_dropped = _rows(spark, cfg, "dropped_labels")
    changed = cfg.replace("mining", min_label_images=6)  # more labels under K: the new run differs from the old
    moves = []
    real_replace = io.replace

    def replace_then_die(spark, source, target):
        if len(moves) == 3:
            raise KeyboardInterrupt("killed during the commit")
        moves.append(target)
        real_replace(spark, source, target)

    monkeypatch.setattr(io, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_stages(changed, [mine_logs.STAGE])
    monkeypatch.undo()
    # past the commit point: the old summary is withdrawn, so the half-moved date is not trusted
    with pytest.raises(io.InputError, match="missing"):
        _summary(spark, cfg)
    new_summary = json.loads(Path(io.summary_path(runs.attempts(spark, cfg.outputs.root, run_date)[0],
                                                  mine_logs.STAGE, run_date).replace("file:", "")).read_text())
    run_stages(cfg.replace("side_info", query_clusters=4), ["side-info"])  # any run of the date finishes it
    assert _summary(spark, cfg) == new_summary
    assert new_summary["labels"]["min_images"] == 6
    assert len(_rows(spark, cfg, "dropped_labels")) > len(old_dropped)
    assert runs.attempts(spark, cfg.outputs.root, run_date) == []


def test_a_mistyped_input_fails_before_any_output_is_touched(spark, good_run, tmp_path, capsys):
    cfg, _ = good_run
    before = _committed(cfg.outputs.root)
    broken = tmp_path / "broken.toml"
    broken.write_text(to_toml(cfg.replace("inputs", events=cfg.inputs.events + "-typo")), encoding="utf-8")
    assert main(["-q", "mine-logs", "--config", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "events-typo" in err and "inputs.events" in err
    assert _committed(cfg.outputs.root) == before
    assert not Path(runs.lock_path(cfg.outputs.root, cfg.run.run_date())).exists()
    assert not Path(io.attempts_path(cfg.outputs.root, cfg.run.run_date())).exists()
