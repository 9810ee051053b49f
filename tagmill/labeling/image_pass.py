"""The image pass: one read per image, one decode and one teacher forward per unique content.

Every listing image is read once for its content hash (sha256). Each distinct content is then decoded once
and forwarded through the teacher once (58.com's Open Images pseudo-labels), which yields its tags, the
penultimate-layer embedding and, for the dedup verifier, a small thumbnail; images with equal bytes share
that result. The embeddings then get compact binary codes (MSURU 3.2: the compressed embedding).

These are Spark adapters (`mapInArrow`) around per-batch functions that need no Spark. The teacher is
loaded once per Python worker process and reused by every task that worker runs (Spark reuses its Python
workers), and torch gets as many threads as the task has cores (`spark.task.cpus`): N tasks in parallel
fill N cores without oversubscribing them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import torch
from pyspark import TaskContext
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tagmill.config import ImagePassConfig
from tagmill.labeling.codes import Projection, encode
from tagmill.labeling.images import ImageProblem, content_hash, open_image, read_bytes
from tagmill.labeling.layout import layout_descriptor
from tagmill.labeling.calibration import FLOOR
from tagmill.labeling.teacher import FoldTeachers, Teacher, bf16_supported, load_teacher, read_thresholds, select_tags
from tagmill.labeling.verification import thumbnail
from tagmill.trainer.transforms import eval_view

log = logging.getLogger("tagmill.image-pass")

HASH_SCHEMA = pa.schema([("image_key", pa.string()), ("image_path", pa.string()), ("content_hash", pa.string()),
                         ("bytes", pa.int64()), ("reason", pa.string()), ("detail", pa.string())])
FORWARD_SCHEMA = pa.schema([
    ("content_hash", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("tag_ids", pa.list_(pa.int32())), ("tag_scores", pa.list_(pa.float32())),
    ("embedding", pa.list_(pa.float32())), ("layout", pa.list_(pa.float32())), ("thumbnail", pa.binary()),
    ("reason", pa.string()), ("detail", pa.string())])


def spark_schema(schema: pa.Schema) -> str:
    """The DDL string Spark wants for a mapInArrow result of this Arrow schema."""
    kinds = {pa.string(): "string", pa.int64(): "bigint", pa.int32(): "int", pa.float32(): "float",
             pa.binary(): "binary", pa.bool_(): "boolean"}

    def ddl(kind):
        return f"array<{ddl(kind.value_type)}>" if pa.types.is_list(kind) else kinds[kind]
    return ", ".join(f"{f.name} {ddl(f.type)}" for f in schema)


# ---- read and hash -------------------------------------------------------------------------------------

def hash_file(root: str, path: str,
              allowed: tuple[str, ...] = ()) -> tuple[str | None, int, str | None, str | None]:
    """(content hash, size in bytes, reason, detail) of one image file; reason is None when it was read.
    `allowed`: further roots a symlinked image may resolve into (labeling.images.resolve_path)."""
    try:
        data = read_bytes(root, path, allowed)
    except ImageProblem as err:
        return None, 0, err.reason, str(err)
    if not data:
        return None, 0, "empty_image", f"{path}: the file has 0 bytes"
    return content_hash(data), len(data), None, None


def hash_images(images: DataFrame, root: str, allowed: tuple[str, ...] = ()) -> DataFrame:
    """images: image_key, image_path -> image_key, image_path, content_hash, bytes, reason, detail.

    `reason` (one of labeling.images.IMAGE_REASONS) is null for a file that was read; such a file still
    has to decode in the forward pass."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            keys, paths = batch.column("image_key").to_pylist(), batch.column("image_path").to_pylist()
            hashed = [hash_file(root, path, allowed) for path in paths]
            yield pa.RecordBatch.from_arrays(
                [pa.array(keys, pa.string()), pa.array(paths, pa.string()),
                 *(pa.array([h[i] for h in hashed], kind) for i, kind in
                   enumerate((pa.string(), pa.int64(), pa.string(), pa.string())))], schema=HASH_SCHEMA)

    return images.select("image_key", "image_path").mapInArrow(run, spark_schema(HASH_SCHEMA))


# ---- decode and forward --------------------------------------------------------------------------------

_WORKER_TEACHERS: dict[tuple, tuple[Teacher | FoldTeachers | None, np.ndarray | None]] = {}


def worker_teacher(cfg: ImagePassConfig) -> tuple[Teacher | FoldTeachers | None, np.ndarray | None]:
    """(teacher, per-label thresholds), loaded once per process for a given config; (None, None) without one."""
    key = (cfg.teacher, cfg.vocabulary, cfg.teacher_id, cfg.image_size, cfg.prototypes, cfg.thresholds_file,
           cfg.threshold, cfg.target_precision)
    if not cfg.teacher:
        return None, None
    if key not in _WORKER_TEACHERS:
        teacher = load_teacher(cfg.teacher, cfg.vocabulary, cfg.teacher_id, cfg.image_size, cfg.prototypes)
        if cfg.target_precision:  # every score the calibration may want; the job applies each class's threshold
            thresholds = np.full(len(teacher.labels), FLOOR, np.float32)
        elif cfg.thresholds_file:
            thresholds = read_thresholds(cfg.thresholds_file, teacher.labels, cfg.threshold)
        else:
            thresholds = np.full(len(teacher.labels), cfg.threshold, np.float32)
        _WORKER_TEACHERS[key] = teacher, thresholds
    return _WORKER_TEACHERS[key]


def fit_threads() -> int:
    """Give torch the cores of the running Spark task (all of the machine's outside Spark)."""
    context = TaskContext.get()
    cores = context.cpus() if context is not None else len(os.sched_getaffinity(0))
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)
    return cores


def forward_batch(items: list[tuple[str, str]] | list[tuple[str, str, int]], root: str,
                  teacher: Teacher | FoldTeachers | None, thresholds: np.ndarray | None, cfg: ImagePassConfig,
                  allowed: tuple[str, ...] = ()) -> pa.RecordBatch:
    """FORWARD_SCHEMA rows for (content hash, image path[, seen_by]) items: each image decoded once, the
    decodable ones forwarded together; a file that cannot be decoded gets its reason instead of a result.
    Without a teacher the tags and the embedding stay null (size, layout and thumbnail need none). seen_by:
    bit f set where fold model f trained on an image of this content (FoldTeachers.forward skips it there)."""
    n = len(items)
    width, height = [None] * n, [None] * n
    reason: list[str | None] = [None] * n
    detail: list[str | None] = [None] * n
    thumbs: list[bytes | None] = [None] * n
    layouts: list[np.ndarray | None] = [None] * n
    views, done = [], []
    for i, (_, path, *_) in enumerate(items):
        try:
            image = open_image(read_bytes(root, path, allowed), cfg.max_pixels)
        except ImageProblem as err:
            reason[i], detail[i] = err.reason, f"{path}: {err}"
            continue
        width[i], height[i] = image.size
        thumbs[i] = thumbnail(image, cfg.thumbnail_size)
        layouts[i] = layout_descriptor(image)
        if teacher is not None:
            views.append(eval_view(image, teacher.image_size, teacher.mean, teacher.std))
            done.append(i)
    tag_ids: list[list[int] | None] = [None] * n
    tag_scores: list[list[float] | None] = [None] * n
    embeddings: list[np.ndarray | None] = [None] * n
    if done:
        batch = torch.from_numpy(np.stack(views))
        if isinstance(teacher, FoldTeachers) and len(items[0]) > 2:
            bits = np.array([items[i][2] for i in done], np.int64)
            seen = (bits[:, None] >> np.arange(len(teacher.folds))) & 1 == 1
            scores, embedding = teacher.forward(batch, bf16=cfg.bf16, seen=seen)
        else:
            scores, embedding = teacher.forward(batch, bf16=cfg.bf16)
        for i, tags in zip(done, select_tags(scores, thresholds, cfg.top_k * len(teacher.folds))):
            tag_ids[i] = [t for t, _ in tags]
            tag_scores[i] = [s for _, s in tags]
        for i, row in zip(done, embedding):
            embeddings[i] = row
    return pa.RecordBatch.from_arrays([
        pa.array([item[0] for item in items], pa.string()), pa.array(width, pa.int32()), pa.array(height, pa.int32()),
        pa.array(tag_ids, pa.list_(pa.int32())), pa.array(tag_scores, pa.list_(pa.float32())),
        float_lists(embeddings), float_lists(layouts), pa.array(thumbs, pa.binary()), pa.array(reason, pa.string()),
        pa.array(detail, pa.string())], schema=FORWARD_SCHEMA)


def float_lists(rows: list[np.ndarray | None]) -> pa.Array:
    """list<float32> from numpy rows (None for a null), without a Python float per value."""
    present = [r for r in rows if r is not None]
    lengths = np.array([0 if r is None else len(r) for r in rows], np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    values = pa.array(np.concatenate(present).astype(np.float32) if present else np.zeros(0, np.float32))
    mask = pa.array([r is None for r in rows], pa.bool_())
    return pa.ListArray.from_arrays(offsets, values, mask=mask)


def forward_images(unique: DataFrame, root: str, cfg: ImagePassConfig,
                   allowed: tuple[str, ...] = ()) -> DataFrame:
    """unique: content_hash, image_path (one path per distinct content), optionally seen_by (forward_batch)
    -> FORWARD_SCHEMA rows.

    Batches follow the order of each partition, so sort the input within partitions for reproducible
    batches (a model's float results can depend on the batch it ran in)."""

    columns = ["content_hash", "image_path"] + (["seen_by"] if "seen_by" in unique.columns else [])

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fit_threads()
        teacher, thresholds = worker_teacher(cfg)
        pending: list[tuple[str, str]] = []
        for batch in batches:
            pending += zip(*(batch.column(c).to_pylist() for c in columns))
            while len(pending) >= cfg.batch_size:
                yield forward_batch(pending[: cfg.batch_size], root, teacher, thresholds, cfg, allowed)
                pending = pending[cfg.batch_size:]
        if pending:
            yield forward_batch(pending, root, teacher, thresholds, cfg, allowed)

    return unique.select(*columns).mapInArrow(run, spark_schema(FORWARD_SCHEMA))


def check_teacher(cfg: ImagePassConfig) -> Teacher | FoldTeachers | None:
    """Load the teacher on the driver before any Spark work, so a bad file fails fast with its message;
    warns when bf16 is asked for on a CPU without native bf16. None when no teacher is configured."""
    teacher, _ = worker_teacher(cfg)
    if teacher is not None and cfg.bf16 and not bf16_supported():
        log.warning("image_pass.bf16 is set but this CPU has no native bf16: autocast will emulate it slowly")
    return teacher


# ---- compact codes -------------------------------------------------------------------------------------

def embedding_matrix(column: pa.Array) -> np.ndarray:
    """(n, D) float32 view of a list<float> column whose rows all have D values."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(column) == 0:
        return np.zeros((0, 0), np.float32)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(column), -1)


def fixed_binary(column: pa.Array, width: int) -> np.ndarray:
    """(n, width) uint8 of a binary column whose values all have `width` bytes."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    data = b"".join(column.to_pylist()) if len(column) else b""
    return np.frombuffer(data, np.uint8).reshape(len(column), width)


def add_code(contents: DataFrame, column: str, projection: Projection, name: str) -> DataFrame:
    """contents: item and a list<float> `column` -> item, `name` (binary, projection.bits / 8 bytes: the sign
    of the projection, MSURU 3.2's compressed embedding)."""
    schema = pa.schema([("item", pa.int64()), (name, pa.binary())])

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            codes = encode(embedding_matrix(batch.column(column)), projection)
            yield pa.RecordBatch.from_arrays([batch.column("item"), pa.array([c.tobytes() for c in codes],
                                                                             pa.binary())], schema=schema)

    return contents.select("item", column).mapInArrow(run, spark_schema(schema))


def fit_sample(contents: DataFrame, column: str, size: int, seed: int) -> np.ndarray:
    """At most `size` vectors of a list<float> column, picked by a seeded hash of the content (not by
    partition order), as a matrix: what a code's projection is fitted on. Bounded by `size`, not by the input."""
    picked = (contents.select(column, F.xxhash64(F.lit(seed), F.lit("code-fit"), "content_hash").alias("h"))
              .orderBy("h").limit(size).select(column))
    return embedding_matrix(picked.toArrow().column(column))
