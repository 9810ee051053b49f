"""Inputs an adversarial user would try (issue 14's probes): symlinks out of the image root, image paths that
are directories, loops, empty or carry a NUL byte, with and without a teacher; event folders with hidden files,
files beside date= folders, a partition that is not a date, gzip under a plain name, JSON objects where text
belongs; and quarantine details that stay the same from run to run."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image
from pyspark.sql import functions as F

from tagmill.config import MiningConfig
from tagmill.dataset.publish import shard_writer
from tagmill.dataset.shards import ImageOptions
from tagmill.demo.titled import sample_record
from tagmill.jobs import io as jobs_io
from tagmill.labeling.events import check_events, check_listings
from tagmill.labeling.image_pass import hash_file
from tagmill.labeling.images import ImageProblem, open_image, read_bytes, resolve_path

RUN_DATE = dt.date(2026, 11, 20)


def _jpeg(path: Path, colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(out, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return out.getvalue()


@pytest.fixture
def planted(tmp_path):
    """An image root with one good image and every bad kind of path next to it, and a secret outside it."""
    root, outside = tmp_path / "images", tmp_path / "elsewhere"
    _jpeg(root / "good.jpg")
    secret = _jpeg(outside / "secret.jpg", (1, 2, 3))
    (root / "escape.jpg").symlink_to(outside / "secret.jpg")
    (root / "etc.jpg").symlink_to("/etc/passwd")
    (root / "linked").symlink_to(outside)  # a folder link: linked/secret.jpg leaves the root too
    (root / "inside.jpg").symlink_to(root / "good.jpg")  # a link that stays inside is fine
    (root / "a_folder.jpg").mkdir()
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    return root, outside, secret


BAD_PATHS = {"escape.jpg": "bad_image_path", "etc.jpg": "bad_image_path", "linked/secret.jpg": "bad_image_path",
             "": "bad_image_path", "nul\x00.jpg": "bad_image_path", "a_folder.jpg": "unreadable_image",
             "loop.jpg": "unreadable_image", "missing.jpg": "missing_image"}
"""Each bad kind of image path and the reason it is quarantined with."""


def test_symlinks_are_followed_and_must_stay_under_the_root(planted):
    root, outside, secret = planted
    for path in ("escape.jpg", "etc.jpg", "linked/secret.jpg"):
        with pytest.raises(ImageProblem) as err:
            read_bytes(str(root), path)
        assert err.value.reason == "bad_image_path" and "outside the image root" in err.value.detail, path
    assert read_bytes(str(root), "inside.jpg") == (root / "good.jpg").read_bytes()
    assert resolve_path(str(root), "inside.jpg") == os.path.realpath(root / "good.jpg")
    # a site whose image folders link to a storage mount names it as a further allowed root
    assert read_bytes(str(root), "escape.jpg", allowed=[str(outside)]) == secret
    assert read_bytes(str(root), "linked/secret.jpg", allowed=[str(outside)]) == secret
    with pytest.raises(ImageProblem):
        read_bytes(str(root), "etc.jpg", allowed=[str(outside)])


def test_every_bad_path_is_quarantined_by_the_image_pass_with_a_teacher(planted):
    root, _, _ = planted
    got = {path: hash_file(str(root), path)[2] for path in BAD_PATHS}
    assert got == BAD_PATHS
    assert hash_file(str(root), "good.jpg")[2] is None


def test_every_bad_path_is_quarantined_by_the_shard_writer_without_a_teacher(planted, tmp_path):
    root, _, _ = planted
    staging = tmp_path / "staging"
    (staging / "shards").mkdir(parents=True)
    paths = ["good.jpg", "inside.jpg", *BAD_PATHS]
    samples = [{**sample_record(f"k{i}", 0, "shoe", "train", f"p{i}", "shoe", image_path=path), "bucket": 0}
               for i, path in enumerate(paths)]
    run = shard_writer(str(staging), str(root), (), ImageOptions(max_side=16), 100, 1 << 20)
    rows = [r for batch in run(iter([pa.RecordBatch.from_pylist(samples)])) for r in batch.to_pylist()]
    quarantined = {r["image_path"]: r["reason"] for r in rows if r["kind"] == "quarantine"}
    assert quarantined == BAD_PATHS
    shards = [r for r in rows if r["kind"] == "shard"]
    assert [s["samples"] for s in shards] == [2]
    with tarfile.open(staging / shards[0]["shard"]) as tar:
        assert sorted(tar.getnames()) == ["k0.jpg", "k0.json", "k1.jpg", "k1.json"]
        published = tar.extractfile("k1.jpg").read()
    assert open_image(published).getpixel((12, 12))[0] > 150  # the good red picture, not the secret


def test_the_listing_check_refuses_empty_and_nul_paths(spark):
    rows = [("p1", "t", ["a.jpg"]), ("p2", "t", ["a.jpg", ""]), ("p3", "t", ["nul\x00.jpg"]), ("p4", "t", ["  "]),
            ("p5", "t", ["../x.jpg"])]
    df = spark.createDataFrame([(*r, i) for i, r in enumerate(rows)],
                               "product_id string, title string, image_paths array<string>, row_order long")
    got = {r.product_id: r.reason for r in check_listings(df, 100, 100).collect()}
    assert got == {"p1": None, "p2": "bad_image_path", "p3": "bad_image_path", "p4": "bad_image_path",
                   "p5": "bad_image_path"}


def test_quarantine_details_carry_no_memory_address():
    details = set()
    for data in (b"not an image", b"\x89PNG\r\n\x1a\n broken"):
        with pytest.raises(ImageProblem) as err:
            open_image(data)
        details.add(err.value.detail)
        assert " at 0x" not in err.value.detail and " at 0x" not in str(err.value)
    assert any("BytesIO object" in d for d in details)  # Pillow's words stay, without the address


# ---- events and catalog folders --------------------------------------------------------------------------

EVENT = {"time": "2026-11-20T10:00:00Z", "session_id": "s1", "query": "mouse", "product_id": "p1",
         "action": "click"}


def _lines(path: Path, *events: dict, compress: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(e) + "\n" for e in events).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)


def _by_file(df) -> dict[str, list]:
    rows = df.select(F.regexp_extract("source_file", r"events/(.*)$", 1).alias("f"), "reason").collect()
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r.f, []).append(r.reason)
    return {k: sorted(v, key=str) for k, v in out.items()}


def test_every_event_file_is_read_or_named(spark, tmp_path):
    events = tmp_path / "events"
    _lines(events / "date=2026-11-20" / "a.jsonl", EVENT, {**EVENT, "query": {"a": 1}}, {**EVENT, "query": [1, 2]})
    _lines(events / "date=2026-11-19" / "b.jsonl.gz", EVENT, compress=True)
    _lines(events / "date=garbage" / "c.jsonl", EVENT)
    _lines(events / "date=2026-11-21" / "later.jsonl", EVENT)  # after the run date: not this run's
    _lines(events / "beside.jsonl", EVENT, EVENT)
    _lines(events / "date=2026-11-20" / ".hidden.jsonl", EVENT)
    _lines(events / "date=2026-11-20" / "_underscore.jsonl", EVENT)
    _lines(events / "_temporary" / "x.jsonl", EVENT)
    (events / "_SUCCESS").write_bytes(b"")
    (events / "date=2026-11-20" / ".a.jsonl.crc").write_bytes(b"crc")

    read = jobs_io.read_events(spark, str(events), "jsonl", RUN_DATE)
    checked = check_events(read.rows, RUN_DATE, MiningConfig())
    assert _by_file(checked) == {
        "date=2026-11-20/a.jsonl": [None, "non_string_field", "non_string_field"],
        "date=2026-11-19/b.jsonl.gz": [None],
        "date=garbage/c.jsonl": ["bad_partition"],
        "beside.jsonl": [None, None],
    }
    skipped = sorted(p.split("/events/", 1)[1] for p in read.files.skipped)
    assert skipped == ["_temporary", "date=2026-11-20/.hidden.jsonl", "date=2026-11-20/_underscore.jsonl"]
    assert read.files.read == 5
    quarantined = checked.where(F.col("reason") == "non_string_field").select("query").collect()
    assert sorted(r.query for r in quarantined) == ['[1, 2]', '{"a": 1}']


def test_compressed_input_is_known_by_its_bytes(spark, tmp_path):
    events = tmp_path / "events"
    _lines(events / "date=2026-11-20" / "ok.jsonl", EVENT)
    _lines(events / "date=2026-11-20" / "zipped.jsonl", EVENT, compress=True)
    with pytest.raises(jobs_io.InputError) as err:
        jobs_io.read_events(spark, str(events), "jsonl", RUN_DATE)
    assert "zipped.jsonl is gzip-compressed" in str(err.value) and "rename it to end in .gz" in str(err.value)
    (events / "date=2026-11-20" / "zipped.jsonl").rename(events / "date=2026-11-20" / "zipped.jsonl.gz")
    (events / "date=2026-11-20" / "plain.jsonl.gz").write_text(json.dumps(EVENT))
    with pytest.raises(jobs_io.InputError) as err:
        jobs_io.read_events(spark, str(events), "jsonl", RUN_DATE)
    assert "plain.jsonl.gz ends in .gz but is not gzip data" in str(err.value)
    (events / "date=2026-11-20" / "plain.jsonl.gz").unlink()
    read = jobs_io.read_events(spark, str(events), "jsonl", RUN_DATE)
    assert read.rows.count() == 2 and read.files.read == 2


def test_a_catalog_file_in_a_hidden_name_is_reported(spark, tmp_path):
    catalog = tmp_path / "catalog"
    _lines(catalog / "listings.jsonl", {"product_id": "p1", "title": "t", "image_paths": ["a.jpg"]})
    _lines(catalog / ".backup.jsonl", {"product_id": "p2", "title": "t", "image_paths": ["b.jpg"]})
    read = jobs_io.read_listings(spark, str(catalog), "jsonl")
    assert [r.product_id for r in read.rows.collect()] == ["p1"]
    assert [Path(p).name for p in read.files.skipped] == [".backup.jsonl"]
    assert read.files.summary() == {"read": 1, "skipped": list(read.files.skipped)}
