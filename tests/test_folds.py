"""Out-of-fold teachers (trainer.folds, labeling.teacher.FoldTeachers): each fold model trains without one
share of the train shards, and the folds load as one teacher whose scores sit side by side."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import torch

from conftest import make_tiny_dataset
from tagmill.config import ConfigError, TrainConfig
from tagmill.labeling.sources import SEARCH_LOG
from tagmill.labeling.teacher import FoldTeachers, load_teacher
from tagmill.trainer.folds import cold_start_folds, fold_manifests, train_cold_start_folds, train_folds
from tagmill.trainer.reader import DatasetError, read_manifest

FAST = TrainConfig(arch="resnet18", image_size=32, epochs=1, freeze_epochs=0, batch_size=32, optimizer="adamw",
                   lr=0.002, num_workers=0, use_repeats=False)


def _keys(shard_path) -> set[str]:
    with tarfile.open(shard_path) as tar:
        return {name.rsplit(".", 1)[0] for name in tar.getnames()}


def test_each_fold_leaves_out_one_share_of_the_train_shards_and_reads_the_dataset_in_place(tiny_dataset, tmp_path):
    whole = read_manifest(tiny_dataset)
    train = [s.path for s in whole.shards_for("train")]  # 168 train samples in shards of 25: 7 shards
    assert len(train) == 7
    held_out = []
    for fold, path in enumerate(fold_manifests(tiny_dataset, 3, tmp_path)):
        assert path == tmp_path / f"fold-{fold}" / "manifest.json"
        manifest = read_manifest(path)
        kept = [s.path.resolve() for s in manifest.shards_for("train")]
        assert all(p.is_file() for p in kept)
        held_out.append({p.resolve() for p in train} - set(kept))
        assert [s.path.resolve() for s in manifest.shards_for("validation")] == [
            s.path.resolve() for s in whole.shards_for("validation")]
        assert manifest.classes == whole.classes
    assert [len(h) for h in held_out] == [3, 2, 2]  # shard i in fold i mod 3
    assert set().union(*held_out) == {p.resolve() for p in train}
    with pytest.raises(ValueError, match="7 train shards cannot make 8 folds"):
        fold_manifests(tiny_dataset, 8, tmp_path / "too-many")


def test_fold_teachers_load_as_one_teacher_that_never_saw_the_images_it_tags(tiny_dataset, tmp_path):
    train_folds(tiny_dataset, tmp_path, FAST, seed=1, k=2)
    teacher = load_teacher(str(tmp_path))
    assert isinstance(teacher, FoldTeachers) and len(teacher.folds) == 2
    classes = len(teacher.folds[0].labels)
    assert [x.fold for x in teacher.labels] == [0] * classes + [1] * classes
    whole = read_manifest(tiny_dataset)
    for fold, model in enumerate(teacher.folds):
        trained = set(model.trained_images.read_text().split())
        kept = read_manifest(tmp_path / f"fold-{fold}" / "manifest.json").shards_for("train")
        assert trained == set().union(*(_keys(s.path) for s in kept))
        held = set().union(*(_keys(s.path) for i, s in enumerate(whole.shards_for("train")) if i % 2 == fold))
        assert held and not trained & held  # the fold's own share is exactly what it never trained on
    scores, embedding = teacher.forward(torch.zeros(4, 3, 32, 32))
    assert scores.shape == (4, 2 * classes) and embedding.shape[0] == 4
    np.testing.assert_allclose(scores[:, :classes], teacher.folds[0].forward(torch.zeros(4, 3, 32, 32))[0])


def test_cold_start_folds_hold_out_exactly_the_images_no_search_labeled_from_the_trunk_and_their_fold(
        tiny_dataset, tmp_path):
    # images 0, 4, 8, ... of each class are labeled by their seller's category alone
    manifest = make_tiny_dataset(tmp_path / "data", seller_every=4)
    shards = read_manifest(manifest).shards_for("train")
    train = set().union(*(_keys(s.path) for s in shards))
    cold = {k for k in train if int(k[4:], 16) % 4 == 0}
    assert len(train) == 168 and len(cold) == 48
    folds = cold_start_folds(manifest, 2, SEARCH_LOG)
    assert folds == [frozenset(cold & set().union(*(_keys(s.path) for s in shards[f::2]))) for f in (0, 1)]
    assert all(folds) and set().union(*folds) == cold

    cfg = FAST.model_copy(update={"epochs": 2, "fold_epochs": 1})
    results = train_cold_start_folds(manifest, tmp_path / "teacher", cfg, seed=1, k=2, searched=SEARCH_LOG)
    assert [r.epochs_done for r in results] == [1, 1]
    trunk = tmp_path / "teacher" / "trunk"
    assert set((trunk / "trained_images.txt").read_text().split()) == train - cold
    # one step per batch of the samples it trains on: the held-out ones are not in the stream at all
    assert len((trunk / "losses.jsonl").read_text().splitlines()) == -(-len(train - cold) // FAST.batch_size)
    teacher = load_teacher(str(tmp_path / "teacher"))  # the fold models; the trunk is not one
    assert isinstance(teacher, FoldTeachers) and len(teacher.folds) == 2
    for fold, model in enumerate(teacher.folds):
        assert set(model.trained_images.read_text().split()) == train - folds[fold]
        steps = len((tmp_path / "teacher" / f"fold-{fold}" / "losses.jsonl").read_text().splitlines())
        assert steps == -(-len(train - folds[fold]) // FAST.batch_size)

    with pytest.raises(ConfigError, match="train.fold_epochs"):
        train_cold_start_folds(manifest, tmp_path / "no-trunk", FAST, seed=1, k=2, searched=SEARCH_LOG)
    with pytest.raises(DatasetError, match="every training sample has a search-log label"):
        train_cold_start_folds(tiny_dataset, tmp_path / "none", cfg, seed=1, k=2, searched=SEARCH_LOG)
