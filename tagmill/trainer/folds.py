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

Cold-start folds (`train_cold_start_folds`) cost about one model instead of k: only the training samples no
search-log label names (a cold-start listing's photos, labeled by its seller's category alone: the images a
teacher is there to tag) are split into folds, by shard as above. A trunk trains `epochs - fold_epochs`
epochs without any of them; each fold model continues the trunk's run (its checkpoint: weights, optimizer,
learning-rate schedule) for the last `fold_epochs` on everything but its fold. No fold model has seen its
fold's images (nor has the trunk), and every other training image needs no teacher tag. The same
out-of-fold reading applies: trained_images.txt lists what each model saw. The fold models' weight average
(OUT/averaged) is one model of the whole split, for what wants one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from tagmill.config import ConfigError, TrainConfig
from tagmill.manifest import MANIFEST, parse_manifest

log = logging.getLogger("tagmill.folds")

FOLD_PREFIX = "fold-"
"""Fold models sit in OUT/fold-0, OUT/fold-1, ...; a teacher folder holding them is read by
labeling.teacher.load_teacher as one teacher."""
TRUNK = "trunk"
"""Cold-start folds' shared start: OUT/trunk (not a fold: load_teacher does not read it)."""
AVERAGED = "averaged"
"""Cold-start folds' mean: OUT/averaged, one model of every training image (train.export_average)."""


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


def cold_start_folds(manifest_path: str | Path, k: int, searched: str) -> list[frozenset[str]]:
    """Fold F's images: the keys of the train split's samples without a label of source `searched` (the search
    log's name, labeling.sources) in the train shards i with i % k == F."""
    from tagmill.trainer.reader import read_manifest, sample_metas

    manifest = read_manifest(manifest_path)
    folds: list[set[str]] = [set() for _ in range(k)]
    for i, shard in enumerate(manifest.shards_for("train")):
        for meta in sample_metas(shard, manifest.num_classes):
            if not any(label.get("source") == searched for label in meta.get("labels", ())):
                folds[i % k].add(meta["key"])
    return [frozenset(fold) for fold in folds]


def train_cold_start_folds(manifest_path: str | Path, out: Path, cfg: TrainConfig, seed: int, k: int,
                           searched: str, average_prototypes: bool = True) -> list:
    """OUT/trunk, then k fold models into OUT/fold-F (module docstring), each resuming like `tagmill train`, and
    their weights' mean into OUT/averaged (a model of the whole train split for what wants one model: the
    demo's score of the teacher, a start for the final model), with class prototypes (cfg.prototypes) unless
    average_prototypes is False: a model scored by its logits or trained on needs none, and their pass over
    the train split costs about a fifth of an epoch. Returns the fold models' TrainResults.
    Raises ConfigError when train.fold_epochs leaves the trunk no epoch, DatasetError when every training
    sample has a search-log label (no fold would hold an image)."""
    from tagmill.trainer.reader import DatasetError
    from tagmill.trainer.train import CHECKPOINT, export_average, train

    if cfg.fold_epochs >= cfg.epochs:
        raise ConfigError("train.fold_epochs", f"{cfg.fold_epochs} leaves the trunk none of train.epochs = "
                          f"{cfg.epochs}", "set train.fold_epochs below train.epochs")
    folds = cold_start_folds(manifest_path, k, searched)
    if not any(folds):
        raise DatasetError(f"{manifest_path}: every training sample has a search-log label, so no fold holds an "
                           "image to tag; train one model (`tagmill train`) or shard-level folds (--folds)")
    log.info("cold-start folds: %s training images without a search-log label held out", [len(f) for f in folds])
    trunk = out / TRUNK
    train(manifest_path, trunk, cfg, seed, held_out=frozenset().union(*folds),
          stop_after_epoch=cfg.epochs - cfg.fold_epochs)
    results = []
    for f, fold in enumerate(folds):
        folder = out / f"{FOLD_PREFIX}{f}"
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / CHECKPOINT).exists():  # else the fold model resumes its own run
            shutil.copyfile(trunk / CHECKPOINT, folder / CHECKPOINT)
        results.append(train(manifest_path, folder, cfg, seed, held_out=fold))
    export_average([r.out_dir for r in results], manifest_path, out / AVERAGED,
                   cfg if average_prototypes else cfg.model_copy(update={"prototypes": False}), seed)
    return results
