"""Publishing a dataset as a transaction: shards are written by the executors into a staging folder,
moved into place, and the dataset becomes visible only when `manifest.json` is written, last.

A reader trusts only the manifest; a run killed anywhere before it leaves no manifest, and the next run
starts the dataset over. Paths are local folders or any URI pyarrow's filesystems understand (hdfs://,
s3://, ...) so that executors on a cluster write straight to shared storage.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tagmill.config import SPLITS
from tagmill.dataset.card import dataset_card, wids_index
from tagmill.dataset.shards import ImageOptions, write_shards
from tagmill.labeling.images import read_bytes
from tagmill.manifest import (CARD, CLASS_INDEX, FORMAT, MANIFEST, SHARD_STATS_DIR, WIDS_INDEX, WORD_VECTORS,
                              DatasetManifest, ShardEntry, SplitTotals, WordVectorsEntry)

STAGING = "_staging"
_JSON_COLUMNS = ("labels", "quarantined")

_RESULT_FIELDS = (("kind", "string"), ("shard", "string"), ("split", "string"), ("samples", "bigint"),
                  ("repeats", "bigint"), ("bytes", "bigint"), ("sha256", "string"), ("image_key", "string"),
                  ("image_path", "string"), ("reason", "string"), ("detail", "string"), ("classes", "bigint"),
                  ("labels", "string"), ("quarantined", "string"), ("milliseconds", "bigint"))
RESULT_SCHEMA = ", ".join(f"{name} {kind}" for name, kind in _RESULT_FIELDS)
"""One row per written shard (kind "shard") or per sample whose image was unusable (kind "quarantine"). A
shard row's `labels` and `quarantined` are JSON objects (source -> labels, reason -> images; see
dataset.shards.write_shards)."""
_RESULT_ARROW = pa.schema([(name, pa.string() if kind == "string" else pa.int64()) for name, kind in _RESULT_FIELDS])


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a URI; a relative local path is made absolute."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    return pafs.FileSystem.from_uri(uri)


def plan_shards(samples: DataFrame, split_sizes: dict[str, int], max_samples: int, seed: int,
                partitions: int) -> DataFrame:
    """Give each sample its shard bucket and its place in it, and lay the buckets out for the writers.

    A bucket is a stable hash of the product and a product's images lie together in it, so they share a shard
    (fold teachers hold out whole shards, trainer.folds: no fold model trains on one photo of a product it
    tags another of), but where a bucket rolls over into a second shard. Neither depends on how Spark
    partitioned the input: the same samples give the same shards on any cluster.
    Each split gets ceil(size / max_samples) buckets; a bucket that comes out larger rolls into a second
    shard. Adds `bucket` and `order`; partitions hold whole buckets, sorted."""
    buckets = F.lit(1)
    for split in SPLITS:
        buckets = F.when(F.col("split") == split, F.lit(max(1, math.ceil(split_sizes.get(split, 0) / max_samples)))
                         ).otherwise(buckets)
    planned = samples.select(
        "*",
        F.pmod(F.xxhash64(F.lit(seed), F.lit("bucket"), "product_id"), buckets).cast("int").alias("bucket"),
        F.xxhash64(F.lit(seed), F.lit("order"), "product_id").alias("order"),
    )
    return planned.repartition(partitions, "split", "bucket").sortWithinPartitions(
        "split", "bucket", "order", "product_id", F.xxhash64(F.lit(seed), F.lit("order"), "image_key"), "image_key")


def shard_writer(staging: str, image_root: str, allowed_roots: tuple[str, ...], opts: ImageOptions,
                 max_samples: int, max_bytes: int, cls_entries: bool = False):
    """The function each executor runs over its sorted partition (for `mapInArrow`): writes the shards of
    every bucket it holds into `staging`/shards/ (with `<key>.cls` members when `cls_entries`, see
    dataset.shards.write_shards) and yields RESULT_SCHEMA record batches. Images are read
    like the image pass reads them (labeling.images.read_bytes: symlinks followed and checked to stay under
    `image_root` or `allowed_roots`), so a path it would refuse never reaches a shard."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        out_fs, out_dir = filesystem(staging)

        def read_image(path: str) -> bytes:
            return read_bytes(image_root, path, allowed_roots)

        def open_output(name: str):
            return out_fs.open_output_stream(f"{out_dir}/shards/{name}")

        rows = (row for batch in batches for row in batch.to_pylist())
        for (split, bucket), group in itertools.groupby(rows, key=lambda r: (r["split"], r["bucket"])):
            results = write_shards(group, f"{split}-{bucket:05d}", open_output, read_image, opts,
                                   max_samples, max_bytes, cls_entries)
            while chunk := list(itertools.islice(results, 256)):
                yield pa.RecordBatch.from_pylist(
                    [{**r, "split": split, "shard": f"shards/{r['shard']}" if "shard" in r else None,
                      **{c: json.dumps(r[c], sort_keys=True) for c in _JSON_COLUMNS if c in r}}
                     for r in chunk], schema=_RESULT_ARROW)

    return run


def start_publish(dataset: str) -> None:
    """Withdraw the dataset (remove its manifest) and give its staging folder a clean start."""
    fs, path = filesystem(dataset)
    _delete_file(fs, f"{path}/{MANIFEST}")
    _delete_dir(fs, f"{path}/{STAGING}")
    fs.create_dir(f"{path}/{STAGING}/shards", recursive=True)


def finish_publish(dataset: str, shards: list[dict], classes: list[dict], meta: dict,
                   word_vectors: dict[str, bytes] | None = None, cls_entries: bool = False) -> DatasetManifest:
    """Move the staged shards into place, write the class index, one stats file per shard (shard_stats), the
    dataset card (README.md) and one wids index per split with shards, then the manifest, last. Returns the
    manifest.

    `shards` are the "shard" result rows (their classes, labels and quarantined go to the stats files);
    `classes` the class index rows (class_id, name, path, taxonomy_id, support_<split>), written as
    {"id": class_id, "name", "path", "taxonomy_id", "support"}; `meta` adds dataset, tagmill_version,
    config_sha256 and image to the manifest; `word_vectors`: file name -> bytes of the build's word vectors
    (tagmill.word_vector_files), written to WORD_VECTORS/ and named in the manifest with their sha256, for
    the trainer's side information; `cls_entries`: the shards were written with
    `<key>.cls` members (the card then declares the `cls` feature)."""
    fs, path = filesystem(dataset)
    _delete_dir(fs, f"{path}/shards")
    fs.move(f"{path}/{STAGING}/shards", f"{path}/shards")
    _delete_dir(fs, f"{path}/{STAGING}")
    ordered = sorted(shards, key=lambda s: s["shard"])
    index = {"classes": [{"id": c["class_id"], "name": c["name"], "path": list(c["path"]),
                          "taxonomy_id": c["taxonomy_id"], "support": {s: c[f"support_{s}"] for s in SPLITS}}
                         for c in sorted(classes, key=lambda c: c["class_id"])]}
    _write_json(fs, f"{path}/{CLASS_INDEX}", index)
    _delete_dir(fs, f"{path}/{SHARD_STATS_DIR}")
    fs.create_dir(f"{path}/{SHARD_STATS_DIR}")
    for shard in ordered:
        _write_json(fs, f"{path}/{shard_stats_path(shard['shard'])}", shard_stats(shard))
    _delete_dir(fs, f"{path}/{WORD_VECTORS}")
    vectors = {}
    if word_vectors:
        fs.create_dir(f"{path}/{WORD_VECTORS}")
        for name, data in sorted(word_vectors.items()):
            with fs.open_output_stream(f"{path}/{WORD_VECTORS}/{name}") as f:
                f.write(data)
            vectors[name] = hashlib.sha256(data).hexdigest()
    splits = {s: {"samples": sum(x["samples"] for x in ordered if x["split"] == s),
                  "repeats": sum(x["repeats"] for x in ordered if x["split"] == s),
                  "shards": sum(1 for x in ordered if x["split"] == s),
                  "bytes": sum(x["bytes"] for x in ordered if x["split"] == s)} for s in SPLITS}
    with_shards = [s for s in SPLITS if splits[s]["shards"]]
    manifest = DatasetManifest(
        format=FORMAT, **meta, num_classes=len(classes), class_index=CLASS_INDEX,
        word_vectors=WordVectorsEntry(path=WORD_VECTORS, sha256=vectors) if vectors else None,
        splits={s: SplitTotals(**totals) for s, totals in splits.items()},
        shards=[ShardEntry(path=s["shard"], stats=shard_stats_path(s["shard"]),
                           **{k: s[k] for k in ("split", "samples", "repeats", "bytes", "sha256")})
                for s in ordered],
        card=CARD, wids_index={s: WIDS_INDEX.format(split=s) for s in with_shards}, cls_entries=cls_entries)
    for split in SPLITS:  # an index left by an earlier run of a split that has no shards now goes
        _delete_file(fs, f"{path}/{WIDS_INDEX.format(split=split)}")
    for split in with_shards:
        _write_json(fs, f"{path}/{WIDS_INDEX.format(split=split)}", wids_index(manifest, split))
    with fs.open_output_stream(f"{path}/{CARD}") as f:
        f.write(dataset_card(manifest, index["classes"]).encode("utf-8"))
    write_manifest(fs, path, manifest)
    return manifest


def shard_stats(shard: dict) -> dict:
    """A shard's stats file, after img2dataset's `<shard>_stats.json`: `count` samples handed to the shard,
    `successes` written, `quarantined` per reason (they add up), repeats, bytes, sha256, distinct `classes` and
    `labels` per source. No timings, so a re-run gives the same bytes (the stage's `written` table has them)."""
    quarantined = _json_object(shard.get("quarantined"))
    return {"shard": shard["shard"], "split": shard["split"], "count": shard["samples"] + sum(quarantined.values()),
            "successes": shard["samples"], "quarantined": quarantined, "repeats": shard["repeats"],
            "bytes": shard["bytes"], "sha256": shard["sha256"], "classes": shard.get("classes"),
            "labels": _json_object(shard.get("labels"))}


def shard_stats_path(shard: str) -> str:
    """stats/<split>-<bucket>-<seq>.json for shards/<split>-<bucket>-<seq>.tar."""
    return f"{SHARD_STATS_DIR}/{os.path.basename(shard).removesuffix('.tar')}.json"


def _json_object(value) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def write_manifest(fs: pafs.FileSystem, path: str, manifest: DatasetManifest) -> None:
    """The commit point: written to a temporary name and moved, so no reader sees half a manifest."""
    with fs.open_output_stream(f"{path}/{MANIFEST}.tmp") as f:
        f.write(manifest.to_json())
    fs.move(f"{path}/{MANIFEST}.tmp", f"{path}/{MANIFEST}")


def _write_json(fs: pafs.FileSystem, path: str, data: dict) -> None:
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n")


def _delete_file(fs: pafs.FileSystem, path: str) -> None:
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_file(path)


def _delete_dir(fs: pafs.FileSystem, path: str) -> None:
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)
