"""The shard writer without Spark: tar layout, rolling, quarantine reasons, identical bytes on a re-run."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest
from PIL import Image

from tagmill.dataset.shards import ImageOptions, encode_image, write_shards


def _jpeg(size=(40, 30), color=(200, 10, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG")
    return out.getvalue()


def _sample(i: int, path: str) -> dict:
    return {"image_key": f"{i:020x}", "image_path": path, "product_id": f"p{i}", "split": "train",
            "title": f"title {i}", "class_ids": [1, 4], "repeats": 1 + i % 3,
            "labels": [{"class_id": c, "name": f"c{c}", "confidence": 0.5, "source": "search_log",
                        "tier": "contact", "clicks": 3, "contacts": 2, "in_conversations": 0, "sessions": 4}
                       for c in (1, 4)]}


FILES = {"good.jpg": _jpeg(), "big.jpg": _jpeg((600, 300)), "empty.jpg": b"", "junk.jpg": b"not an image",
         "truncated.jpg": _jpeg((200, 200), (1, 2, 3))[:300]}


def _write(samples, max_samples=3, max_bytes=1 << 30, opts=ImageOptions(max_side=64, quality=85), cls_entries=True):
    files: dict[str, io.BytesIO] = {}

    class Keep(io.BytesIO):
        def close(self):
            files[self.name] = self.getvalue()

    def open_output(name):
        stream = Keep()
        stream.name = name
        return stream

    def read_image(path):
        if path not in FILES:
            raise FileNotFoundError(path)
        return FILES[path]

    results = list(write_shards(samples, "train-00000", open_output, read_image, opts, max_samples, max_bytes,
                                cls_entries))
    return results, files


def test_shards_follow_the_webdataset_layout_and_roll_by_count():
    samples = [_sample(i, "good.jpg" if i % 2 else "big.jpg") for i in range(7)]
    results, files = _write(samples)
    assert [r["shard"] for r in results] == ["train-00000-000.tar", "train-00000-001.tar", "train-00000-002.tar"]
    assert [r["samples"] for r in results] == [3, 3, 1]
    assert [r["repeats"] for r in results] == [1 + 2 + 3, 1 + 2 + 3, 1]
    for r in results:
        data = files[r["shard"]]
        assert r["bytes"] == len(data) and r["sha256"] == hashlib.sha256(data).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(files["train-00000-000.tar"])) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [f"{i:020x}.{ext}" for i in range(3) for ext in ("jpg", "json")]
        assert {(m.mtime, m.uid, m.gid, m.mode) for m in members} == {(0, 0, 0, 0o644)}
        meta = json.loads(tar.extractfile(members[1]).read())
        image = Image.open(io.BytesIO(tar.extractfile(members[0]).read()))
    assert meta == {"key": f"{0:020x}", "product_id": "p0", "split": "train", "class_ids": [1, 4], "title": "title 0",
                    "repeats": 1, "labels": [{"class_id": c, "name": f"c{c}", "confidence": 0.5, "source": "search_log",
                                              "tier": "contact", "clicks": 3, "contacts": 2, "in_conversations": 0,
                                              "sessions": 4, "teacher": None} for c in (1, 4)]}
    assert image.size == (64, 32)  # 600x300 shrunk to a longer side of 64


def test_shards_roll_by_bytes():
    samples = [_sample(i, "good.jpg") for i in range(4)]
    one = len(encode_image(FILES["good.jpg"], ImageOptions(max_side=64, quality=85)))
    per_sample = 512 + (one + 511) // 512 * 512 + 1024  # header + padded image, header + padded json
    results, _ = _write(samples, max_samples=100, max_bytes=2 * per_sample)
    assert [r["samples"] for r in results] == [2, 2]


def test_bad_images_are_quarantined_with_their_reason_and_nothing_is_lost():
    paths = ["good.jpg", "missing.jpg", "empty.jpg", "junk.jpg", "truncated.jpg", "good.jpg"]
    results, _ = _write([_sample(i, p) for i, p in enumerate(paths)], max_samples=10)
    quarantined = {r["image_path"]: r["reason"] for r in results if r["kind"] == "quarantine"}
    assert quarantined == {"missing.jpg": "missing_image", "empty.jpg": "empty_image",
                           "junk.jpg": "undecodable_image", "truncated.jpg": "truncated_image"}
    shards = [r for r in results if r["kind"] == "shard"]
    assert sum(r["samples"] for r in shards) + len(quarantined) == len(paths)


def test_each_shard_counts_the_samples_it_was_handed():
    # [good, missing, good] [good, junk, good]: each unusable image belongs to the shard open when it came
    paths = ["good.jpg", "missing.jpg", "good.jpg", "good.jpg", "junk.jpg", "good.jpg"]
    samples = [_sample(i, p) for i, p in enumerate(paths)]
    samples[2] = {**samples[2], "class_ids": [9], "labels": samples[2]["labels"][:1] + [
        {**samples[2]["labels"][0], "class_id": 9, "source": "teacher", "tier": None, "teacher": "t@1"}]}
    results, _ = _write(samples, max_samples=2)
    shards = [r for r in results if r["kind"] == "shard"]
    assert [(r["samples"], r["quarantined"], r["classes"], r["labels"]) for r in shards] == [
        (2, {"missing_image": 1}, 3, {"search_log": 3, "teacher": 1}),
        (2, {"undecodable_image": 1}, 2, {"search_log": 4})]
    assert all(isinstance(r["milliseconds"], int) and r["milliseconds"] >= 0 for r in shards)


def test_rewriting_gives_identical_bytes():
    samples = [_sample(i, "big.jpg") for i in range(5)]
    assert _write(samples)[1] == _write(samples)[1]


@pytest.mark.parametrize("max_side", [0, 64])
def test_original_jpeg_bytes_are_kept_only_when_asked(max_side):
    encoded = encode_image(FILES["good.jpg"], ImageOptions(max_side=max_side, quality=85))
    assert (encoded == FILES["good.jpg"]) == (max_side == 0)


def test_cls_members_follow_the_json_of_single_class_samples_only():
    samples = [_sample(i, "good.jpg") for i in range(4)]
    samples[1] = {**samples[1], "class_ids": [7], "labels": samples[1]["labels"][:1]}
    results, files = _write(samples, max_samples=10)
    with tarfile.open(fileobj=io.BytesIO(files[results[0]["shard"]])) as tar:
        names = [m.name for m in tar.getmembers()]
    assert names == [f"{i:020x}.{ext}" for i in range(4) for ext in (("jpg", "json", "cls") if i == 1
                                                                      else ("jpg", "json"))]
    with tarfile.open(fileobj=io.BytesIO(files[results[0]["shard"]])) as tar:
        assert tar.extractfile(f"{1:020x}.cls").read() == b"7"
    assert [m for m in _write(samples, max_samples=10, cls_entries=False)[1]] == list(files)  # same shard names
    assert not any(n.endswith(".cls") for n in _names(_write(samples, max_samples=10, cls_entries=False)[1]))


def _names(files: dict) -> list[str]:
    out = []
    for data in files.values():
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            out += [m.name for m in tar.getmembers()]
    return out
