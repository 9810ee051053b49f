"""Reading inputs and writing outputs: the only module that touches storage (jobs.inputs aside, which reads
the first lines of local input files before Spark starts).

Paths go through Spark and Hadoop's FileSystem, so a local folder, HDFS or an object store configured in
Spark all work the same. A stage's outputs live under ROOT/<stage>/<table>/run_date=D/; its run summary
at ROOT/<stage>/_runs/run_date=D/summary.json is written last and removed first, so a date whose summary
is missing is never to be trusted (a killed run), and a re-run replaces exactly that date's partitions.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from tagmill.jobs.inputs import (SAMPLE_LINES, InputColumns, InputError, catalog_columns, columns_of_lines,
                                 event_columns, file_columns, local_path)
from tagmill.labeling.events import CORRUPT, DATE_PARTITION, EVENT_FIELDS, LISTING_FIELDS
from tagmill.stages import RUNS, stage_path, summary_path, table_path

PARTITION_COLUMN = "date"
"""Events may be stored under date=YYYY-MM-DD/ folders; partitions after the run date are not read."""


NO_RENAME: Mapping[str, str] = MappingProxyType({})
"""An input whose columns already have our names."""


def _reader(spark: SparkSession, fmt: str, schema: T.StructType):
    reader = spark.read
    if fmt == "parquet":
        return reader.format("parquet")
    reader = (reader.schema(T.StructType([*schema.fields, T.StructField(CORRUPT, T.StringType())]))
              .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT))
    if fmt == "csv":
        return reader.format("csv").option("header", "true").option("multiLine", "false")
    return reader.format("json")


_BOOKKEEPING = re.compile(r"^(_SUCCESS|_committed_.*|_started_.*|\..*\.crc)$")
"""Files Hadoop and Spark write beside data (markers, checksums): skipped without a word."""
_COMPRESSED = ((b"\x1f\x8b", "gzip", (".gz",)), (b"BZh", "bzip2", (".bz2",)),
               (b"\x28\xb5\x2f\xfd", "zstd", (".zst", ".zstd")), (b"\xfd7zXZ\x00", "xz", ()),
               (b"PK\x03\x04", "zip", ()))
"""(magic bytes, compression, the suffixes Spark decompresses it by): Spark picks a codec by a file's name,
so a gzip file called .jsonl would be read as garbage rows; xz and zip it cannot read at all."""
_TEXT_FORMATS = ("jsonl", "csv")


@dataclass(frozen=True)
class InputFiles:
    """What reading an input folder covers: every file is read, or named here as skipped."""
    read: int
    """Data files read (those beside date= folders included)."""
    beside_partitions: tuple[str, ...]
    """Files at the top of a date-partitioned folder: Spark's partition discovery leaves them out, so
    they are read apart."""
    skipped: tuple[str, ...]
    """Files and folders whose names start with "." or "_" (Spark never reads them), bookkeeping aside."""
    sample: tuple[str, ...] = ()
    """The first and the last data file (in path order), whose columns are checked."""

    def summary(self) -> dict:
        return {"read": self.read, "skipped": list(self.skipped)}


class Input(NamedTuple):
    rows: DataFrame
    files: InputFiles


def list_input(spark: SparkSession, path: str, fmt: str, probe: bool = True) -> InputFiles:
    """Walk an input folder (or file) the way Spark will read it and, with `probe`, check every data file's
    first bytes (an open per file: the reader does it; a check that only needs the list leaves it out).

    Raises InputError naming the files when a text input (jsonl, csv) is compressed under a name that does
    not say so (gzip called .jsonl), is compressed in a form Spark cannot read (xz, zip), or says .gz
    without being gzip."""
    if not path:
        raise InputError(f"no {fmt} input path configured: set it in the [inputs] section of the config")
    fs, top = fs_path(spark, path)
    if not fs.exists(top):
        raise InputError(f"input not found: {path} (check [inputs] in the config)")
    data, skipped = [], []

    def walk(folder, depth: int) -> None:
        for status in sorted(fs.listStatus(folder), key=lambda s: s.getPath().getName()):
            name, child = status.getPath().getName(), status.getPath()
            if name.startswith((".", "_")):
                if not _BOOKKEEPING.match(name):
                    skipped.append(child.toString())
            elif status.isDirectory():
                walk(child, depth + 1)
            else:
                data.append((child, depth))

    if fs.getFileStatus(top).isDirectory():
        walk(top, 0)
    else:
        data.append((top, 0))
    partitioned = any(d > 0 for _, d in data)
    if fmt in _TEXT_FORMATS and probe:
        problems = [p for p in (_compression_problem(fs, f) for f, _ in data) if p]
        if problems:
            raise InputError(f"{len(problems)} input file(s) under {path} cannot be read as {fmt}: "
                             + "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else ""))
    beside = tuple(f.toString() for f, d in data if d == 0) if partitioned else ()
    names = sorted(f.toString() for f, _ in data)
    return InputFiles(read=len(data), beside_partitions=beside, skipped=tuple(skipped),
                      sample=tuple(names[:1] + names[-1:]) if len(names) > 1 else tuple(names))


def _compression_problem(fs, path) -> str | None:
    """Why Spark would misread this text file by its name, or None."""
    stream = fs.open(path)
    try:  # a byte at a time: py4j copies a byte[] argument instead of letting Java fill it
        head = bytearray()
        while len(head) < 6 and (byte := stream.read()) >= 0:
            head.append(byte)
    finally:
        stream.close()
    name = path.getName().lower()
    for magic, kind, suffixes in _COMPRESSED:
        if head.startswith(magic):
            if not suffixes:
                return f"{path} is {kind}-compressed, which Spark cannot read: decompress it"
            if not name.endswith(suffixes):
                return f"{path} is {kind}-compressed but its name does not say so: rename it to end in {suffixes[0]}"
            return None
    if name.endswith(".gz"):
        return f"{path} ends in .gz but is not gzip data: decompress or rename it"
    return None


def check_columns(spark: SparkSession, files: InputFiles, fmt: str, columns: InputColumns) -> list[str]:
    """Raise InputError unless the sampled files of an input have the columns `columns` needs (see
    jobs.inputs); returns the columns of the first file that could be sampled ([] if none)."""
    first: list[str] = []
    for file in files.sample:
        local = local_path(file)
        found = file_columns(local, fmt) if local is not None else _sampled_columns(spark, file, fmt)
        if found:
            columns.check(found, local or file)
            first = first or found
    return first


def _sampled_columns(spark: SparkSession, file: str, fmt: str) -> list[str]:
    """A file's columns read through Spark (a file system Python cannot open): a Parquet footer, or the
    first lines of a text file."""
    if fmt == "parquet":
        return spark.read.parquet(file).columns
    return columns_of_lines((r.value for r in spark.read.text(file).limit(SAMPLE_LINES).collect()), fmt)


def _load(spark: SparkSession, path: str, fmt: str, columns: InputColumns) -> Input:
    """Every file of the input read with our column names (renamed first), plus `source_file`."""
    files = list_input(spark, path, fmt)
    found = check_columns(spark, files, fmt, columns)
    # a CSV file's columns are taken by position: read them in the order of its header
    schema = columns.reader_schema(found if fmt == "csv" and found else None)

    def load(where) -> DataFrame:
        rows = columns.apply(_reader(spark, fmt, schema).load(where))
        return rows.withColumn("source_file", F.col("_metadata.file_path"))

    df = load(path)
    if files.beside_partitions:
        df = df.unionByName(load(list(files.beside_partitions)), allowMissingColumns=True)
    return Input(df, files)


def read_events(spark: SparkSession, path: str, fmt: str, run_date: dt.date,
                rename: Mapping[str, str] = NO_RENAME) -> Input:
    """Raw events (columns of EVENT_FIELDS, `_corrupt_record`, `source_file`, `date_partition`: the text of
    the file's date=... folder, null outside one), from partitions up to the run date when the input is
    date-partitioned; a partition that is not a date is read (labeling.events quarantines its rows).

    `rename` (inputs.event_columns) maps the input's column names to ours. Raises InputError when the
    sampled files lack a required column once mapped, or a mapped name (jobs.inputs)."""
    rows, files = _load(spark, path, fmt, event_columns(rename))
    partition = (F.col(PARTITION_COLUMN).cast("string") if PARTITION_COLUMN in rows.columns
                 else F.lit(None).cast("string"))
    day = F.try_to_date(partition, "yyyy-MM-dd")
    rows = rows.withColumn(DATE_PARTITION, partition).where(day.isNull() | (day <= F.lit(run_date)))
    keep = [c for c in (*EVENT_FIELDS, CORRUPT) if c in rows.columns]
    return Input(rows.select(*keep, "source_file", DATE_PARTITION), files)


def read_listings(spark: SparkSession, path: str, fmt: str, rename: Mapping[str, str] = NO_RENAME) -> Input:
    """Raw listings plus `row_order`, which grows with a row's place in the input (first copy wins).
    `rename` (inputs.catalog_columns) maps the input's column names to ours, checked like read_events'."""
    rows, files = _load(spark, path, fmt, catalog_columns(rename))
    keep = [c for c in (*LISTING_FIELDS, CORRUPT) if c in rows.columns]
    return Input(rows.select(*keep, "source_file", F.monotonically_increasing_id().alias("row_order")), files)


def write_table(df: DataFrame, root: str, stage: str, table: str, run_date: dt.date) -> None:
    """Replace the run date's partition of a Parquet table, and only that partition.

    The partition folder is written directly (not through partitionBy) so that an empty result still
    leaves a readable, empty partition with its schema."""
    df.write.mode("overwrite").parquet(table_path(root, stage, table, run_date))


def read_table(spark: SparkSession, root: str, stage: str, table: str, run_date: dt.date) -> DataFrame:
    path = resolve(spark, table_path(root, stage, table, run_date))
    if not exists(spark, path):
        raise InputError(f"missing table {path}: run the '{stage}' stage for {run_date} first")
    return spark.read.parquet(path)


ATTEMPTS = "_attempts"
"""A run writes under ROOT/_attempts/run_date=D/ID/ (same layout as ROOT) and is moved into ROOT when it
commits (jobs/runs.py)."""
_ATTEMPT = re.compile(rf"^(?P<root>.*?)/{ATTEMPTS}/run_date=(?P<date>[^/]+)/[^/]+(?P<rest>/.*)?$")


def attempts_path(root: str, run_date: dt.date) -> str:
    return f"{root.rstrip('/')}/{ATTEMPTS}/run_date={run_date.isoformat()}"


def attempt_date(path: str) -> str:
    """The run date (YYYY-MM-DD) of an attempt folder or of a path inside one."""
    match = _ATTEMPT.match(path.rstrip("/"))
    if match is None:
        raise ValueError(f"{path} is not inside an attempt folder ({ATTEMPTS}/run_date=D/ID)")
    return match["date"]


def committed_path(path: str) -> str:
    """Where a path inside a run's attempt folder lives once the run has committed; other paths unchanged."""
    match = _ATTEMPT.match(path.rstrip("/"))
    return path if match is None else f"{match['root']}{match['rest'] or ''}"


def resolve(spark: SparkSession, path: str) -> str:
    """`path` if it exists, else, for a path inside an attempt, the committed run's copy: a stage run alone
    reads the tables of the stages before it from the last good run."""
    return path if exists(spark, path) else committed_path(path)


def fs_path(spark: SparkSession, path: str):
    """(Hadoop FileSystem, Hadoop Path) of a path or URI."""
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hadoop_path


_fs = fs_path


def create_new(spark: SparkSession, path: str, data: bytes) -> bool:
    """Write a file that must not exist yet (Hadoop's create without overwrite); False when it does."""
    fs, hadoop_path = _fs(spark, path)
    try:
        stream = fs.create(hadoop_path, False)
    except Exception as err:  # py4j wraps the JVM's FileAlreadyExistsException
        if "FileAlreadyExists" in str(err) or "already exists" in str(err):
            return False
        raise
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()
    return True


def replace(spark: SparkSession, source: str, target: str) -> None:
    """Move `source` (a file or folder) to `target`, replacing what was there."""
    fs, src = _fs(spark, source)
    dst = _fs(spark, target)[1]
    fs.delete(dst, True)
    fs.mkdirs(dst.getParent())
    if not fs.rename(src, dst):
        raise OSError(f"could not move {source} to {target}")


def exists(spark: SparkSession, path: str) -> bool:
    fs, hadoop_path = _fs(spark, path)
    return fs.exists(hadoop_path)


def delete(spark: SparkSession, path: str) -> None:
    fs, hadoop_path = _fs(spark, path)
    fs.delete(hadoop_path, True)


def write_json(spark: SparkSession, path: str, data: dict) -> None:
    write_bytes(spark, path, json.dumps(data, indent=2, sort_keys=True).encode("utf-8"))


def write_bytes(spark: SparkSession, path: str, data: bytes) -> None:
    fs, hadoop_path = _fs(spark, path)
    stream = fs.create(hadoop_path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def read_bytes(spark: SparkSession, path: str) -> bytes:
    """A small file's bytes (a run's word vectors, not a table)."""
    fs, hadoop_path = _fs(spark, resolve(spark, path))
    if not fs.exists(hadoop_path):
        raise InputError(f"missing file {path}")
    stream = fs.open(hadoop_path)
    try:
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def read_summary(spark: SparkSession, root: str, stage: str, run_date: dt.date) -> dict:
    """A stage's run summary; its absence means the stage has not finished for that date."""
    path = resolve(spark, summary_path(root, stage, run_date))
    if not exists(spark, path):
        raise InputError(f"missing {path}: run the '{stage}' stage for {run_date} first")
    return json.loads("\n".join(spark.sparkContext.textFile(path, 1).collect()))


def previous_run_date(spark: SparkSession, root: str, stage: str, run_date: dt.date) -> dt.date | None:
    """The latest date before `run_date` for which `stage` finished (its summary exists), or None."""
    root = committed_path(root)
    fs, folder = _fs(spark, stage_path(root, stage, RUNS))
    if not fs.exists(folder):
        return None
    earlier = []
    for status in fs.listStatus(folder):
        name = status.getPath().getName()
        try:
            day = dt.date.fromisoformat(name.split("=", 1)[1]) if name.startswith("run_date=") else None
        except ValueError:
            day = None  # a foreign folder, not a run
        if day is not None and day < run_date:
            earlier.append(day)
    # the latest that finished: only candidates' summaries are looked up
    return next((day for day in sorted(earlier, reverse=True) if exists(spark, summary_path(root, stage, day))), None)


class CountMismatch(RuntimeError):
    """Rows went missing between a stage's input and its outputs: a bug, never to be published."""


def check_counts(what: str, rows_in: int, rows_out: int, quarantined: dict[str, int]) -> None:
    """Raise CountMismatch unless rows in = rows out + rows quarantined (by reason)."""
    if rows_in != rows_out + sum(quarantined.values()):
        raise CountMismatch(f"{what}: {rows_in} in != {rows_out} out + {sum(quarantined.values())} quarantined "
                            f"{quarantined}")


class QuarantineLimit(RuntimeError):
    """A stage quarantined more of its input than inputs.max_quarantined_share allows: the input is more
    likely wrong (a column named otherwise, another format) than the rows bad, so nothing is published."""


EXAMPLE_CHARS = 300
"""An example row in a QuarantineLimit message is cut to this many characters."""


def check_quarantined_share(what: str, rows_in: int, quarantined: dict[str, int], max_share: float,
                            table: DataFrame, exempt: tuple[str, ...] = (), hint: str = "", top: int = 5) -> None:
    """Raise QuarantineLimit when more than `max_share` of a stage's input rows were quarantined.

    Rows quarantined for a reason in `exempt` (left out by a rule by design, e.g. expired events) count
    neither way. The message names the `top` reasons with their counts and one example row each, taken from
    `table` (the quarantine table, with a `reason` column; the smallest row of each reason, so the same one
    every run), then `hint` (what such a share usually means for this input)."""
    considered = rows_in - sum(n for r, n in quarantined.items() if r in exempt)
    bad = {r: n for r, n in quarantined.items() if r not in exempt and n}
    share = sum(bad.values()) / considered if considered > 0 else 0.0
    if share <= max_share:
        return
    reasons = sorted(bad, key=lambda r: (-bad[r], r))[:top]
    others = [c for c in table.columns if c != "reason"]
    examples = {r["reason"]: r["example"].asDict() for r in
                table.where(F.col("reason").isin(reasons)).groupBy("reason")
                .agg(F.min(F.struct(*others)).alias("example")).collect()}
    lines = [f"{what}: {sum(bad.values())} of {considered} rows ({share:.1%}) were quarantined, more than "
             f"inputs.max_quarantined_share = {max_share:g}"
             + (f" (rows left out by rule, {', '.join(exempt)}, not counted)" if exempt else "")
             + ". Top reasons:"]
    for reason in reasons:
        example = json.dumps(examples.get(reason), default=str, ensure_ascii=False)
        cut = example if len(example) <= EXAMPLE_CHARS else example[:EXAMPLE_CHARS] + " ..."
        lines.append(f"  {reason}: {bad[reason]} rows, e.g. {cut}")
    lines.append(f"{hint + ' ' if hint else ''}Fix the input, or raise inputs.max_quarantined_share "
                 "(1 turns the check off).")
    raise QuarantineLimit("\n".join(lines))
