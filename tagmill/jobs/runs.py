"""One writer per (outputs root, run date), and a run that replaces the date's outputs all at once.

The commit protocol (docs/architecture.md, "Runs"):

1. **Lock.** `ROOT/_locks/run_date=D.lock` is created exclusively (O_EXCL on a local root, a
   non-overwriting create elsewhere) before any output is touched; it names the holder (host, pid, its
   start time, the attempt). A second run of the date fails at once naming that holder. A lock whose
   process is gone (same host: no such pid, or a pid reused by a younger process) is stale and taken over.
2. **Recover.** An earlier attempt of the date that reached its commit point is rolled forward; any
   other attempt left by a failed or killed run is deleted.
3. **Attempt.** The stages write under `ROOT/_attempts/run_date=D/ID/`, a root with the same layout as
   ROOT; a table, summary or file the attempt has not written is read from ROOT (`io.resolve`). Nothing
   under ROOT changes, so a run that fails or is killed here leaves the last good run complete and
   trusted. A failed attempt is kept (its gate report, its Data Docs) until the next run of the date.
4. **Commit.** The attempt's units (every `run_date=D` folder, and `datasets/D`) are listed in
   `_COMMIT.json`, written last into the attempt: from here on the run can no longer fail and is rolled
   forward by whoever comes next. The replaced stages' summaries are withdrawn, the tables and datasets
   move into place, the stages' `_runs` folders (new summaries inside) move last, and the attempt is
   deleted. Readers that trust a stage only when its summary exists (every tagmill stage) see the
   complete old run or the complete new one; between the first withdrawn summary and the last moved
   one (renames only) the date reads as unfinished.
5. **Unlock.**
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
from collections.abc import Iterator

from pyspark.sql import SparkSession

from tagmill import stages
from tagmill.config import Config
from tagmill.jobs import io

log = logging.getLogger("tagmill.runs")

LOCKS = "_locks"
COMMIT = "_COMMIT.json"


class RunLocked(RuntimeError):
    """Another run holds the (outputs root, run date): a second writer would mix two runs' tables."""


def lock_path(root: str, run_date: dt.date) -> str:
    return f"{root.rstrip('/')}/{LOCKS}/run_date={run_date.isoformat()}.lock"


def attempts(spark: SparkSession, root: str, run_date: dt.date) -> list[str]:
    """The attempt folders of a run date that are still there (failed, killed or committing), oldest first."""
    fs, folder = io.fs_path(spark, io.attempts_path(root, run_date))
    if not fs.exists(folder):
        return []
    return sorted(str(s.getPath().toString()) for s in fs.listStatus(folder) if s.isDirectory())


@contextlib.contextmanager
def attempt(spark: SparkSession, cfg: Config) -> Iterator[Config]:
    """Lock the run date, recover what an earlier run left, and yield `cfg` with its outputs root moved to
    a fresh attempt folder; commit the attempt when the block ends without an exception. The lock is
    released in every case."""
    root, run_date = cfg.outputs.root, cfg.run.run_date()
    started = dt.datetime.now(dt.timezone.utc)
    attempt_id = f"{started.strftime('%Y%m%dT%H%M%S%fZ')}-{os.getpid()}"
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": _process_start(os.getpid()),
              "started": started.isoformat(timespec="seconds"), "attempt": attempt_id}
    with _locked(spark, lock_path(root, run_date), holder):
        for earlier in attempts(spark, root, run_date):
            _recover(spark, root, earlier)
        folder = f"{io.attempts_path(root, run_date)}/{attempt_id}"
        try:
            yield cfg.replace("outputs", root=folder)
        except BaseException:
            log.warning("run of %s failed: the last good run under %s is unchanged; this attempt's outputs are "
                        "kept in %s until the next run of the date", run_date, root, folder)
            raise
        commit(spark, root, folder)


def commit(spark: SparkSession, root: str, folder: str) -> None:
    """Publish an attempt over ROOT: write its commit record (the point of no return), then roll it forward."""
    units = _units(spark, folder)
    if not units:
        io.delete(spark, folder)
        return
    io.write_json(spark, f"{folder}/{COMMIT}", {"units": units})
    _roll_forward(spark, root, folder)


def _recover(spark: SparkSession, root: str, folder: str) -> None:
    if io.exists(spark, f"{folder}/{COMMIT}"):
        log.warning("rolling forward %s: its run was stopped after its commit point", folder)
        _roll_forward(spark, root, folder)
    else:
        log.info("deleting %s, left by a run that did not finish", folder)
        io.delete(spark, folder)


def _roll_forward(spark: SparkSession, root: str, folder: str) -> None:
    """Move every unit of a committed attempt into place. Idempotent: a unit already moved is skipped, so
    a roll-forward stopped halfway is finished by the next one."""
    units = json.loads(io.read_bytes(spark, f"{folder}/{COMMIT}"))["units"]
    summaries = [u for u in units if _is_runs(u)]
    for unit in summaries:  # withdrawn first: no reader trusts a stage while its tables are being replaced
        if io.exists(spark, f"{folder}/{unit}"):
            io.delete(spark, f"{root.rstrip('/')}/{unit}/summary.json")
    for unit in [u for u in units if not _is_runs(u)] + summaries:
        source, target = f"{folder}/{unit}", f"{root.rstrip('/')}/{unit}"
        if io.exists(spark, source):
            io.replace(spark, source, target)
    io.delete(spark, folder)


def _is_runs(unit: str) -> bool:
    return unit.split("/")[-2:-1] == [stages.RUNS]


def _units(spark: SparkSession, folder: str) -> list[str]:
    """Paths relative to the attempt of what it publishes: each `run_date=D` or `D` folder (a date's table
    partition, run folder, Data Docs or dataset), and any file outside one; sorted."""
    fs, top = io.fs_path(spark, folder)
    date = io.attempt_date(folder)
    names = {f"run_date={date}", date}
    found = []

    def walk(path, relative):
        for status in fs.listStatus(path):
            name = status.getPath().getName()
            if name.startswith(".") and name.endswith(".crc"):
                continue  # Hadoop's checksum files travel with the file they belong to
            rel = f"{relative}/{name}" if relative else name
            if status.isDirectory() and name not in names:
                walk(status.getPath(), rel)
            else:
                found.append(rel)

    walk(top, "")
    return sorted(found)


@contextlib.contextmanager
def _locked(spark: SparkSession, path: str, holder: dict) -> Iterator[None]:
    data = json.dumps(holder, indent=2, sort_keys=True).encode("utf-8")
    if not _create_exclusive(spark, path, data):
        current = _read_holder(spark, path)
        if current is None or not _is_stale(current):
            raise RunLocked(_held_message(path, current))
        log.warning("taking over the stale lock %s: its process (host %s, pid %s) is gone",
                    path, current.get("host"), current.get("pid"))
        io.delete(spark, path)
        if not _create_exclusive(spark, path, data):
            raise RunLocked(_held_message(path, _read_holder(spark, path)))
    try:
        yield
    finally:
        if (_read_holder(spark, path) or {}).get("attempt") == holder["attempt"]:
            io.delete(spark, path)


def _create_exclusive(spark: SparkSession, path: str, data: bytes) -> bool:
    """Create the file only if it does not exist, atomically; False when it exists."""
    local = io.local_path(path)
    if local is not None:
        os.makedirs(os.path.dirname(local), exist_ok=True)
        try:
            fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    return io.create_new(spark, path, data)  # HDFS and object stores that honour overwrite=false


def _read_holder(spark: SparkSession, path: str) -> dict | None:
    try:
        return json.loads(io.read_bytes(spark, path))
    except (io.InputError, ValueError):
        return None  # gone meanwhile, or half written by a holder that died while writing it


def _is_stale(holder: dict) -> bool:
    """A lock is stale when its holder ran on this host and that process no longer runs (a pid that now
    belongs to a process started at another time counts as gone). A holder on another host is never
    presumed dead."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, someone else's
    started = holder.get("pid_started")
    return started is not None and _process_start(pid) not in (None, started)


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _held_message(path: str, holder: dict | None) -> str:
    if holder is None:
        return f"another run holds {path} (its holder is unreadable); if no run is going on, delete that file"
    return (f"another run holds this run date: host {holder.get('host')}, pid {holder.get('pid')}, started "
            f"{holder.get('started')} (lock {path}). Wait for it to finish; if that process is gone on another "
            "host, delete the lock file")
