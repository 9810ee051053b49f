"""Out-of-fold teachers (trainer.folds, labeling.teacher.FoldTeachers): each fold model trains without one
share of the train shards, and the folds load as one teacher whose scores sit side by side."""

from __future__ import annotations

import json
import tarfile

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_dataset
from tagmill.config import ConfigError, TrainConfig
from tagmill.labeling.sources import SEARCH_LOG
from tagmill.labeling.teacher import FoldTeachers, load_teacher
from tagmill.trainer.folds import cold_start_folds, fold_manifests, train_cold_start_folds, train_folds
from tagmill.trainer.reader import DatasetError, read_manifest
from tagmill.trainer.train import warmup_cosine

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


@pytest.fixture(scope="module")
def fold_teacher(tiny_dataset, tmp_path_factory) -> Path:
    """A folder of two shard-level fold models of the tiny dataset."""
    folder = tmp_path_factory.mktemp("fold-teacher")
    train_folds(tiny_dataset, folder, FAST, seed=1, k=2)
    return folder


def test_fold_teachers_load_as_one_teacher_that_never_saw_the_images_it_tags(tiny_dataset, fold_teacher):
    tmp_path = fold_teacher
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
    images = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32))
    scores, embedding = teacher.forward(images)
    assert scores.shape == (4, 2 * classes) and embedding.shape[0] == 4
    np.testing.assert_allclose(scores[:, :classes], teacher.folds[0].forward(images)[0])
    # a fold model does not run on the images it trained on (their scores stay 0); the first fold runs on every
    # image, the embedding being its
    seen = np.array([[True, True], [False, True], [True, False], [False, False]])
    skipped, same_embedding = teacher.forward(images, seen=seen)
    np.testing.assert_allclose(skipped[:, :classes], scores[:, :classes], rtol=1e-5, atol=1e-6)
    assert not skipped[:2, classes:].any()
    np.testing.assert_allclose(skipped[2:, classes:], scores[2:, classes:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(same_embedding, embedding, rtol=1e-5, atol=1e-6)


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
    assert [(r.epochs_done, r.finished) for r in results] == [(2, True), (2, True)]
    trunk = tmp_path / "teacher" / "trunk"
    assert (trunk / "checkpoint.pt").is_file() and not (trunk / "model.ts").exists()  # a start, not a model
    # one step per batch of the samples it trains on: the held-out ones are not in the stream at all
    trunk_steps = [json.loads(line) for line in (trunk / "losses.jsonl").read_text().splitlines()]
    assert len(trunk_steps) == -(-len(train - cold) // FAST.batch_size)
    teacher = load_teacher(str(tmp_path / "teacher"))  # the fold models; the trunk is not one
    assert isinstance(teacher, FoldTeachers) and len(teacher.folds) == 2
    for fold, model in enumerate(teacher.folds):
        assert set(model.trained_images.read_text().split()) == train - folds[fold]
        steps = [json.loads(line) for line in
                 (tmp_path / "teacher" / f"fold-{fold}" / "losses.jsonl").read_text().splitlines()]
        n = -(-len(train - folds[fold]) // FAST.batch_size)
        assert len(steps) == n and steps[0]["epoch"] == 2
        # the fold model goes on with the trunk's run: its step count, and its schedule from the same share of
        # the run (after one of two epochs), though an epoch of its samples has more batches than the trunk's
        assert steps[0]["step"] == trunk_steps[-1]["step"] + 1
        assert steps[0]["lr"] == pytest.approx(cfg.lr * warmup_cosine(n + 1, round(cfg.warmup_epochs * n), 2 * n))
        assert results[fold].steps_done == len(trunk_steps) + n
    # their weight average: one model of the whole train split, a start for another model
    averaged = tmp_path / "teacher" / "averaged"
    assert set((averaged / "trained_images.txt").read_text().split()) == train
    states = [torch.load(tmp_path / "teacher" / f"fold-{f}" / "checkpoint.pt", weights_only=False)["model"]
              for f in (0, 1)]
    mean = torch.load(averaged / "checkpoint.pt", weights_only=True)["model"]
    torch.testing.assert_close(mean["fc.weight"], (states[0]["fc.weight"] + states[1]["fc.weight"]) / 2)
    assert load_teacher(str(averaged)).labels == teacher.folds[0].labels
    # run again, each model resumes its own finished run rather than starting over from the trunk's
    again = train_cold_start_folds(manifest, tmp_path / "teacher", cfg, seed=1, k=2, searched=SEARCH_LOG)
    assert [r.steps_done for r in again] == [r.steps_done for r in results]

    with pytest.raises(ConfigError, match="train.fold_epochs"):
        train_cold_start_folds(manifest, tmp_path / "no-trunk", FAST, seed=1, k=2, searched=SEARCH_LOG)
    with pytest.raises(DatasetError, match="every training sample has a search-log label"):
        train_cold_start_folds(tiny_dataset, tmp_path / "none", cfg, seed=1, k=2, searched=SEARCH_LOG)


@pytest.mark.spark
def test_the_image_pass_runs_a_fold_model_only_on_the_images_it_did_not_train_on(spark, fold_teacher, tmp_path):
    from tagmill.config import ImagePassConfig
    from tagmill.jobs.image_pass import _seen_by
    from tagmill.labeling.image_pass import forward_images

    teacher = load_teacher(str(fold_teacher))
    classes = len(teacher.folds[0].labels)
    trained = [set(m.trained_images.read_text().split()) for m in teacher.folds]
    only_0, only_1 = sorted(trained[0] - trained[1])[:2], sorted(trained[1] - trained[0])[:2]
    # h0: two images, one of them fold 1's; h1: fold 1's; h2: fold 0's only; h3: an image no fold trained on
    hashed = spark.createDataFrame([(only_1[0], "h0"), ("ffff0000000000000000", "h0"), (only_1[1], "h1"),
                                    (only_0[0], "h2"), ("ffff0000000000000001", "h3")],
                                   "image_key string, content_hash string")
    bits = {r.content_hash: r.seen_by for r in _seen_by(spark, hashed, teacher).collect()}
    assert bits == {"h0": 2, "h1": 2}  # bit 1 = fold 1; fold 0 runs on every image (the embedding is its)
    rng = np.random.default_rng(3)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    unique = spark.createDataFrame([(f"h{i}", f"{i}.png", bits.get(f"h{i}", 0)) for i in range(4)],
                                   "content_hash string, image_path string, seen_by long")
    # every positive score kept: a model that ran gives each of its classes one, a skipped one gives none
    cfg = ImagePassConfig(teacher=str(fold_teacher), batch_size=4, target_precision=0, threshold=1e-12, top_k=100)
    rows = {r["content_hash"]: r for r in forward_images(unique, str(tmp_path), cfg).toPandas().to_dict("records")}
    for h in ("h0", "h1", "h2", "h3"):
        folds = {int(t) // classes for t in rows[h]["tag_ids"]}
        assert folds == ({0} if h in ("h0", "h1") else {0, 1}), h


def test_cold_start_without_folds_is_refused_with_the_fix(capsys):
    from tagmill.jobs.cli import main

    assert main(["-q", "train", "--cold-start"]) == 2
    assert "--cold-start needs --folds K" in capsys.readouterr().err
