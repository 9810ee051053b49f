"""Writes the whole demo marketplace under one folder and returns what it planted.

Layout under root:
    catalog/listings.jsonl                     listings (some bad rows among them)
    images/<shard>/<name>.jpg                  listing images (duplicates and broken files among them)
    events/date=YYYY-MM-DD/part-00000.jsonl    search events (bad rows, bots, expired sessions among them)
    truth/*.csv                                what was planted: categories, listing leaves, query forms,
                                               duplicate groups, bad event rows, bad catalog rows, bad images

The same config and run date give byte-identical files: every random choice comes from a named seeded
stream (randomness.py) and everything iterated is in a fixed order. This module only orchestrates and
writes; the parts are built by vocabulary, queries, catalog, image_plan/images, sessions and eventlog.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from pathlib import Path

from tagmill.config import DemoConfig
from tagmill.demo.catalog import BAD_CATALOG_KINDS, Catalog, build_catalog
from tagmill.demo.eventlog import BAD_EVENT_KINDS, EventFiles, build_event_files
from tagmill.demo.image_plan import BAD_IMAGE_KINDS, RELATIONS, ImagePlan, plan_images, render_images
from tagmill.demo.images import design_signatures
from tagmill.demo.queries import FORM_KINDS, build_query_forms
from tagmill.demo.sessions import SessionLog, simulate_sessions
from tagmill.demo.vocabulary import Leaf, build_leaves

PARTS = ("catalog", "images", "events", "truth", "dictionary")


def generate_market(root: Path, cfg: DemoConfig, run_date: dt.date, retention_days: int) -> dict:
    """Generate the demo market under `root` and return counts of what was written and planted.

    root: a folder that does not exist yet or has none of catalog/, images/, events/, truth/.
    cfg: sizes and shares (see DemoConfig); run_date: the last day with events; retention_days: events
    planted as expired are dated 1-60 days before run_date - retention_days (must be >= cfg.days).

    Returns a JSON-ready dict: leaves, domains, listings, catalog_lines, bad_catalog_rows (by kind),
    image_refs, image_files, bad_images (by kind), duplicate_groups, duplicate_images (by relation),
    sessions, expired_sessions, bot_sessions, users, events (lines), good_events, events_by_action,
    expired_events, bot_events, bad_event_rows (by kind), event_files, bytes.
    """
    root = Path(root)  # cfg was checked when it was built (a pydantic model)
    if retention_days < 1:
        raise ValueError(f"retention_days is {retention_days}; give a positive number of days")
    if cfg.days > retention_days:
        raise ValueError(f"demo.days is {cfg.days} but retention is {retention_days} days: the oldest demo "
                         "events would be expired. Set demo.days to at most the retention days")
    taken = [part for part in PARTS if (root / part).exists()]
    if taken:
        raise FileExistsError(f"{root} already has {', '.join(taken)}: the demo writes only into a fresh folder. "
                              "Delete them or choose another folder")
    leaves = build_leaves()
    forms = build_query_forms(leaves)
    catalog = build_catalog(leaves, cfg)
    plan = plan_images(catalog, len(leaves), cfg)
    images = render_images(plan, design_signatures(leaves, cfg.seed), cfg)
    log = simulate_sessions(leaves, catalog, forms, cfg, run_date, retention_days)
    events = build_event_files(log, catalog, cfg)

    written = _write(root / "catalog" / "listings.jsonl", b"".join(line + b"\n" for line in catalog.lines))
    for path in sorted(images):
        written += _write(root / "images" / path, images[path])
    for name, lines in events.files.items():
        written += _write(root / name, b"".join(line + b"\n" for line in lines))
    for name, header, rows in _truth_tables(leaves, forms, catalog, plan, events):
        written += _write(root / "truth" / name, _csv(header, rows))
    written += write_glossary(root, leaves)
    return _summary(leaves, catalog, plan, images, log, events, written)


GLOSSARY = "dictionary/zh_en.csv"
"""The marketplace's Chinese -> English glossary (taxonomy.zh_table), relative to the market folder."""


def write_glossary(root: Path, leaves: list[Leaf]) -> int:
    """Write ROOT/GLOSSARY: the Chinese and English names of nine leaves in ten (a real glossary is never
    complete, and the taxonomy must report the Chinese tags it cannot map rather than drop them). Returns
    the bytes written."""
    rows = [(leaf.name_zh, leaf.name_en) for leaf in leaves if leaf.index % 10 != 9]
    return _write(root / GLOSSARY, _csv(("zh", "en"), rows))


def _write(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def _csv(header: tuple[str, ...], rows: list[tuple]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _truth_tables(leaves: list[Leaf], forms, catalog: Catalog, plan: ImagePlan, events: EventFiles):
    """(file name, header, rows) of every truth CSV, rows in a fixed order."""
    leaf_id = {leaf.index: leaf.leaf_id for leaf in leaves}
    kind_order = {kind: i for i, kind in enumerate(FORM_KINDS)}
    query_rows = sorted((row for leaf in leaves for row in forms[leaf.leaf_id].rows()),
                        key=lambda r: (r[0], kind_order[r[2]], r[1]))
    relation_order = {relation: i for i, relation in enumerate(RELATIONS)}
    duplicates = sorted(((f.path, f.group, f.relation) for f in plan.files if f.relation),
                        key=lambda r: (r[1], relation_order[r[2]], r[0]))
    return [
        ("categories.csv", ("leaf_id", "domain", "group", "name_en", "name_zh", "synonyms", "path_en"),
         [(x.leaf_id, x.domain, x.group, x.name_en, x.name_zh, "|".join(x.synonyms), x.path_en) for x in leaves]),
        ("listings.csv", ("product_id", "leaf_id"),
         [(x.product_id, leaf_id[x.leaf_index]) for x in catalog.listings]),
        ("query_forms.csv", ("leaf_id", "form", "kind"), query_rows),
        ("duplicates.csv", ("image_path", "group_id", "relation"), duplicates),
        ("bad_event_rows.csv", ("file", "line", "kind"), sorted(events.bad_rows)),
        ("bad_catalog_rows.csv", ("line", "kind"), sorted(catalog.bad_lines)),
        ("bad_images.csv", ("image_path", "kind"), sorted((f.path, f.bad) for f in plan.files if f.bad)),
    ]


def _counts(values, kinds) -> dict[str, int]:
    counter = Counter(values)
    return {kind: counter.get(kind, 0) for kind in kinds}


def _summary(leaves, catalog: Catalog, plan: ImagePlan, images: dict, log: SessionLog, events: EventFiles,
             written: int) -> dict:
    kinds = Counter(e.kind for e in log.events)
    return {
        "leaves": len(leaves),
        "domains": len({leaf.domain for leaf in leaves}),
        "listings": len(catalog.listings),
        "catalog_lines": len(catalog.lines),
        "bad_catalog_rows": _counts((kind for _, kind in catalog.bad_lines), BAD_CATALOG_KINDS),
        "image_refs": plan.good_refs,
        "image_files": len(images),
        "bad_images": _counts((f.bad for f in plan.files if f.bad), BAD_IMAGE_KINDS),
        "duplicate_groups": len({f.group for f in plan.files if f.group}),
        "duplicate_images": _counts((f.relation for f in plan.files if f.relation), RELATIONS),
        "sessions": log.sessions,
        "expired_sessions": log.expired_sessions,
        "bot_sessions": log.bot_sessions,
        "users": log.users,
        "events": sum(len(lines) for lines in events.files.values()),
        "good_events": len(log.events),
        "events_by_action": events.actions,
        "expired_events": kinds.get("expired", 0),
        "bot_events": kinds.get("bot", 0),
        "bad_event_rows": _counts((kind for _, _, kind in events.bad_rows), BAD_EVENT_KINDS),
        "event_files": len(events.files),
        "bytes": written,
    }
