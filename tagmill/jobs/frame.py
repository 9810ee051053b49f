"""The frame every stage job runs in: one run of one stage for cfg.run's date.

It withdraws the stage's run summary first (from then on the date is untrusted until the summary is back),
reads and writes the date's tables, and writes the summary last: a header (stage, run date, tagmill
version), what the job counted, and the seconds it took. A job's `run()` is then read, call the library,
write, `check_counts` (in = out + quarantined, and not too much quarantined), `finish`.
"""

from __future__ import annotations

import time

from pyspark.sql import DataFrame, SparkSession

from tagmill import __version__
from tagmill.config import Config
from tagmill.jobs import io


class StageRun:
    """One stage's run: `read` tables of any stage, `write` (and read back) this stage's, `finish` last."""

    def __init__(self, spark: SparkSession, cfg: Config, stage: str):
        self.spark, self.cfg, self.stage = spark, cfg, stage
        self.root, self.run_date = cfg.outputs.root, cfg.run.run_date()
        self.summary_file = io.summary_path(self.root, stage, self.run_date)
        self.started = time.time()
        io.delete(spark, self.summary_file)

    def read(self, table: str, stage: str | None = None) -> DataFrame:
        """A table of the run date, of this stage or of `stage`."""
        return io.read_table(self.spark, self.root, stage or self.stage, table, self.run_date)

    def write(self, df: DataFrame, table: str) -> DataFrame:
        """Write one of this stage's tables for the run date and return it as read back (later steps and the
        summary count what was written, not what was planned)."""
        io.write_table(df, self.root, self.stage, table, self.run_date)
        return self.read(table)

    def summary_of(self, stage: str) -> dict:
        """An earlier stage's run summary for the date; raises InputError when that stage has not finished."""
        return io.read_summary(self.spark, self.root, stage, self.run_date)

    def check_counts(self, what: str, rows_in: int, rows_out: int, quarantined: dict[str, int], table: str,
                     exempt: tuple[str, ...] = (), hint: str = "") -> None:
        """Fail the stage before it publishes when its counts do not add up (io.CountMismatch) or more than
        inputs.max_quarantined_share of `what` was quarantined (io.QuarantineLimit, with the top reasons
        and an example row of each from this stage's quarantine `table`; reasons in `exempt` count neither
        way)."""
        io.check_counts(what, rows_in, rows_out, quarantined)
        io.check_quarantined_share(f"{self.stage} {what}", rows_in, quarantined,
                                   self.cfg.inputs.max_quarantined_share, self.read(table), exempt, hint)

    def seconds(self) -> float:
        return round(time.time() - self.started, 1)

    def finish(self, body: dict) -> dict:
        """Write the run summary, last: the header, `body`, then the seconds. Returns it."""
        summary = {"stage": self.stage, "run_date": self.run_date.isoformat(), "tagmill_version": __version__,
                   **body, "seconds": self.seconds()}
        io.write_json(self.spark, self.summary_file, summary)
        return summary
