"""SICoT co-training in `tagmill train`: titles train through the semantic stream, the export is the image model.

Datasets come from tagmill.demo.titled (the project's own writer, `title_ids` in every sample that has a title,
the word vectors of labeling.word_vectors in word_vectors/).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tagmill.config import TrainConfig
from tagmill.demo.images import design_signatures, draw_image
from tagmill.demo.titled import (LONG_TAIL_TRAIN, NOISE_WORDS, LongTail, long_tail_set, publish_titled,
                                 title_vectors, titled_rows)
from tagmill.demo.vocabulary import build_leaves
from tagmill.trainer.predict import images_in_dataset, predict
from tagmill.trainer.reader import (TITLE_MAX_LEN, DatasetError, collate_titles, load_dataset_word_vectors,
                                    read_manifest)
from tagmill.trainer.side_info import SemanticStream
from tagmill.trainer.train import CHECKPOINT, EXPORT, epoch_report, load_checkpoint, train
from tagmill.trainer.transforms import decode_sample_with_title

FAST = TrainConfig(arch="resnet18", image_size=32, epochs=1, freeze_epochs=0, batch_size=16, optimizer="adamw",
                   lr=0.003, weight_decay=0.01, num_workers=0, head_tail_boundary=10, shuffle_buffer=32)


def _with(cfg: TrainConfig, **changes) -> TrainConfig:
    return cfg.__class__(**{**cfg.__dict__, **changes})


@pytest.fixture(scope="module")
def titled_dataset(tmp_path_factory):
    """4 demo leaves x (16 train, 6 validation) images of 32 px; every 5th sample has no title."""
    leaves = build_leaves()
    picked = leaves[:: len(leaves) // 4][:4]
    signatures = design_signatures(leaves, seed=7)
    names = [f"leaf{c}" for c in range(4)]
    vectors = title_vectors(names, seed=1)
    rows = titled_rows([signatures[leaf.index] for leaf in picked], names, [(16, 6)] * 4, 32, 7, vectors.index(),
                       untitled_every=5)
    return publish_titled(tmp_path_factory.mktemp("titled") / "dataset", rows, names, vectors)


@pytest.fixture(scope="module")
def side_and_baseline(titled_dataset, tmp_path_factory):
    side = tmp_path_factory.mktemp("side")
    base = tmp_path_factory.mktemp("base")
    return (train(titled_dataset, side, _with(FAST, side_info_weight=1.0), seed=3), side,
            train(titled_dataset, base, FAST, seed=3), base)


def test_cotrained_model_exports_the_image_model_and_predicts_without_titles(side_and_baseline, titled_dataset):
    side_result, side, base_result, base = side_and_baseline
    assert side_result.finished and (side / EXPORT).is_file()
    side_model, base_model = torch.jit.load(str(side / EXPORT)), torch.jit.load(str(base / EXPORT))
    assert side_model.code == base_model.code  # the same forward, scripted from the same class
    assert list(side_model.state_dict()) == list(base_model.state_dict())
    assert {k: v.shape for k, v in side_model.state_dict().items()} == {
        k: v.shape for k, v in base_model.state_dict().items()}
    assert not any("embedding." in k or "attention" in k or "projection" in k for k in side_model.state_dict())
    logits, embedding = side_model(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 4) and embedding.shape == (2, 512)
    assert json.loads((side / "model.json").read_text()) == json.loads((base / "model.json").read_text())

    rows = list(predict(side, images_in_dataset(titled_dataset, "validation"), top_k=2))
    assert len(rows) == 24 and all(r["error"] is None and len(r["top_ids"]) == 2 for r in rows)


def test_cotraining_logs_both_loss_terms_and_a_side_info_block(side_and_baseline):
    side_result, side, _, base = side_and_baseline
    lines = [json.loads(line) for line in (side / "losses.jsonl").read_text().splitlines()]
    assert lines and all({"visual", "mixed"} <= set(line) for line in lines)
    assert all(line["loss"] == pytest.approx(line["visual"] + 1.0 * line["mixed"], rel=1e-5) for line in lines)
    report = epoch_report(side, 1)
    block = report["side_info"]
    assert block["weight"] == 1.0 and block["vocabulary_size"] == 4 + len(NOISE_WORDS) + 2
    assert block["exported"] is False
    assert block["history"] == [{"epoch": 1, "train_loss_visual": report["train_loss_visual"],
                                 "train_loss_mixed": report["train_loss_mixed"],
                                 "semantic_share": report["semantic_share"]}]
    assert 0 < report["semantic_share"] < 1
    assert report["train_loss_mixed"] == pytest.approx(np.mean([line["mixed"] for line in lines]))
    # 64 train samples, every 5th without a title: 51 with one (each shown once: repeats 1)
    assert (block["train_samples"], block["train_samples_with_title"]) == (64, 51)
    assert side_result.metrics["rows"] == 24  # validation is image-only, as inference
    base_report = epoch_report(base, 1)
    assert "side_info" not in base_report and "train_loss_mixed" not in base_report
    base_line = json.loads((base / "losses.jsonl").read_text().splitlines()[0])
    assert set(base_line) == {"epoch", "step", "loss", "lr", "frozen"}
    assert "side_info" not in load_checkpoint(base / CHECKPOINT)


def test_resume_restores_the_stream_exactly(titled_dataset, tmp_path):
    cfg = _with(FAST, epochs=2, side_info_weight=0.5, loss="sampled_softmax", sampling_ratio=0.5)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(titled_dataset, whole, cfg, seed=5)
    stopped = train(titled_dataset, parts, _with(cfg, max_steps=3), seed=5)
    assert not stopped.finished and stopped.steps_done == 3  # mid-epoch: 4 steps per epoch
    done = train(titled_dataset, parts, cfg, seed=5)
    assert done.finished

    def log(out):
        return [(r["step"], r["loss"], r["visual"], r["mixed"]) for r in
                map(json.loads, (out / "losses.jsonl").read_text().splitlines())]

    assert log(parts) == log(whole) and len(log(whole)) == 8
    a = load_checkpoint(whole / CHECKPOINT)["side_info"]
    b = load_checkpoint(parts / CHECKPOINT)["side_info"]
    assert list(a["stream"]) == ["embedding.weight", "attention.weight", "projection.weight", "projection.bias"]
    assert all(torch.equal(a["stream"][k], b["stream"][k]) for k in a["stream"])
    assert [h["epoch"] for h in b["history"]] == [1, 2]
    # the stream did learn: its embeddings moved away from the word vectors it started from
    start = load_dataset_word_vectors(read_manifest(titled_dataset)).vectors
    assert not np.allclose(a["stream"]["embedding.weight"].numpy(), start)
    assert np.array_equal(a["stream"]["embedding.weight"][0].numpy(), np.zeros(start.shape[1]))  # padding row


def test_a_frozen_backbone_epoch_still_trains_the_stream(titled_dataset, tmp_path):
    cfg = _with(FAST, epochs=2, freeze_epochs=1, max_steps=1, side_info_weight=1.0)
    out = tmp_path / "frozen"
    train(titled_dataset, out, cfg, seed=11)
    first = load_checkpoint(out / CHECKPOINT)
    train(titled_dataset, out, cfg, seed=11)
    second = load_checkpoint(out / CHECKPOINT)
    assert {k for k in first["model"] if not torch.equal(first["model"][k], second["model"][k])} == {
        "fc.weight", "fc.bias"}
    stream_a, stream_b = first["side_info"]["stream"], second["side_info"]["stream"]
    assert {k for k in stream_a if not torch.equal(stream_a[k], stream_b[k])} == set(stream_a)


def test_side_info_without_word_vectors_is_refused_clearly(tiny_dataset, tmp_path):
    with pytest.raises(DatasetError, match=r"no word vectors.*side_info\.enabled"):
        train(tiny_dataset, tmp_path / "out", _with(FAST, side_info_weight=1.0), seed=0)
    assert not (tmp_path / "out" / CHECKPOINT).exists()


def test_word_vectors_that_differ_from_the_manifest_fail_naming_the_file(titled_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(Path(titled_dataset).parent, copy)
    vectors = copy / "word_vectors" / "vectors.npy"
    original = vectors.read_bytes()
    vectors.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    with pytest.raises(DatasetError, match=r"vectors\.npy: sha256 mismatch"):
        train(copy / "manifest.json", tmp_path / "out", _with(FAST, side_info_weight=1.0), seed=0)
    vectors.write_bytes(original)
    (copy / "word_vectors" / "vocabulary.txt").unlink()
    with pytest.raises(DatasetError, match=r"vocabulary\.txt: missing"):
        load_dataset_word_vectors(read_manifest(copy))
    # an image-only run does not read the word vectors at all
    assert train(copy / "manifest.json", tmp_path / "images", _with(FAST, max_steps=1), seed=0).steps_done == 1


def test_resuming_across_a_side_info_switch_is_refused(titled_dataset, tmp_path):
    train(titled_dataset, tmp_path, _with(FAST, max_steps=1), seed=0)
    with pytest.raises(ValueError, match="trained without titles"):
        train(titled_dataset, tmp_path, _with(FAST, max_steps=1, side_info_weight=1.0), seed=0)


def test_collate_titles_pads_to_the_longest_title_capped():
    image = torch.zeros(3, 2, 2)
    samples = [{"image": image, "target": torch.zeros(2), "key": "a", "title_ids": [4, 5, 6]},
               {"image": image, "target": torch.zeros(2), "key": "b", "title_ids": []}]
    batch = collate_titles(samples)
    assert batch["key"] == ["a", "b"] and batch["image"].shape == (2, 3, 2, 2)
    assert batch["title_ids"].tolist() == [[4, 5, 6], [0, 0, 0]]
    assert collate_titles(samples[1:])["title_ids"].tolist() == [[0]]
    long = [{**samples[0], "title_ids": list(range(2, 2 + TITLE_MAX_LEN + 5))}]
    assert collate_titles(long)["title_ids"].tolist() == [list(range(2, 2 + TITLE_MAX_LEN))]


def test_decode_with_title_checks_the_ids_against_the_vocabulary():
    leaves = build_leaves()
    jpg = draw_image(design_signatures(leaves, seed=7)[0], 32, 7, 0)
    meta = {"key": "k1", "class_ids": [1], "title_ids": [2, 3]}
    sample = decode_sample_with_title(jpg, meta, None, num_classes=2, image_size=16, train=False, vocab_size=4)
    assert sample["title_ids"] == [2, 3] and sample["key"] == "k1" and sample["image"].shape == (3, 16, 16)
    no_title = decode_sample_with_title(jpg, {"key": "k2", "class_ids": [0]}, None, num_classes=2, image_size=16,
                                        train=False, vocab_size=4)
    assert no_title["title_ids"] == []
    with pytest.raises(ValueError, match=r"sample k1: \"title_ids\" must be .* 0\.\.2"):
        decode_sample_with_title(jpg, meta, None, num_classes=2, image_size=16, train=False, vocab_size=3)


def test_stream_built_from_dataset_vectors_matches_the_feature_dim(titled_dataset):
    vectors = load_dataset_word_vectors(read_manifest(titled_dataset))
    stream = SemanticStream(vectors.vectors, feature_dim=512)
    semantic, attention = stream(torch.tensor([[2, 3, 0]]))
    assert semantic.shape == (1, 512) and attention[0, 2] == 0


# ---- tail classes: few images, titles that name them ----

TAIL_SEED = 0
SHAPE = LongTail()
"""6 head classes of 30 training images, 6 tail classes of 3, 10 validation images per class (32 px)."""


def test_cotraining_keeps_the_head_and_reports_head_and_tail_top1(tmp_path, capsys):
    # LONG_TAIL_TRAIN runs until the image-only model has converged on the head. On this data co-training
    # does not lift the tail (seeds 0-19: image-only 0.578, co-trained 0.537 mean tail top-1, standard error
    # of the paired gain 0.027, measured by `benchmarks/side_info.py --tail-seeds 20`; SICoT reports +2 to
    # +4.6 points at scale, from an ImageNet-pretrained ResNet-50): the test holds what must not regress (the
    # head is kept, both runs learn the tail) and prints both numbers.
    manifest = long_tail_set(tmp_path / "tail", TAIL_SEED, SHAPE)
    cfg = LONG_TAIL_TRAIN
    base = train(manifest, tmp_path / "base", cfg, seed=TAIL_SEED).metrics["head_tail"]
    side = train(manifest, tmp_path / "side", _with(cfg, side_info_weight=1.0), seed=TAIL_SEED)
    share = epoch_report(tmp_path / "side", cfg.epochs)["semantic_share"]
    side = side.metrics["head_tail"]
    with capsys.disabled():
        print(f"\ntail top-1 (seed {TAIL_SEED}, {SHAPE.describe()}, resnet18, {cfg.epochs} epochs): image-only "
              f"{base['tail']['top_k']['1']:.3f}, co-trained {side['tail']['top_k']['1']:.3f}; head top-1 "
              f"{base['head']['top_k']['1']:.3f} / {side['head']['top_k']['1']:.3f}; semantic share {share:.3f}")
    assert base["tail"]["rows"] == side["tail"]["rows"] == SHAPE.tails * SHAPE.validation
    # the head is kept: co-training loses at most one of its validation images
    assert side["head"]["top_k"]["1"] >= base["head"]["top_k"]["1"] - 1 / (SHAPE.heads * SHAPE.validation)
    chance = 1 / (SHAPE.heads + SHAPE.tails)
    assert min(base["tail"]["top_k"]["1"], side["tail"]["top_k"]["1"]) > 2 * chance
