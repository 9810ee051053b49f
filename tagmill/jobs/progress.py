"""Progress of long Spark stages, told on the driver as log lines: tasks done, rate and time left.

Spark's own console progress bar stays off (jobs/spark.py): it draws over tagmill's log lines. Instead a
daemon thread polls the status tracker every POLL_SECONDS and, for a Spark stage that has run longer than
`every` seconds, logs one line per stage every `every` seconds (10 on a terminal, 60 otherwise, so a log
file gets a line a minute). Nothing is started under `-q` (the tagmill logger above INFO), so short stages
and quiet runs print nothing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pyspark.sql import SparkSession

log = logging.getLogger("tagmill.progress")

POLL_SECONDS = 1.0
TERMINAL_EVERY = 10.0
LOG_EVERY = 60.0
"""Seconds between two lines of one stage on a terminal, and when stderr is a file or a pipe."""


@dataclass
class _Seen:
    """A Spark stage as first seen, and when it was last reported."""

    since: float
    done: int
    reported: float


def progress_line(stage_id: int, name: str, done: int, total: int, done_since: int, seconds: float) -> str:
    """One stage's line: `done` of `total` tasks, the rate since it was first seen (`done_since` tasks done
    then, `seconds` ago) and the time left at that rate."""
    rate = (done - done_since) / seconds if seconds > 0 else 0.0
    left = f"about {_duration((total - done) / rate)} left" if rate > 0 else "time left unknown yet"
    return f"spark stage {stage_id} ({name}): {done}/{total} tasks, {rate:.1f} tasks/s, {left}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ProgressReporter:
    """Polls a SparkContext's status tracker in a daemon thread; `stop` ends it."""

    def __init__(self, spark: SparkSession, every: float):
        self._tracker = spark.sparkContext.statusTracker()
        self._every = every
        self._seen: dict[int, _Seen] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tagmill-progress", daemon=True)

    def start(self) -> ProgressReporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(POLL_SECONDS):
            try:
                self.poll(time.monotonic())
            except Exception as err:  # noqa: BLE001 - a session stopping under the poll ends the reports
                log.debug("progress reports end: %s", err)
                return

    def poll(self, now: float) -> list[str]:
        """Log (and return) the lines of the active stages that are due at `now`."""
        lines, active = [], set()
        for stage_id in self._tracker.getActiveStageIds():
            info = self._tracker.getStageInfo(stage_id)
            if info is None:
                continue
            active.add(stage_id)
            seen = self._seen.setdefault(stage_id, _Seen(now, info.numCompletedTasks, now))
            if now - seen.reported >= self._every:
                seen.reported = now
                lines.append(progress_line(stage_id, info.name, info.numCompletedTasks, info.numTasks, seen.done,
                                           now - seen.since))
        self._seen = {k: v for k, v in self._seen.items() if k in active}
        for line in lines:
            log.info(line)
        return lines


@contextlib.contextmanager
def reporting_progress(spark: SparkSession) -> Iterator[None]:
    """Report long stages' progress while the block runs (nothing when the tagmill logger is above INFO)."""
    if not log.isEnabledFor(logging.INFO):
        yield
        return
    reporter = ProgressReporter(spark, TERMINAL_EVERY if sys.stderr.isatty() else LOG_EVERY).start()
    try:
        yield
    finally:
        reporter.stop()
