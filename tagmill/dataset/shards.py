"""Shard writing: samples -> WebDataset tars (`<key>.jpg` + `<key>.json`, and `<key>.cls` when asked),
byte-identical on a re-run.

The writer only rolls shards by sample count and bytes and reports each finished shard (the
webdataset ShardWriter habit); where shards go, and when they become visible, is the publisher's job.
A sample whose image is missing, empty, truncated, too large or undecodable never stops the run: it comes
back as a quarantine row with its reason (one of `IMAGE_REASONS`, shared with labeling.images).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image

from tagmill.labeling.images import DEFAULT_MAX_PIXELS, IMAGE_REASONS, ImageProblem, open_image

__all__ = ["IMAGE_REASONS", "LABEL_FIELDS", "ImageOptions", "ImageProblem", "class_entry", "encode_image",
           "sample_json", "write_shards"]

_JPEG_MAGIC = b"\xff\xd8\xff"

LABEL_FIELDS = (("class_id", "int"), ("name", "string"), ("confidence", "double"), ("source", "string"),
                ("tier", "string"), ("clicks", "long"), ("contacts", "long"), ("in_conversations", "long"),
                ("sessions", "long"), ("teacher", "string"))
"""One label, in the shard JSON's `labels` exactly as in the samples table's `labels` structs (assemble):
these fields, in this order, with these Spark types; a field the label's source lacks is null (`tier` and
`teacher` are never both set)."""


@dataclass(frozen=True)
class ImageOptions:
    max_side: int = 256
    """Longer side after re-encoding; 0 keeps JPEG bytes as they are (other formats are re-encoded)."""
    quality: int = 90
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Images whose header declares more pixels are quarantined as "image_too_large" before decoding."""


def encode_image(data: bytes, opts: ImageOptions) -> bytes:
    """The JPEG bytes a shard stores for one image file's bytes; raises ImageProblem when unusable.

    Every image is fully decoded once here (labeling.images.open_image: RGB, EXIF orientation applied,
    transparency on white), so a truncated file is caught now and not in a training run. With
    `max_side == 0` a JPEG that decodes keeps its original bytes."""
    rgb = open_image(data, opts.max_pixels)
    if opts.max_side == 0 and data.startswith(_JPEG_MAGIC):
        return data
    if opts.max_side and max(rgb.size) > opts.max_side:
        scale = opts.max_side / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=opts.quality, optimize=False, progressive=False)
    return out.getvalue()


def sample_json(sample: dict) -> bytes:
    """The `<key>.json` member: labels and metadata of one sample (keys sorted, so bytes are stable).

    `labels`: one object per label with every LABEL_FIELDS key, as the samples table holds it (a search-log
    label has its tier and evidence counts and a null teacher; a teacher tag its `teacher` (id@version) and a
    null tier). `title_ids`, when the build made word vectors: the title's token ids (1 = unknown word; no
    padding), so the trainer needs no tokenizer."""
    labels = [{name: _label_value(x.get(name), kind) for name, kind in LABEL_FIELDS} for x in sample["labels"]]
    meta = {"key": sample["image_key"], "product_id": sample["product_id"], "split": sample["split"],
            "class_ids": [int(c) for c in sample["class_ids"]], "labels": labels,
            "title": sample["title"], "repeats": int(sample["repeats"])}
    if sample.get("title_ids") is not None:  # ids into the dataset's word_vectors/ (SICoT side information)
        meta["title_ids"] = [int(t) for t in sample["title_ids"]]
    return json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _label_value(value, kind: str):
    if value is None:
        return None
    return int(value) if kind in ("int", "long") else float(value) if kind == "double" else str(value)


def class_entry(sample: dict) -> bytes | None:
    """The `<key>.cls` member (WebDataset's convention: the class id as ASCII digits) of a sample with exactly
    one class id, its dense `class_id`; None for a sample with none or several (multi-label: read
    `class_ids` in the JSON)."""
    ids = sample["class_ids"]
    return str(int(ids[0])).encode("ascii") if len(ids) == 1 else None


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _HashingWriter(io.RawIOBase):
    """Counts and hashes the bytes on their way to the real output, so a shard is read once, not twice."""

    def __init__(self, out: BinaryIO):
        self.out, self.sha256, self.bytes = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.out.write(data)
        self.sha256.update(data)
        self.bytes += len(data)
        return len(data)


def write_shards(samples: Iterable[dict], prefix: str, open_output: Callable[[str], BinaryIO],
                 read_image: Callable[[str], bytes], opts: ImageOptions,
                 max_samples: int, max_bytes: int, cls_entries: bool = False) -> Iterator[dict]:
    """Write samples, in the order given, into shards `<prefix>-000.tar`, `<prefix>-001.tar`, ...

    Each sample is a dict with the assemble columns (image_key, image_path, ...). `read_image(path)` returns
    the file's bytes (FileNotFoundError for a missing file); `open_output(name)` a writable binary stream.
    A shard rolls over before a sample that would take it past `max_samples` samples or `max_bytes` bytes
    (a single larger sample still gets a shard of its own). Each sample is `<key>.jpg` then `<key>.json`;
    with `cls_entries`, a single-class sample adds `<key>.cls` (class_entry) after them.

    Yields one dict per finished shard {"kind": "shard", "shard", "samples", "repeats", "bytes", "sha256",
    "classes", "labels", "quarantined", "milliseconds"} and one per unusable image {"kind": "quarantine",
    "image_key", "image_path", "reason", "detail"}. A shard's `classes` counts its distinct class ids, `labels`
    its labels per source, `quarantined` the unusable images per reason met since the previous shard closed (so
    a shard's samples plus its quarantined are the samples it was handed, img2dataset's per-shard count), and
    `milliseconds` the time from its first sample to its close. Samples none of which is usable make no shard,
    only their quarantine rows.
    """
    seq, tar, sink, stream, count, repeats, size_so_far, name = 0, None, None, None, 0, 0, 0, ""
    classes, sources, quarantined, started = set(), Counter(), Counter(), 0.0

    def close():
        tar.close()
        stream.close()
        row = {"kind": "shard", "shard": name, "samples": count, "repeats": repeats, "bytes": sink.bytes,
               "sha256": sink.sha256.hexdigest(), "classes": len(classes), "labels": dict(sorted(sources.items())),
               "quarantined": dict(sorted(quarantined.items())),
               "milliseconds": round((time.perf_counter() - started) * 1000)}
        classes.clear()
        sources.clear()
        quarantined.clear()
        return row

    for sample in samples:
        try:
            jpg = encode_image(read_image(sample["image_path"]), opts)
        except FileNotFoundError as err:
            quarantined["missing_image"] += 1
            yield _quarantined(sample, "missing_image", str(err))
            continue
        except ImageProblem as err:
            quarantined[err.reason] += 1
            yield _quarantined(sample, err.reason, str(err))
            continue
        meta = sample_json(sample)
        cls = class_entry(sample) if cls_entries else None
        size = _tar_size(len(jpg)) + _tar_size(len(meta)) + (_tar_size(len(cls)) if cls is not None else 0)
        if tar is not None and (count >= max_samples or size_so_far + size > max_bytes):
            yield close()
            seq, tar = seq + 1, None
        if tar is None:
            name = f"{prefix}-{seq:03d}.tar"
            stream = open_output(name)
            sink = _HashingWriter(stream)
            tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.USTAR_FORMAT)
            count = repeats = size_so_far = 0
            started = time.perf_counter()
        key = sample["image_key"]
        tar.addfile(_member(f"{key}.jpg", len(jpg)), io.BytesIO(jpg))
        tar.addfile(_member(f"{key}.json", len(meta)), io.BytesIO(meta))
        if cls is not None:
            tar.addfile(_member(f"{key}.cls", len(cls)), io.BytesIO(cls))
        count += 1
        repeats += int(sample["repeats"])
        classes.update(int(c) for c in sample["class_ids"])
        sources.update(str(x.get("source")) for x in sample["labels"])
        size_so_far += size
    if tar is not None:
        yield close()


def _tar_size(n: int) -> int:
    """Bytes a member of n bytes takes in a tar: a 512-byte header plus the data padded to 512."""
    return 512 + (n + 511) // 512 * 512


def _quarantined(sample: dict, reason: str, detail: str) -> dict:
    return {"kind": "quarantine", "image_key": sample["image_key"], "image_path": sample["image_path"],
            "reason": reason, "detail": detail[:300]}
