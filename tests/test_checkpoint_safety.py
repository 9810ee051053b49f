"""A resumed `tagmill train` reads OUT/checkpoint.pt weights only: a planted file never runs, a foreign one is
refused naming the file and the fix, and our own checkpoints still resume exactly where they stopped."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

from tagmill.config import TrainConfig
from tagmill.trainer.train import CHECKPOINT, CHECKPOINT_KEYS, CheckpointError, load_checkpoint, train

FAST = TrainConfig(arch="resnet18", image_size=32, epochs=1, freeze_epochs=0, batch_size=32, optimizer="adamw",
                   lr=0.003, weight_decay=0.01, num_workers=0, head_tail_boundary=20, shuffle_buffer=64)
"""One epoch of 8 steps on the tiny dataset (240 repeated samples in batches of 32)."""


def _with(cfg: TrainConfig, **changes) -> TrainConfig:
    return cfg.__class__(**{**cfg.__dict__, **changes})


class Planted:
    """What an attacker pickles: unpickling it calls open(marker, "w"), so a created marker proves code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _plant(path: Path, marker: Path, how: str) -> Path:
    """A checkpoint with every key of ours, whose model is the planted code, written the way `how` says."""
    state = {key: 0 for key in CHECKPOINT_KEYS} | {"model": Planted(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "pickle":  # a bare pickle, not a torch.save file at all
        with path.open("wb") as f:
            pickle.dump(state, f)
    else:
        torch.save(state, path, _use_new_zipfile_serialization=how == "zip")
    return path


def _load_unsafely(path: Path, how: str):
    """What resume did before: the file's code runs (never do this outside this test's control case)."""
    return pickle.loads(path.read_bytes()) if how == "pickle" else torch.load(path, weights_only=False)


def _refused(match: str):
    return pytest.raises(CheckpointError, match=match)


@pytest.mark.parametrize("how", ["zip", "legacy", "pickle"])
def test_a_planted_checkpoint_is_refused_and_its_code_never_runs(tiny_dataset, tmp_path, how):
    control = tmp_path / "control-marker"
    _load_unsafely(_plant(tmp_path / "control.pt", control, how), how)
    assert control.exists()  # the planted file does run code when loaded the unsafe way

    out, marker = tmp_path / "out", tmp_path / "marker"
    planted = _plant(out / CHECKPOINT, marker, how)
    fix = re.escape(f"delete {planted} to start over, or pass another --out")
    with _refused(rf"^{re.escape(str(planted))}: not a `tagmill train` checkpoint .*weights only.*{fix}"):
        train(tiny_dataset, out, FAST, seed=1)
    assert not marker.exists()
    assert planted.exists()  # refused, not silently replaced: the user decides


def test_the_refusal_names_what_the_planted_file_calls(tmp_path):
    planted = _plant(tmp_path / CHECKPOINT, tmp_path / "marker", "zip")
    with _refused(r"it names io\.open, which no checkpoint of ours holds"):
        load_checkpoint(planted)
    assert not (tmp_path / "marker").exists()


def test_a_foreign_state_dict_is_refused_clearly(tiny_dataset, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    torch.save({"fc.weight": torch.zeros(8, 512), "fc.bias": torch.zeros(8)}, out / CHECKPOINT)  # harmless
    path = re.escape(str(out / CHECKPOINT))
    with _refused(rf"^{path}: not a `tagmill train` checkpoint \(no 'arch', .*'model'.*\); delete {path} to start "
                  rf"over, or pass another --out$"):
        train(tiny_dataset, out, FAST, seed=1)


@pytest.mark.parametrize("content, why", [(b"", "EOFError"), (b"not a checkpoint at all", "UnpicklingError")])
def test_a_damaged_checkpoint_is_refused_clearly(tmp_path, content, why):
    (tmp_path / CHECKPOINT).write_bytes(content)
    with _refused(rf"weights only: {why}\); delete .* to start over"):
        load_checkpoint(tmp_path / CHECKPOINT)


def test_a_tensor_instead_of_a_dict_is_refused(tmp_path):
    torch.save(torch.zeros(3), tmp_path / CHECKPOINT)
    with _refused(r"\(a Tensor, not a dict\)"):
        load_checkpoint(tmp_path / CHECKPOINT)


def test_our_own_checkpoint_resumes_and_one_of_another_model_is_refused(tiny_dataset, tmp_path):
    out = tmp_path / "out"
    stopped = train(tiny_dataset, out, _with(FAST, max_steps=3), seed=2)
    assert not stopped.finished and stopped.steps_done == 3
    state = load_checkpoint(out / CHECKPOINT)  # weights only, numpy's RNG state included
    assert state["numpy_rng"][1].dtype.name == "uint32" and state["global_step"] == 3

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    torch.save({**state, "model": {"conv.weight": torch.zeros(1)}}, foreign / CHECKPOINT)
    with _refused(r"does not fit this run \(.*\); resume with the train config and dataset it was trained with, "
                  r"or delete .* to start over"):
        train(tiny_dataset, foreign, FAST, seed=2)

    done = train(tiny_dataset, out, FAST, seed=2)
    assert done.finished and done.steps_done == 8
    assert load_checkpoint(out / CHECKPOINT)["global_step"] == 8


def test_the_cli_reports_a_refused_checkpoint_with_exit_2(tiny_dataset, tmp_path, capsys):
    from tagmill.jobs.cli import main

    planted = _plant(tmp_path / "out" / CHECKPOINT, tmp_path / "marker", "zip")
    code = main(["-q", "train", "--manifest", str(tiny_dataset), "--out", str(tmp_path / "out"),
                 "--set", 'train.arch="resnet18"', "--set", "train.image_size=32", "--set", "train.num_workers=0"])
    assert code == 2 and not (tmp_path / "marker").exists()
    assert f"delete {planted} to start over" in capsys.readouterr().err
