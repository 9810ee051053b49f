"""`tagmill predict`: an exported model over images -> top label ids with scores, and the embedding.

These are 58.com's two outputs: label ids for recommendation and retrieval, and the penultimate-layer
embedding for nearest-neighbour search. An image that cannot be read gets a row with its error, never a crash.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from tagmill.trainer.reader import load_image_tensor, read_manifest
from tagmill.trainer.train import EXPORT, EXPORT_INFO

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

PREDICTION_SCHEMA = pa.schema([
    ("key", pa.string()), ("top_ids", pa.list_(pa.int32())), ("top_names", pa.list_(pa.string())),
    ("top_scores", pa.list_(pa.float32())), ("embedding", pa.list_(pa.float32())), ("error", pa.string()),
])


def load_model(model_dir: str | Path) -> tuple[torch.jit.ScriptModule, dict, list[dict]]:
    """(TorchScript model, model.json info, class list) of a `tagmill train` output folder."""
    folder = Path(model_dir)
    if not (folder / EXPORT).exists():
        raise FileNotFoundError(f"no {EXPORT} in {folder}: train a model first (`tagmill train`) or pass its --out folder")
    model = torch.jit.load(str(folder / EXPORT), map_location="cpu").eval()
    info = json.loads((folder / EXPORT_INFO).read_text())
    classes = json.loads((folder / "classes.json").read_text())["classes"]
    return model, info, classes


def images_in_folder(folder: str | Path) -> Iterator[tuple[str, bytes | None, str | None]]:
    """(relative path, bytes or None, error or None) for every image file under a folder, sorted."""
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            yield str(path.relative_to(root)), path.read_bytes(), None
        except OSError as err:
            yield str(path.relative_to(root)), None, f"unreadable: {err}"


def images_in_dataset(manifest_path: str | Path, split: str) -> Iterator[tuple[str, bytes | None, str | None]]:
    """(sample key, JPEG bytes, None) for every sample of one split of a published dataset, shard by shard."""
    manifest = read_manifest(manifest_path)
    for shard in manifest.shards_for(split):
        with tarfile.open(shard.path) as tar:
            for member in tar:
                if member.name.endswith(".jpg"):
                    yield member.name[:-4], tar.extractfile(member).read(), None


def predict(model_dir: str | Path, images: Iterable[tuple[str, bytes | None, str | None]], top_k: int = 5,
            batch_size: int = 64) -> Iterator[dict]:
    """One PREDICTION_SCHEMA row per image, in input order."""
    model, info, classes = load_model(model_dir)
    names = [c["name"] for c in classes]
    k = min(top_k, len(names))
    pending: list[tuple[str, torch.Tensor]] = []

    def flush():
        with torch.no_grad():
            logits, embedding = model(torch.stack([t for _, t in pending]))
        scores = torch.softmax(logits, 1) if info["scores"] == "softmax" else torch.sigmoid(logits)
        top = torch.topk(scores, k, dim=1)
        for (key, _), ids, values, emb in zip(pending, top.indices.tolist(), top.values.tolist(),
                                              embedding.numpy().astype(np.float32)):
            yield {"key": key, "top_ids": ids, "top_names": [names[i] for i in ids], "top_scores": values,
                   "embedding": emb.tolist(), "error": None}
        pending.clear()

    for key, data, error in images:
        tensor = None
        if error is None:
            try:
                tensor = load_image_tensor(data, info["image_size"])
            except Exception as err:  # noqa: BLE001 - any decoder failure becomes the row's error
                error = f"undecodable: {type(err).__name__}: {err}"
        if tensor is None:
            yield {"key": key, "top_ids": None, "top_names": None, "top_scores": None, "embedding": None,
                   "error": error}
            continue
        pending.append((key, tensor))
        if len(pending) == batch_size:
            yield from flush()
    if pending:
        yield from flush()


def write_predictions(rows: Iterable[dict], out_path: str | Path, chunk: int = 1024) -> int:
    """Stream prediction rows into one Parquet file; returns the number of rows."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    total, buffer = 0, []
    with pq.ParquetWriter(str(out_path), PREDICTION_SCHEMA) as writer:
        for row in rows:
            buffer.append(row)
            if len(buffer) == chunk:
                writer.write_batch(pa.RecordBatch.from_pylist(buffer, schema=PREDICTION_SCHEMA))
                total, buffer = total + len(buffer), []
        if buffer:
            writer.write_batch(pa.RecordBatch.from_pylist(buffer, schema=PREDICTION_SCHEMA))
            total += len(buffer)
    return total

