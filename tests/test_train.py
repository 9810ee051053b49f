"""The trainer end to end on a small published dataset: it learns, resumes exactly, freezes then
unfreezes, exports a TorchScript model that predict uses, and handles bad shards by policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from tagmill.config import TrainConfig
from tagmill.labeling.teacher import load_teacher
from tagmill.trainer.predict import images_in_dataset, images_in_folder, predict, write_predictions
from tagmill.trainer.reader import CorruptShard, read_manifest
from tagmill.trainer.backbones import build_model, load_init_weights
from tagmill.trainer.train import (CHECKPOINT, _head_rows, _prototypes, epoch_report, load_checkpoint, train,
                                   warmup_cosine)
from tagmill.trainer.transforms import load_image_tensor

FAST = TrainConfig(arch="resnet18", image_size=32, epochs=2, freeze_epochs=0, batch_size=32, optimizer="adamw",
                   lr=0.003, weight_decay=0.01, num_workers=0, head_tail_boundary=20, shuffle_buffer=64)


def _losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (out / "losses.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    cfg = FAST.__class__(**{**FAST.__dict__, "epochs": 4, "num_workers": 2})
    return out, train(tiny_dataset, out, cfg, seed=3)


def test_short_training_run_beats_chance_clearly(trained):
    out, result = trained
    assert result.finished and result.epochs_done == 4
    metrics, chance = result.metrics, result.chance
    assert metrics["rows"] == chance["rows"] == 72
    assert metrics["map_macro"] > chance["map_macro"] + 0.3
    assert metrics["top_k"]["1"] > chance["top_k"]["1"] + 0.25
    assert metrics["knn"]["precision"] > chance["knn"]["precision"] + 0.2
    epochs = sorted((out / "metrics").glob("epoch-*.json"))
    assert [p.name for p in epochs] == [f"epoch-00{i}.json" for i in range(1, 5)]
    assert json.loads(epochs[-1].read_text())["validation"] == metrics


def test_resume_continues_the_same_loss_curve(tiny_dataset, tmp_path):
    """Also: the whole run validates after its last epoch only (train.validate_every 0), the parts after each, and
    it is the same run: validating touches no weight, optimizer state or random stream that training draws on."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    cfg = FAST.__class__(**{**FAST.__dict__, "num_workers": 2, "loss": "sampled_softmax", "sampling_ratio": 0.5})
    train(tiny_dataset, whole, cfg.__class__(**{**cfg.__dict__, "validate_every": 0}), seed=5)
    stopped = train(tiny_dataset, parts, cfg.__class__(**{**cfg.__dict__, "max_steps": 5}), seed=5)
    assert not stopped.finished and stopped.steps_done == 5  # mid-epoch: 8 steps per epoch
    stopped = train(tiny_dataset, parts, cfg.__class__(**{**cfg.__dict__, "max_steps": 6}), seed=5)
    assert not stopped.finished and stopped.steps_done == 11  # resumed mid-epoch, stopped in the next
    done = train(tiny_dataset, parts, cfg, seed=5)
    assert done.finished
    assert _losses(parts) == _losses(whole)
    assert len(_losses(whole)) == 16
    assert [epoch_report(whole, e)["validation"] == {} for e in (1, 2)] == [True, False]
    assert epoch_report(whole, 2)["validation"] == epoch_report(parts, 2)["validation"] != {}
    assert epoch_report(parts, 1)["validation"] != {}
    mine, theirs = (load_checkpoint(folder / CHECKPOINT)["model"] for folder in (whole, parts))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_frozen_epoch_trains_only_the_head(tiny_dataset, tmp_path):
    cfg = FAST.__class__(**{**FAST.__dict__, "epochs": 2, "freeze_epochs": 1, "max_steps": 1})
    out = tmp_path / "frozen"
    torch.manual_seed(11)
    train(tiny_dataset, out, cfg, seed=11)
    first = load_checkpoint(out / CHECKPOINT)["model"]
    train(tiny_dataset, out, cfg, seed=11)
    second = load_checkpoint(out / CHECKPOINT)["model"]
    changed = {k for k in first if not torch.equal(first[k], second[k])}
    assert changed == {"fc.weight", "fc.bias"}


def test_export_and_predict_give_label_ids_scores_and_embeddings(trained, tiny_dataset, tmp_path):
    out, _ = trained
    model = torch.jit.load(str(out / "model.ts"))
    logits, embedding = model(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 8) and embedding.shape == (2, 512)
    folder = tmp_path / "images"
    folder.mkdir()
    keys = []
    for key, data, _ in images_in_dataset(tiny_dataset, "validation"):
        (folder / f"{key}.jpg").write_bytes(data)
        keys.append(key)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    n = write_predictions(predict(out, images_in_folder(folder), top_k=3), tmp_path / "p.parquet")
    table = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert n == len(table) == len(keys) + 1
    broken = [r for r in table if r["key"] == "broken.jpg"]
    assert broken[0]["error"].startswith("undecodable") and broken[0]["top_ids"] is None
    good = [r for r in table if r["error"] is None]
    assert all(len(r["top_ids"]) == 3 and len(r["embedding"]) == 512 for r in good)
    assert all(r["top_scores"] == sorted(r["top_scores"], reverse=True) for r in good)
    truth = {c: int(c[:4]) for c in keys}  # the fixture's keys start with the class id
    hits = np.mean([r["top_ids"][0] == truth[r["key"][:-4]] for r in good])
    assert hits > 0.4  # 8 classes: chance is 0.125


def test_bad_shard_fails_clearly_or_is_skipped_and_counted(tiny_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(Path(tiny_dataset).parent, copy)
    shard = read_manifest(copy).shards_for("train")[1].path
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF
    shard.write_bytes(bytes(data))
    cfg = FAST.__class__(**{**FAST.__dict__, "epochs": 1})
    with pytest.raises(CorruptShard, match=shard.name):
        train(copy / "manifest.json", tmp_path / "fail", cfg, seed=1)
    result = train(copy / "manifest.json", tmp_path / "skip", cfg.__class__(**{**cfg.__dict__, "on_bad_shard": "skip"}),
                   seed=1)
    report = epoch_report(tmp_path / "skip", 1)
    assert result.finished and [b["path"] for b in report["skipped_shards"]] == [str(shard)]


def test_warmup_then_cosine():
    assert [round(warmup_cosine(s, 4, 12), 4) for s in range(13)] == [
        0.25, 0.5, 0.75, 1.0, 1.0, 0.9619, 0.8536, 0.6913, 0.5, 0.3087, 0.1464, 0.0381, 0.0]


def test_two_ranks_train_in_step_and_do_not_hang_on_uneven_shards(tiny_dataset, tmp_path):
    """torchrun with 2 CPU processes (gloo): 240 repeated samples in shards of 25 split unevenly, yet both
    ranks run the same number of steps and the run ends with one export."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
               "-m", "tagmill.jobs.cli", "-q", "train", "--manifest", str(tiny_dataset), "--out", str(out),
               "--set", "train.arch=\"resnet18\"", "--set", "train.image_size=32", "--set", "train.epochs=1",
               "--set", "train.freeze_epochs=0", "--set", "train.batch_size=32", "--set", "train.num_workers=0"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = epoch_report(out, 1)
    # 240 repeated positions / 2 ranks = 120 per rank = 4 batches of 32 (the last one short)
    assert report["ranks"] == 2 and report["steps"] == 4 and len(_losses(out)) == 4
    assert (out / "model.ts").exists()


def test_the_export_carries_class_prototypes_that_a_teacher_scores_with(trained, tiny_dataset, tmp_path):
    from tagmill.labeling.teacher import load_teacher
    from tagmill.trainer.prototypes import TEMPERATURES

    out, _ = trained
    prototypes = np.load(out / "prototypes.npy")
    assert prototypes.shape == (8, 512) and prototypes.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(prototypes, axis=1), 1.0, rtol=1e-5)  # every class has images
    entry = json.loads((out / "model.json").read_text())["prototypes"]
    assert list(entry) == ["temperature"] and entry["temperature"] in TEMPERATURES
    # fitted on the last validation's embeddings: a pass of its own over the validation split finds the same
    manifest = read_manifest(tiny_dataset)
    model = build_model("resnet18", manifest.num_classes)
    model.load_state_dict(load_checkpoint(out / CHECKPOINT)["model"])
    splits = {split: [s for s in manifest.shards if s.split == split] for split in ("train", "validation")}
    (tmp_path / "again").mkdir()
    again = _prototypes(model, manifest, splits["train"], splits["validation"], tmp_path / "again",
                        FAST.__class__(**{**FAST.__dict__, "num_workers": 2}), 3, torch.device("cpu"))
    assert again == entry
    np.testing.assert_array_equal(np.load(tmp_path / "again" / "prototypes.npy"), prototypes)
    teacher = load_teacher(str(out))
    keys, batch = [], []
    for key, data, _ in images_in_dataset(tiny_dataset, "validation"):
        keys.append(key)
        batch.append(load_image_tensor(data, 32))
    scores, _ = teacher.forward(torch.stack(batch))
    truth = np.array([int(k[:4]) for k in keys])  # the fixture's keys start with the class id
    assert np.mean(scores.argmax(1) == truth) > 0.4  # 8 classes: chance is 0.125


def test_a_model_starts_from_another_models_checkpoint_class_by_class(trained, tiny_dataset, tmp_path):
    """The demo's final model starts from its teacher: the backbone as it is, each head row from the class of
    the same name, whatever the two class lists' orders."""
    source, _ = trained
    state = load_checkpoint(source / CHECKPOINT)["model"]
    classes = read_manifest(tiny_dataset).classes
    reordered = [dict(c, id=i) for i, c in enumerate(reversed(classes))] + [{"id": len(classes), "name": "new"}]
    rows = _head_rows(str(source / CHECKPOINT), reordered)
    assert rows == [c["id"] for c in reversed(classes)] + [-1]
    model = build_model("resnet18", len(reordered))
    report = load_init_weights(model, source / CHECKPOINT, rows)
    assert report["carried_classes"] == len(classes) and report["skipped"] == []
    assert torch.equal(model.fc.weight[0], state["fc.weight"][classes[-1]["id"]])
    assert torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert _head_rows(str(tmp_path / "weights.pt"), reordered) is None  # no classes.json beside: not ours
    (tmp_path / "classes.json").write_text('{"classes": [{"label": "x"}]}')
    with pytest.raises(ValueError, match="classes.json: not the class index of a `tagmill train` model"):
        _head_rows(str(tmp_path / "weights.pt"), reordered)
    # a run started from it begins where it ended: its first loss is far below a fresh model's
    short = FAST.__class__(**{**FAST.__dict__, "max_steps": 1})
    fresh = train(tiny_dataset, tmp_path / "fresh", short, seed=3)
    started = train(tiny_dataset, tmp_path / "started",
                    short.__class__(**{**short.__dict__, "init_weights": str(source / CHECKPOINT)}), seed=3)
    assert not fresh.finished and not started.finished
    assert _losses(tmp_path / "started")[0][1] < 0.5 * _losses(tmp_path / "fresh")[0][1]


def test_a_model_trained_without_prototypes_scores_by_its_logits_as_a_teacher(tiny_dataset, tmp_path):
    out = tmp_path / "no-prototypes"
    result = train(tiny_dataset, out, FAST.__class__(**{**FAST.__dict__, "epochs": 1, "prototypes": False}), seed=7)
    assert result.finished and (out / "model.ts").is_file()
    assert not (out / "prototypes.npy").exists()
    assert "prototypes" not in json.loads((out / "model.json").read_text())
    teacher = load_teacher(str(out))
    assert teacher.prototypes is None
    scores, _ = teacher.forward(torch.zeros(2, 3, 32, 32))
    logits, _ = torch.jit.load(str(out / "model.ts"))(torch.zeros(2, 3, 32, 32))
    np.testing.assert_allclose(scores, torch.sigmoid(logits).detach().numpy(), rtol=1e-5)
