"""Fold teachers: k models of one dataset, each trained without one fold of its training split, so that every
training image can be tagged by a model that never saw it (issue: out-of-fold teacher tags).

A fold is a set of the train split's shards (shard i belongs to fold i mod k). Shards are buckets of a hash of
the product (dataset.publish.plan_shards), so a fold is a random share of the training products: a product's
photos, and the duplicates merged into their samples (assemble keeps one sample per duplicate cluster), sit
in one fold (but the one product a bucket may split where it rolls over into a second shard), so no fold
model trains on one photo of a product whose other photo it tags. Two products joined only through a
duplicate (one split group, dataset.assemble.split_groups) may still fall in two folds. Each fold model gets a manifest of its own beside it, naming the
dataset's shards by relative path: the dataset itself is never touched. Validation and test stay whole, so
every fold model is validated on the same images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tagmill.config import TrainConfig
from tagmill.manifest import MANIFEST, parse_manifest

FOLD_PREFIX = "fold-"
"""Fold models sit in OUT/fold-0, OUT/fold-1, ...; a teacher folder holding them is read by
labeling.teacher.load_teacher as one teacher."""


def fold_manifests(manifest_path: str | Path, k: int, out: Path) -> list[Path]:
    """OUT/fold-F/manifest.json for F in 0..k-1: the dataset's manifest without fold F's train shards.
    Raises ValueError when the train split has fewer than k shards (a fold would hold nothing)."""
    manifest_path = Path(manifest_path).absolute()
    file = manifest_path / MANIFEST if manifest_path.is_dir() else manifest_path
    data = json.loads(file.read_text(encoding="utf-8"))
    manifest = parse_manifest(data)
    train = [s for s in manifest.shards if s.split == "train"]
    if len(train) < k:
        raise ValueError(f"{file}: {len(train)} train shards cannot make {k} folds; use fewer folds "
                         f"(--folds) or smaller shards (dataset.shard_max_samples)")
    written = []
    for fold in range(k):
        folder = out / f"{FOLD_PREFIX}{fold}"
        folder.mkdir(parents=True, exist_ok=True)

        def moved(path: str) -> str:
            return os.path.relpath(file.parent / path, folder)

        held_out = {s.path for i, s in enumerate(train) if i % k == fold}
        shards = [s.model_copy(update={"path": moved(s.path)}) for s in manifest.shards if s.path not in held_out]
        kept = [s for s in shards if s.split == "train"]
        splits = {**manifest.splits, "train": manifest.splits["train"].model_copy(update={
            "samples": sum(s.samples for s in kept), "repeats": sum(s.repeats for s in kept),
            "shards": len(kept), "bytes": sum(s.bytes for s in kept)})}
        vectors = manifest.word_vectors
        fold_manifest = manifest.model_copy(update={
            "shards": shards, "splits": splits, "class_index": moved(manifest.class_index),
            "word_vectors": vectors.model_copy(update={"path": moved(vectors.path)}) if vectors else None,
            "card": None, "wids_index": None})  # the dataset's card and indexes describe the whole dataset
        (folder / MANIFEST).write_bytes(fold_manifest.to_json())
        written.append(folder / MANIFEST)
    return written


def train_folds(manifest_path: str | Path, out: Path, cfg: TrainConfig, seed: int, k: int) -> list:
    """Train k fold models into OUT/fold-F (each resumes like `tagmill train`); returns their TrainResults."""
    from tagmill.trainer.train import train

    return [train(fold, fold.parent, cfg, seed + i) for i, fold in enumerate(fold_manifests(manifest_path, k, out))]
