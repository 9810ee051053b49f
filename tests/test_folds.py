"""Out-of-fold teachers (trainer.folds, labeling.teacher.FoldTeachers): each fold model trains without one
share of the train shards, and the folds load as one teacher whose scores sit side by side."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import torch

from tagmill.config import TrainConfig
from tagmill.labeling.teacher import FoldTeachers, load_teacher
from tagmill.trainer.folds import fold_manifests, train_folds
from tagmill.trainer.reader import read_manifest

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
