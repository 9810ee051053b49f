"""The demo market generator: determinism, the category tree, and that every planted defect is where the
truth files say it is (and nowhere else)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from tagmill.config import DemoConfig
from tagmill.demo.catalog import listing_counts
from tagmill.demo.generate import generate_market
from tagmill.demo.images import NEAR_KINDS
from tagmill.demo.queries import build_query_forms, choose_query, misspellings_of
from tagmill.demo.vocabulary import build_leaves, pluralize

RUN_DATE = dt.date(2026, 11, 20)
RETENTION = 30
TINY = DemoConfig(listings=600, sessions=300, images_per_listing=(1, 2), image_size=32, days=3, stock_photo_groups=3,
                  bot_sessions=1)
ACTIONS = {"impression", "no_click", "click", "contact", "in_conversation"}


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("market")
    return root, generate_market(root, TINY, RUN_DATE, RETENTION)


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def event_lines(root: Path) -> list[tuple[str, int, bytes]]:
    out = []
    for path in sorted((root / "events").rglob("*.jsonl")):
        name = path.relative_to(root).as_posix()
        out += [(name, n, line) for n, line in enumerate(path.read_bytes().split(b"\n")[:-1], start=1)]
    return out


def good_events(root: Path) -> list[tuple[str, dict]]:
    """(file, event) of every line that is not a recorded bad row."""
    bad = {(r["file"], int(r["line"])) for r in read_csv(root / "truth" / "bad_event_rows.csv")}
    return [(name, json.loads(line)) for name, n, line in event_lines(root) if (name, n) not in bad]


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


# --- pure parts -------------------------------------------------------------------------------------

def test_pluralize_and_misspellings():
    assert [pluralize(w) for w in ("sofa", "dress", "battery", "toy", "mouse", "dining table", "box")] == \
        ["sofas", "dresses", "batteries", "toys", "mice", "dining tables", "boxes"]
    assert misspellings_of("sofa") == ["sfoa", "soaf"]
    assert misspellings_of("kettle") == ["ktetle", "ketlte", "kettel", "kttle", "ketle", "kette", "kettl"]


def test_listing_counts_long_tail_with_two_each():
    ranks = __import__("numpy").array([2, 0, 1, 3])
    assert listing_counts(4, 12, ranks).tolist() == [3, 4, 3, 2]
    assert listing_counts(4, 5, ranks).tolist() == [0, 3, 2, 0]  # too small for all leaves: the top two


def test_query_forms_each_belong_to_one_leaf_and_choice_stays_inside_them():
    leaves = build_leaves()
    forms = build_query_forms(leaves)
    owner: dict[str, str] = {}
    for leaf in leaves:
        for leaf_id, form, _kind in forms[leaf.leaf_id].rows():
            assert owner.setdefault(form, leaf_id) == leaf_id
    sofa = forms[next(x.leaf_id for x in leaves if x.name_en == "sofa")]
    assert {"Sofa!", "  SOFAS ", "used sofa", "sofas", "couch", "沙发", "sfoa"} <= {r[1] for r in sofa.rows()}
    rnd = random.Random(3)
    picks = [choose_query(sofa, rnd, 0.2, 0.05) for _ in range(4000)]
    assert {text for text, _ in picks} <= {r[1] for r in sofa.rows()}
    shares = Counter(kind for _, kind in picks)
    assert 0.17 < shares["chinese"] / 4000 < 0.23 and 0.03 < shares["misspelling"] / 4000 < 0.07


# --- the category tree ------------------------------------------------------------------------------

def test_category_tree(market):
    root, summary = market
    rows = read_csv(root / "truth" / "categories.csv")
    assert len({r["domain"] for r in rows}) >= 12 and len(rows) >= 150
    assert summary["leaves"] == len(rows) and summary["domains"] == len({r["domain"] for r in rows})
    terms = [t.casefold() for r in rows for t in [r["name_en"], r["name_zh"], *filter(None, r["synonyms"].split("|"))]]
    assert len(terms) == len(set(terms))
    for r in rows:
        parts = r["path_en"].split(" > ")
        assert parts[:2] == [r["domain"], r["group"]] and len(parts) == 3
        assert parts[2].casefold() == r["name_en"].casefold()
        assert any("\u4e00" <= ch <= "\u9fff" for ch in r["name_zh"])
        assert len(r["name_en"].split()) in (1, 2)
    by_name = {r["name_en"]: r for r in rows}
    assert set(by_name["sofa"]["synonyms"].split("|")) == {"couch", "lounge"}
    assert by_name["television"]["name_zh"] == "电视"


# --- determinism ------------------------------------------------------------------------------------

def test_same_config_gives_identical_files(market, tmp_path):
    root, summary = market
    again = generate_market(tmp_path / "again", TINY, RUN_DATE, RETENTION)
    assert again == summary
    assert digests(tmp_path / "again") == digests(root)
    other = generate_market(tmp_path / "other", TINY.model_copy(update={"seed": 8}), RUN_DATE, RETENTION)
    assert digests(tmp_path / "other") != digests(root) and other["listings"] == summary["listings"]


def test_refuses_a_used_folder(market):
    root, _ = market
    with pytest.raises(FileExistsError, match="catalog, images, events, truth"):
        generate_market(root, TINY, RUN_DATE, RETENTION)


# --- catalog ----------------------------------------------------------------------------------------

def test_bad_catalog_rows_are_exactly_the_recorded_lines(market):
    root, summary = market
    lines = (root / "catalog" / "listings.jsonl").read_bytes().split(b"\n")[:-1]
    bad = {int(r["line"]): r["kind"] for r in read_csv(root / "truth" / "bad_catalog_rows.csv")}
    assert set(bad.values()) == set(summary["bad_catalog_rows"]) and len(bad) == sum(summary["bad_catalog_rows"].values())
    seen: set[str] = set()
    for n, raw in enumerate(lines, start=1):
        kind = bad.get(n)
        row = _parsed_unless_broken(raw, kind)
        if row is None:
            continue
        defects = {
            "missing_field": "product_id" not in row,
            "no_images": row["image_paths"] == [],
            "duplicate_product": "product_id" in row and row["product_id"] in seen,
            "bad_image_path": any(p.startswith("/") or ".." in p.split("/") for p in row["image_paths"]),
            "oversized_field": len(row["title"]) >= 5000,
        }
        assert [k for k, v in defects.items() if v] == ([kind] if kind else []), (n, kind)
        seen.add(row.get("product_id", ""))


def test_good_listings_match_truth_and_their_images_exist(market):
    root, summary = market
    bad_lines = {int(r["line"]) for r in read_csv(root / "truth" / "bad_catalog_rows.csv")}
    lines = (root / "catalog" / "listings.jsonl").read_bytes().split(b"\n")[:-1]
    good = [json.loads(raw) for n, raw in enumerate(lines, start=1) if n not in bad_lines]
    truth = read_csv(root / "truth" / "listings.csv")
    assert [r["product_id"] for r in good] == [r["product_id"] for r in truth] and len(good) == TINY.listings
    bad_images = {r["image_path"]: r["kind"] for r in read_csv(root / "truth" / "bad_images.csv")}
    for row in good:
        assert TINY.images_per_listing[0] <= len(row["image_paths"]) <= TINY.images_per_listing[1]
        for path in row["image_paths"]:
            assert (root / "images" / path).is_file() != (bad_images.get(path) == "missing"), path
    with_path = sum("category_path" in row for row in good)
    assert 0.6 < with_path / len(good) < 0.8
    per_leaf = Counter(r["leaf_id"] for r in truth)
    assert min(per_leaf.values()) >= 2 and len(per_leaf) == summary["leaves"] and max(per_leaf.values()) >= 5 * min(per_leaf.values())


# --- images -----------------------------------------------------------------------------------------

def test_duplicates_share_or_differ_in_bytes(market):
    root, summary = market
    rows = read_csv(root / "truth" / "duplicates.csv")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group_id"], []).append(r)
    assert len(groups) == summary["duplicate_groups"] > 0
    relations = Counter(r["relation"] for r in rows)
    assert set(relations) <= {"original", "exact", *NEAR_KINDS}
    assert relations["exact"] > 0 and all(relations[k] > 0 for k in NEAR_KINDS)
    assert Counter(summary["duplicate_images"]) == relations
    for members in groups.values():
        originals = [m for m in members if m["relation"] == "original"]
        assert len(originals) == 1 and len(members) >= 2
        source = (root / "images" / originals[0]["image_path"]).read_bytes()
        for m in members:
            data = (root / "images" / m["image_path"]).read_bytes()
            if m["relation"] == "exact":
                assert data == source
            elif m["relation"] != "original":
                assert data != source
                Image.open(io.BytesIO(data)).load()


def test_bad_images_are_broken_and_the_rest_decode(market):
    root, summary = market
    bad = {r["image_path"]: r["kind"] for r in read_csv(root / "truth" / "bad_images.csv")}
    assert Counter(bad.values()) == Counter({k: v for k, v in summary["bad_images"].items() if v})
    assert set(bad.values()) == {"corrupt", "truncated", "empty", "missing"}
    for path, kind in bad.items():
        file = root / "images" / path
        if kind == "missing":
            assert not file.exists()
            continue
        if kind == "empty":
            assert file.stat().st_size == 0
        with pytest.raises(OSError), Image.open(file) as image:
            image.load()
    files = sorted(p for p in (root / "images").rglob("*.jpg") if p.relative_to(root / "images").as_posix() not in bad)
    assert len(files) + len(bad) - Counter(bad.values())["missing"] == summary["image_files"]
    for file in files:
        with Image.open(file) as image:
            image.load()
            assert image.format == "JPEG"


# --- events -----------------------------------------------------------------------------------------

def test_bad_event_rows_are_exactly_the_recorded_lines(market):
    root, summary = market
    catalog = {r["product_id"] for r in read_csv(root / "truth" / "listings.csv")}
    bad = {(r["file"], int(r["line"])): r["kind"] for r in read_csv(root / "truth" / "bad_event_rows.csv")}
    assert Counter(bad.values()) == Counter(summary["bad_event_rows"])
    end = dt.datetime.combine(RUN_DATE + dt.timedelta(days=1), dt.time(), dt.UTC)
    lines = event_lines(root)
    assert len(lines) == summary["events"]
    for name, n, raw in lines:
        kind = bad.get((name, n))
        row = _parsed_unless_broken(raw, kind)
        if row is None:
            continue
        try:
            time_ok = parse_time(row["time"]) < end if "time" in row else True
            time_parses = True
        except ValueError:
            time_ok, time_parses = True, False
        defects = {
            "missing_field": any(f not in row for f in ("time", "session_id", "query", "product_id")),
            "unknown_action": row["action"] not in ACTIONS,
            "bad_timestamp": not time_parses,
            "bad_position": not (isinstance(row["position"], int) and row["position"] >= 1),
            "oversized_field": len(row.get("query", "")) >= 5000,
            "unknown_product": "product_id" in row and row["product_id"] not in catalog,
            "future_event": not time_ok,
        }
        assert [k for k, v in defects.items() if v] == ([kind] if kind else []), (name, n, kind)


def test_good_events_have_consistent_tiers_and_known_queries(market):
    root, _ = market
    events = [e for _, e in good_events(root)]
    forms = {r["form"] for r in read_csv(root / "truth" / "query_forms.csv")}
    seen: set[tuple[str, str, str]] = set()
    last_time: dict[str, dt.datetime] = {}
    for e in sorted(events, key=lambda e: (e["session_id"], e["time"])):
        assert e["query"] in forms
        key = (e["session_id"], e["product_id"])
        if e["action"] == "contact":
            assert (*key, "click") in seen
        if e["action"] == "in_conversation":
            assert (*key, "contact") in seen
        seen.add((*key, e["action"]))
        if e["session_id"] in last_time:
            assert parse_time(e["time"]) > last_time[e["session_id"]]
        last_time[e["session_id"]] = parse_time(e["time"])


def test_sessions_bots_and_expired_events(market):
    root, summary = market
    located = good_events(root)
    events = [e for _, e in located]
    assert len(events) == summary["good_events"]
    sessions = Counter(e["session_id"] for e in events)
    bots = [s for s, n in sessions.items() if n >= 600]
    assert len(bots) == TINY.bot_sessions and len(sessions) == TINY.sessions + TINY.bot_sessions
    human = [n for s, n in sessions.items() if s not in bots]
    assert 9 <= sum(human) / len(human) <= 15
    cutoff = dt.datetime.combine(RUN_DATE - dt.timedelta(days=RETENTION), dt.time(), dt.UTC)
    first = (RUN_DATE - dt.timedelta(days=TINY.days - 1)).isoformat()
    old = [e for e in events if parse_time(e["time"]) < cutoff]
    assert len(old) == summary["expired_events"] > 0
    assert {e["session_id"] for e in old}.isdisjoint(e["session_id"] for e in events if parse_time(e["time"]) >= cutoff)
    dates = sorted(p.parent.name for p in (root / "events").rglob("*.jsonl"))
    assert dates == [f"date={RUN_DATE - dt.timedelta(days=d)}" for d in range(TINY.days - 1, -1, -1)]
    assert {name for name, e in located if parse_time(e["time"]) < cutoff} == {f"events/date={first}/part-00000.jsonl"}
    anonymous = sum("user_id" not in e for e in events if e["session_id"] not in bots)
    assert 0.04 < anonymous / sum(human) < 0.18


def _parsed_unless_broken(raw: bytes, kind: str | None) -> dict | None:
    """The line's JSON object; None (after checking the defect) for a planted undecodable or cut-off line."""
    if kind == "invalid_utf8":
        assert b"\xff\xfe" in raw
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        return None
    if kind == "malformed":
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw.decode("utf-8"))
        return None
    return json.loads(raw.decode("utf-8"))
