"""Reading inputs and writing outputs: the only module that touches storage.

Paths go through Spark and Hadoop's FileSystem, so a local folder, HDFS or an object store configured in
Spark all work the same. A stage's outputs live under ROOT/<stage>/<table>/run_date=D/; its run summary
at ROOT/<stage>/_runs/run_date=D/summary.json is written last and removed first, so a date whose summary
is missing is never to be trusted (a killed run), and a re-run replaces exactly that date's partitions.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import NamedTuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tagmill.labeling.events import (CORRUPT, DATE_PARTITION, EVENT_FIELDS, EVENT_SCHEMA, LISTING_FIELDS,
                                     LISTING_SCHEMA)
from tagmill.stages import RUNS, stage_path, summary_path, table_path

PARTITION_COLUMN = "date"
"""Events may be stored under date=YYYY-MM-DD/ folders; partitions after the run date are not read."""


class InputError(ValueError):
    """An input that cannot be read at all (as opposed to bad rows, which are quarantined)."""


def _reader(spark: SparkSession, fmt: str, schema):
    reader = spark.read
    if fmt == "parquet":
        return reader.format("parquet")
    reader = (reader.schema(schema).option("mode", "PERMISSIVE")
              .option("columnNameOfCorruptRecord", CORRUPT))
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

    def summary(self) -> dict:
        return {"read": self.read, "skipped": list(self.skipped)}


class Input(NamedTuple):
    rows: DataFrame
    files: InputFiles


def list_input(spark: SparkSession, path: str, fmt: str) -> InputFiles:
    """Walk an input folder (or file) the way Spark will read it, and check every data file's first bytes.

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
    if fmt in _TEXT_FORMATS:
        problems = [p for p in (_compression_problem(fs, f) for f, _ in data) if p]
        if problems:
            raise InputError(f"{len(problems)} input file(s) under {path} cannot be read as {fmt}: "
                             + "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else ""))
    beside = tuple(f.toString() for f, d in data if d == 0) if partitioned else ()
    return InputFiles(read=len(data), beside_partitions=beside, skipped=tuple(skipped))


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


def _load(spark: SparkSession, path: str, fmt: str, schema) -> Input:
    files = list_input(spark, path, fmt)

    def load(where) -> DataFrame:
        return _reader(spark, fmt, schema).load(where).withColumn("source_file", F.col("_metadata.file_path"))

    df = load(path)
    if files.beside_partitions:
        df = df.unionByName(load(list(files.beside_partitions)), allowMissingColumns=True)
    return Input(df, files)


def read_events(spark: SparkSession, path: str, fmt: str, run_date: dt.date) -> Input:
    """Raw events (columns of EVENT_FIELDS, `_corrupt_record`, `source_file`, `date_partition`: the text of
    the file's date=... folder, null outside one), from partitions up to the run date when the input is
    date-partitioned; a partition that is not a date is read (labeling.events quarantines its rows)."""
    rows, files = _load(spark, path, fmt, EVENT_SCHEMA)
    partition = (F.col(PARTITION_COLUMN).cast("string") if PARTITION_COLUMN in rows.columns
                 else F.lit(None).cast("string"))
    day = F.try_to_date(partition, "yyyy-MM-dd")
    rows = rows.withColumn(DATE_PARTITION, partition).where(day.isNull() | (day <= F.lit(run_date)))
    keep = [c for c in (*EVENT_FIELDS, CORRUPT) if c in rows.columns]
    return Input(rows.select(*keep, "source_file", DATE_PARTITION), files)


def read_listings(spark: SparkSession, path: str, fmt: str) -> Input:
    """Raw listings plus `row_order`, which grows with a row's place in the input (first copy wins)."""
    rows, files = _load(spark, path, fmt, LISTING_SCHEMA)
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


def local_path(path: str) -> str | None:
    """The local file-system path of a plain path or a file: URI, None for any other scheme."""
    if path.startswith("file:"):
        return "/" + path[len("file:"):].lstrip("/")
    return None if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path) else path


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
