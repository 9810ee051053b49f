"""The search log as files: JSON lines per date partition, with bad rows planted among the good ones.

Each bad row is an extra line copied from a good impression with exactly one defect, written right after
its source line, so the clean events stay complete and tier-consistent and the truth can name the file
and 1-based line of every defect. Good lines are ordered by time within a file.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass

from tagmill.config import DemoConfig
from tagmill.demo.catalog import INVALID_UTF8, Catalog, bad_row_kinds, oversized_text
from tagmill.demo.randomness import py_stream, stream
from tagmill.demo.sessions import DAY, Event, SessionLog, epoch

BAD_EVENT_KINDS = ("malformed", "missing_field", "unknown_action", "bad_timestamp", "bad_position",
                   "invalid_utf8", "oversized_field", "unknown_product", "future_event")
REQUIRED_FIELDS = ("time", "session_id", "query", "product_id")
_SENTINEL = "\ue000"


@dataclass(frozen=True)
class EventFiles:
    files: dict[str, list[bytes]]
    """Path relative to the market root -> lines without newlines, in file order."""
    bad_rows: list[tuple[str, int, str]]
    """(file, 1-based line, kind) of every planted bad row."""
    actions: dict[str, int]
    """Good events per action spelling."""


def event_time(t: int) -> str:
    """ISO 8601 UTC with a Z, e.g. "2026-11-20T13:45:12Z"."""
    day, second = divmod(t, DAY)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return f"{_day(day)}T{hour:02d}:{minute:02d}:{second:02d}Z"


@functools.lru_cache(maxsize=None)
def _day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * DAY))


def event_record(event: Event) -> dict:
    """The JSON object of an event; user_id is left out for anonymous sessions."""
    record = {"time": event_time(event.time), "session_id": event.session_id}
    if event.user_id is not None:
        record["user_id"] = event.user_id
    record.update(query=event.query, product_id=event.product_id, position=event.position, action=event.action)
    return record


def encode(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def good_line(event: Event, quoted: dict[str, str]) -> bytes:
    """Same bytes as encode(event_record(event)), several times faster: the log has ~350k good lines.

    `quoted` caches the JSON string of each query text (queries repeat across sessions); ids and
    actions are plain ASCII made by the generator and need no escaping.
    """
    query = quoted.get(event.query)
    if query is None:
        query = quoted[event.query] = json.dumps(event.query, ensure_ascii=False)
    user = "" if event.user_id is None else f'"user_id":"{event.user_id}",'
    return (f'{{"time":"{event_time(event.time)}","session_id":"{event.session_id}",{user}"query":{query},'
            f'"product_id":"{event.product_id}","position":{event.position},"action":"{event.action}"}}'
            ).encode("utf-8")


def bad_line(source: Event, kind: str, number: int, catalog: Catalog, run_end: int, rnd: random.Random) -> bytes:
    """A copy of `source` with the one defect `kind` names."""
    record = event_record(source)
    if kind == "missing_field":
        del record[rnd.choice(REQUIRED_FIELDS)]
    elif kind == "unknown_action":
        record["action"] = "share"
    elif kind == "bad_timestamp":
        record["time"] = rnd.choice(("yesterday", "2026-13-45T99:00:00Z"))
    elif kind == "bad_position":
        record["position"] = rnd.choice(("first", -3))
    elif kind == "invalid_utf8":
        cut = rnd.randint(1, max(1, len(source.query) - 1))
        record["query"] = source.query[:cut] + _SENTINEL + source.query[cut:]
    elif kind == "oversized_field":
        record["query"] = oversized_text(source.query.strip() or "query", rnd)
    elif kind == "unknown_product":
        record["product_id"] = catalog.unknown_product_id(number)
    elif kind == "future_event":
        record["time"] = event_time(run_end + rnd.randint(3600, 3 * DAY))
    elif kind != "malformed":
        raise ValueError(f"unknown bad event kind '{kind}'")
    if kind == "malformed":
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        return text[: int(len(text) * rnd.uniform(0.35, 0.75))].encode("utf-8")
    return encode(record).replace(_SENTINEL.encode("utf-8"), INVALID_UTF8)


def build_event_files(log: SessionLog, catalog: Catalog, cfg: DemoConfig) -> EventFiles:
    """Partition files with good events in time order and `bad_row_share` of lines planted as bad rows."""
    rng, rnd = stream(cfg.seed, "bad-events"), py_stream(cfg.seed, "bad-events")
    kinds = bad_row_kinds(len(log.events), cfg.bad_row_share, BAD_EVENT_KINDS, rng)
    sources = [i for i, e in enumerate(log.events) if e.kind == "normal" and e.action == "impression"]
    picked = rng.choice(len(sources), len(kinds), replace=len(kinds) > len(sources)) if kinds else []
    run_end = epoch(log.first_date) + cfg.days * DAY  # end of the run date, exclusive
    planted: dict[int, list[tuple[str, bytes]]] = {}
    for number, (kind, pick) in enumerate(zip(kinds, picked)):
        index = sources[int(pick)]
        line = bad_line(log.events[index], kind, number, catalog, run_end, rnd)
        planted.setdefault(index, []).append((kind, line))

    by_partition: dict[str, list[int]] = {}
    for i, event in enumerate(log.events):
        by_partition.setdefault(event.partition, []).append(i)
    files, bad_rows, quoted = {}, [], {}
    for partition in sorted(by_partition):
        name = f"events/date={partition}/part-00000.jsonl"
        indices = sorted(by_partition[partition], key=lambda i: log.events[i][:3])
        lines: list[bytes] = []
        for i in indices:
            lines.append(good_line(log.events[i], quoted))
            for kind, line in planted.get(i, ()):
                lines.append(line)
                bad_rows.append((name, len(lines), kind))
        files[name] = lines
    actions = Counter(e.action for e in log.events)
    return EventFiles(files, bad_rows, dict(sorted(actions.items())))
