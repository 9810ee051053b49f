"""The events and the catalog as configured: their own column names mapped to ours, and the check that an
input is there and has the columns a stage needs, made on a sample of its files before anything is read.

`inputs.event_columns` and `inputs.catalog_columns` map the input's names to ours ({ts = "time"}); the
mapping is applied when the input is read, before anything else. The check looks at the first and the last
data file of an input (the way Spark lists them: names starting with "." or "_" left out): the first lines of
a JSON Lines file (up to SAMPLE_LINES or SAMPLE_BYTES, the keys of every object among them), a CSV file's
header, a Parquet file's footer. `sample_local` does it without Spark for a local path (`tagmill mine-logs`
and `build` call `preflight` before Spark starts, so a wrong name fails in well under a second); `io._load` checks
again through Hadoop's FileSystem for any path once Spark runs.
"""

from __future__ import annotations

import bz2
import csv
import difflib
import gzip
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from tagmill.config import ConfigError, InputsConfig
from tagmill.labeling.events import (EVENT_FIELDS, EVENT_SCHEMA, LISTING_FIELDS, LISTING_SCHEMA,
                                     REQUIRED_EVENT_FIELDS, REQUIRED_LISTING_FIELDS)

SAMPLE_LINES = 1000
SAMPLE_BYTES = 1 << 20
"""A JSON Lines file is sampled up to this many lines or bytes, whichever comes first."""

_LIKELY = {
    "time": ("ts", "timestamp", "event_time", "datetime", "date_time", "created_at", "event_ts"),
    "session_id": ("sid", "session", "sessionid", "session_key"),
    "user_id": ("uid", "user", "userid", "visitor_id"),
    "query": ("q", "search_query", "search_term", "keyword", "keywords", "term", "text"),
    "product_id": ("pid", "id", "item_id", "listing_id", "product", "sku", "offer_id"),
    "position": ("pos", "rank", "slot"),
    "action": ("event", "event_type", "type", "interaction", "action_type"),
    "title": ("name", "product_title", "listing_title", "headline"),
    "image_paths": ("images", "image", "image_path", "image_urls", "photos", "pictures", "image_files"),
    "category_path": ("category", "categories", "category_name", "breadcrumb"),
}
"""Names an input often gives our columns: a missing column's error suggests one of them when it is there."""


class InputError(ValueError):
    """An input that cannot be read at all (as opposed to bad rows, which are quarantined): missing, without a
    needed column, compressed unreadably. Raised here and by jobs.io (which exports it too)."""


@dataclass(frozen=True)
class InputColumns:
    """One input's columns: ours, the ones a stage needs, and the input's own names for some of them."""

    what: str
    """"events" or "catalog", as the messages name the input."""
    key: str
    """The config key of the mapping, e.g. inputs.event_columns."""
    schema: T.StructType
    """Our columns and how they are read (text formats)."""
    required: tuple[str, ...]
    rename: Mapping[str, str]
    """The input's name -> ours."""

    def __post_init__(self) -> None:
        ours = [f.name for f in self.schema.fields]
        for theirs, name in self.rename.items():
            if name not in ours:
                raise ConfigError(self.key, f"'{theirs}' is mapped to '{name}', which is not one of our columns",
                                  f"map the input's names to ours ({', '.join(ours)}), e.g. "
                                  f"{theirs} = \"{_closest(name, ours)}\"")
        doubled = sorted({n for n in self.rename.values() if list(self.rename.values()).count(n) > 1})
        if doubled:
            raise ConfigError(self.key, f"more than one column is mapped to {', '.join(doubled)}",
                              "map one column of the input to each of ours")

    def theirs(self, ours: str) -> str:
        """The input's name of one of our columns."""
        return next((t for t, o in self.rename.items() if o == ours), ours)

    def reader_schema(self, header: list[str] | None = None) -> T.StructType:
        """The schema to read the input with, in the input's names: ours renamed, or, for a CSV file (whose
        columns Spark takes by position), one text column per `header` name, ours typed as ours."""
        if header is None:
            return T.StructType([T.StructField(self.theirs(f.name), f.dataType) for f in self.schema.fields])
        ours = {f.name: f.dataType for f in self.schema.fields}
        return T.StructType([T.StructField(name, ours.get(self.rename.get(name, name), T.StringType()))
                             for name in header])

    def apply(self, df: DataFrame) -> DataFrame:
        """`df` with the input's names replaced by ours (a column of the input already called by the name
        another is mapped to is dropped)."""
        mapped = {t: o for t, o in self.rename.items() if t in df.columns}
        df = df.drop(*[o for o in mapped.values() if o in df.columns and o not in mapped])
        return df.withColumnsRenamed(mapped)

    def check(self, found: list[str], where: str) -> None:
        """Raise InputError unless every mapped name is among `found` (the columns of the file `where`) and
        every required column is there once mapped; the message names what is missing, what was found and
        the config key that maps it."""
        absent = [t for t in self.rename if t not in found]
        if absent:
            raise InputError(
                f"{self.key} maps {', '.join(repr(t) for t in absent)}, but the {self.what} file {where} has no "
                f"such column. Columns found: {', '.join(found)}. Fix: use the file's own names, e.g. "
                f"{self.key} = {self._suggest(found, [self.rename[t] for t in absent])}")
        have = {self.rename.get(name, name) for name in found}
        missing = [name for name in self.required if name not in have]
        if missing:
            names = ", ".join(repr(m) for m in missing)
            column, it = ("column", "it") if len(missing) == 1 else ("columns", "them")
            raise InputError(
                f"the {self.what} file {where} has no {column} {names} (needed: {', '.join(self.required)}). "
                f"Columns found: {', '.join(found)}. If the {self.what} name {it} otherwise, map {it} in the "
                f"config ([inputs] table): {self.key} = {self._suggest(found, missing)}")

    def _suggest(self, found: list[str], missing: list[str]) -> str:
        """The mapping to set: the present one, the mapped names not found left out, plus a guess for each
        missing column among the found columns nothing is mapped to yet."""
        mapping = {t: o for t, o in self.rename.items() if t in found and o not in missing}
        ours = {f.name for f in self.schema.fields}
        free = [c for c in found if c not in mapping and c not in ours]
        for name in missing:
            guess = _guess(name, free)
            if guess:
                free.remove(guess)
            mapping[guess or "THEIR_NAME"] = name
        return "{" + ", ".join(f"{_toml_key(t)} = \"{o}\"" for t, o in mapping.items()) + "}"


def event_columns(rename: Mapping[str, str]) -> InputColumns:
    """The events' columns, `rename` (inputs.event_columns) mapping the input's names to ours."""
    return InputColumns("events", "inputs.event_columns", _without_corrupt(EVENT_SCHEMA), REQUIRED_EVENT_FIELDS,
                        dict(rename))


def catalog_columns(rename: Mapping[str, str]) -> InputColumns:
    """The catalog's columns, `rename` (inputs.catalog_columns) mapping the input's names to ours."""
    return InputColumns("catalog", "inputs.catalog_columns", _without_corrupt(LISTING_SCHEMA),
                        REQUIRED_LISTING_FIELDS, dict(rename))


def _without_corrupt(schema: T.StructType) -> T.StructType:
    ours = set(EVENT_FIELDS) | set(LISTING_FIELDS)
    return T.StructType([f for f in schema.fields if f.name in ours])


def preflight(inputs: InputsConfig) -> None:
    """Check the events and the catalog without Spark, in well under a second: a configured local path
    must exist and its sampled files must have the required columns once mapped. Paths on other file
    systems (hdfs://, s3a://) are checked once Spark runs (`io.list_input`, `io._load`)."""
    for spec, path, fmt, key in (
            (event_columns(inputs.event_columns), inputs.events, inputs.events_format, "inputs.events"),
            (catalog_columns(inputs.catalog_columns), inputs.catalog, inputs.catalog_format, "inputs.catalog")):
        if not path:
            raise InputError(f"no input configured for {key}: set it in the config")
        local = local_path(path)
        if local is None:
            continue
        if not os.path.exists(local):
            raise InputError(f"input not found: {path} (set {key} in the config)")
        for where, found in sample_local(local, fmt):
            spec.check(found, where)


def sample_local(path: str, fmt: str) -> list[tuple[str, list[str]]]:
    """(file, its columns) of the first and last data file under a local path; a file whose columns cannot
    be told this cheaply (compressed in a way its name hides, no line that parses) is left out."""
    sampled = []
    for file in _first_and_last(path):
        found = file_columns(file, fmt)
        if found:
            sampled.append((file, found))
    return sampled


def columns_of_lines(lines: Iterable[str], fmt: str) -> list[str]:
    """The columns a text file's first lines show: a CSV header's names, or every key of the JSON objects
    among the lines (in order of first appearance; lines that do not parse are skipped)."""
    if fmt == "csv":
        header = next(iter(lines), "")
        return [name.strip() for name in next(csv.reader([header]), [])] if header.strip() else []
    found: dict[str, None] = {}
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            found.update(dict.fromkeys(row))
    return list(found)


def file_columns(file: str, fmt: str) -> list[str]:
    """The columns of one local file (see `columns_of_lines`; a Parquet file's from its footer), or [] when
    they cannot be told cheaply."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return [name for name in pq.read_schema(file).names if not name.startswith("__")]
        except Exception:  # noqa: BLE001 - not a readable footer: Spark's reader names the problem
            return []
    opener = _opener(file)
    if opener is None:
        return []
    with opener(file, "rt", encoding="utf-8", errors="replace", newline="") as f:
        return columns_of_lines(_head(f), fmt)


def _head(f) -> Iterable[str]:
    read = 0
    for number, line in enumerate(f):
        if number >= SAMPLE_LINES or read > SAMPLE_BYTES:
            return
        read += len(line)
        yield line


def _opener(file: str):
    """How to read a text file the way Spark will (by its name), or None when its bytes say otherwise."""
    with open(file, "rb") as f:
        head = f.read(4)
    name = file.lower()
    if name.endswith(".gz"):
        return gzip.open if head.startswith(b"\x1f\x8b") else None
    if name.endswith(".bz2"):
        return bz2.open if head.startswith(b"BZh") else None
    if head.startswith((b"\x1f\x8b", b"BZh", b"\x28\xb5\x2f\xfd", b"\xfd7zX", b"PK\x03\x04")) or name.endswith(
            (".zst", ".zstd", ".xz", ".zip")):
        return None  # compressed: io.list_input names the problem, or Spark reads what Python cannot here
    return io.open


def _first_and_last(path: str) -> list[str]:
    if not os.path.isdir(path):
        return [path]
    files = []
    for folder, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        files += [os.path.join(folder, n) for n in sorted(names) if not n.startswith((".", "_"))]
    files.sort()
    return files[:1] + files[-1:] if len(files) > 1 else files


def local_path(path: str) -> str | None:
    """The local file-system path of a plain path or a file: URI, None for any other scheme."""
    if path.startswith("file:"):
        return "/" + path[len("file:"):].lstrip("/")
    return None if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path) else path


def _guess(ours: str, candidates: list[str]) -> str | None:
    lowered = {c.lower(): c for c in candidates}
    for name in _LIKELY.get(ours, ()):
        if name in lowered:
            return lowered[name]
    close = difflib.get_close_matches(ours, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def _closest(name: str, ours: list[str]) -> str:
    close = difflib.get_close_matches(name, ours, n=1, cutoff=0.0)
    return close[0] if close else ours[0]


def _toml_key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() and name.isascii() else json.dumps(name)
