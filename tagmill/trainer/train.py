"""`tagmill train`: a published dataset in, a trained model, per-epoch metrics and a TorchScript export out.

Recipes of the source documents: sigmoid head + Asymmetric Loss and global max pooling (58.com), the
randomized softmax for large label spaces (MSURU 3.4), freeze the backbone then unfreeze (OLX), cosine
learning rate with warm-up and SGD with Nesterov momentum (MSURU 3.3), square-root resampling through the
samples' repeat factors (MSURU 5.4). A checkpoint holds everything a resumed run needs to continue exactly
where it stopped: model, optimizer, scheduler, epoch, step, RNG state and the loader position. It is read
back with `torch.load(weights_only=True)` and the few numpy types of CHECKPOINT_GLOBALS only, so a file
planted in the output folder cannot run code; one that is not ours is refused with a CheckpointError.

SICoT co-training (train.side_info_weight = lambda > 0): the titles' semantic stream (trainer.side_info)
is built next to the image model, never inside it, from the dataset's word vectors; each step's loss is
L(fc(visual)) + lambda * L(fc(max(visual, semantic))) with the model's own `fc` as the one shared classifier
and L the configured loss (with sampled_softmax each term draws its own candidate sets from the same RNG).
The stream is in the optimizer (no weight decay on the word embeddings), stays trainable while the backbone
is frozen, and is saved in and restored from the checkpoint; it is never exported. Validation, the export
and inference see images only, through exactly the code of a run without titles.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import os
import random
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tagmill.config import TrainConfig
from tagmill.manifest import CLASS_INDEX
from tagmill.trainer.backbones import CHECKPOINT_GLOBALS, build_model, load_init_weights, set_backbone_trainable
from tagmill.trainer.losses import build_loss, scores_from_logits
from tagmill.trainer.metrics import evaluate
from tagmill.trainer.prototypes import (TEMPERATURES, fit_temperature, prototype_sums, prototypes_of,
                                        temperature_losses)
from tagmill.trainer.side_info import SemanticStream, cotraining_loss, title_present
from tagmill.trainer.transforms import MEAN, STD, decode_sample_with_title
from tagmill.trainer.reader import (Manifest, ShardStream, check_shards, collate_titles, decode_sample,
                                    load_dataset_word_vectors, make_loader, read_manifest)

log = logging.getLogger("tagmill.train")

CHECKPOINT = "checkpoint.pt"
EXPORT = "model.ts"
EXPORT_INFO = "model.json"
TRAINED_IMAGES = "trained_images.txt"
"""The keys of the samples the model trained on, one per line: an image pass with this model as its teacher
tags none of them (a model is overconfident on its own training images)."""
PROTOTYPES = "prototypes.npy"
"""float32 (classes, D): the classes' prototypes in the model's embedding (trainer.prototypes)."""
EXPORT_LABELS = "labels.csv"
"""The classes as `LabelName,DisplayName` rows (`tagmill:<class id>`, name): the Open Images vocabulary format."""
CHECKPOINT_KEYS = frozenset({"model", "optimizer", "scheduler", "epoch", "step_in_epoch", "global_step",
                             "torch_rng", "numpy_rng", "python_rng", "cuda_rng", "arch"})
"""The keys every checkpoint _save writes (a co-trained one also has "side_info")."""
SIDE_INFO_TERMS = {"visual": "train_loss_visual", "mixed": "train_loss_mixed", "semantic_share": "semantic_share"}
"""cotraining_loss's per-step terms -> their epoch means' names in the metrics' side_info history."""


class CheckpointError(ValueError):
    """OUT/checkpoint.pt is not a checkpoint this run can resume from; the message names the file and the fix."""


def _head_rows(init_weights: str, classes: list[dict]) -> list[int] | None:
    """For initial weights from a `tagmill train` model folder (its checkpoint.pt or a state dict, classes.json
    beside it; e.g. the demo's final model starts from its teacher): the row of that model's head each of
    `classes` takes, by name (-1: a class it did not have). None for any other file."""
    file = Path(init_weights).parent / CLASS_INDEX
    if not file.is_file():
        return None
    try:
        theirs = {c["name"]: int(c["id"]) for c in json.loads(file.read_text(encoding="utf-8"))["classes"]}
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{file}: not the class index of a `tagmill train` model ({type(err).__name__}: {err}); "
                         f"train.init_weights {init_weights} is taken for a model of ours because it lies beside "
                         "it: move the weights file elsewhere or fix the index") from None
    return [theirs.get(c["name"], -1) for c in classes]


def load_checkpoint(path: str | Path) -> dict:
    """The state _save wrote to `path`, loaded weights only (nothing in the file runs). CheckpointError for
    a file that does not load that way (a pickle of other objects, planted code, a damaged file) or lacks
    CHECKPOINT_KEYS (another program's state dict)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - the weights-only unpickler refuses with several error types
        raise _not_ours(path, f"it does not load as weights only: {_refusal(err)}") from None
    if not isinstance(state, dict):
        raise _not_ours(path, f"a {type(state).__name__}, not a dict")
    missing = sorted(CHECKPOINT_KEYS - set(state))
    if missing:
        raise _not_ours(path, f"no {', '.join(repr(k) for k in missing)}")
    return state


def _refusal(err: Exception) -> str:
    """What torch refused, without its advice to retry with weights_only=False (that would run the file)."""
    named = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    return f"it names {named.group(1)}, which no checkpoint of ours holds" if named else type(err).__name__


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def _not_ours(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a `tagmill train` checkpoint ({why}); {_start_over(path)}")


def _start_over(path: Path) -> str:
    return f"delete {path} to start over, or pass another --out"


def epoch_report(out_dir: str | Path, epoch: int) -> dict:
    """The report `train` wrote into out_dir at the end of epoch `epoch` (1-based): losses, throughput, the
    validation metrics and their chance levels, and the side-info terms when co-training."""
    return json.loads(_epoch_report_path(Path(out_dir), epoch).read_text())


def _epoch_report_path(out: Path, epoch: int) -> Path:
    return out / "metrics" / f"epoch-{epoch:03d}.json"


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    epochs_done: int
    steps_done: int
    finished: bool
    """False when the run stopped at train.max_steps; running it again resumes."""
    metrics: dict
    """The last epoch's validation metrics (empty when no epoch ended in this run)."""
    chance: dict
    """The same metrics for random scores and embeddings on the same validation rows."""


def train(manifest_path: str | Path, out_dir: str | Path, cfg: TrainConfig, seed: int,
          held_out: frozenset[str] = frozenset(), stop_after_epoch: int = 0) -> TrainResult:
    """Train on the manifest's train split but the samples keyed in `held_out` (a fold model's, trainer.folds),
    evaluate on its validation split after the last epoch and every cfg.validate_every-th (an epoch not validated
    has empty "validation" metrics). stop_after_epoch > 0 stops after that epoch as max_steps does (checkpointed,
    not exported; a cold-start fold trunk).

    Resumes from OUT/checkpoint.pt when it exists (same data order, same augmentations, same RNG: the loss
    curve continues as if never interrupted). Writes OUT/losses.jsonl (one line per step),
    OUT/metrics/epoch-NNN.json, OUT/checkpoint.pt and, at the end, OUT/model.ts + model.json + classes.json
    + labels.csv + prototypes.npy + trained_images.txt.
    cfg.side_info_weight > 0 co-trains with the titles (module docstring): the dataset must have word vectors
    (DatasetError otherwise); losses.jsonl lines and epoch metrics then also hold the visual and mixed loss
    terms, and each epoch's metrics a "side_info" block. The outputs' model is the image model alone.
    Started by torchrun, each process trains on its rank's share (DistributedDataParallel; every rank gets the
    same number of batches however the shards divide) and only rank 0 validates and writes.
    """
    out = Path(out_dir)
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    rank, world, device = _process_group(cfg)
    main = rank == 0  # only the first process writes logs, metrics, checkpoints and the export
    manifest = read_manifest(manifest_path)
    shards, bad = check_shards(manifest.shards, cfg.on_bad_shard)
    for b in bad:
        log.warning("skipping shard %s: %s", b["path"], b["problem"])
    train_shards = [s for s in shards if s.split == "train"]
    val_shards = [s for s in shards if s.split == "validation"]
    if not train_shards:
        raise ValueError(f"{manifest.root}: no usable train shards; nothing to train on")
    side_info = cfg.side_info_weight > 0
    word_vectors = load_dataset_word_vectors(manifest) if side_info else None  # checked before any work

    torch.manual_seed(seed)
    model = build_model(cfg.arch, manifest.num_classes, cfg.pooling)
    if cfg.init_weights:
        report = load_init_weights(model, cfg.init_weights, _head_rows(cfg.init_weights, manifest.classes))
        log.info("initial weights from %s: %d tensors loaded, skipped %s, head rows of %s classes carried over",
                 cfg.init_weights, report["loaded"], report["skipped"], report.get("carried_classes", "no"))
    model.to(device)
    # Built after the model, so the image model starts from the same weights as a run without titles.
    semantic = (SemanticStream(word_vectors.vectors, feature_dim=model.embedding_dim,
                               nonlinearity=cfg.side_info_nonlinearity).to(device) if side_info else None)
    loss_fn = build_loss(cfg.loss, gamma_neg=cfg.asl_gamma_neg, gamma_pos=cfg.asl_gamma_pos, clip=cfg.asl_clip,
                         sampling_ratio=cfg.sampling_ratio)
    if side_info:
        decode = functools.partial(decode_sample_with_title, num_classes=manifest.num_classes,
                                   image_size=cfg.image_size, train=True, vocab_size=semantic.vocab_size)
    else:
        decode = functools.partial(decode_sample, num_classes=manifest.num_classes, image_size=cfg.image_size,
                                   train=True)
    stream = ShardStream(train_shards, num_classes=manifest.num_classes, decode=decode,
                         seed=seed, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                         shuffle_buffer=cfg.shuffle_buffer, use_repeats=cfg.use_repeats, rank=rank, world_size=world,
                         held_out=held_out)
    steps_per_epoch = stream.batches_per_epoch()
    optimizer = _optimizer(model, cfg, semantic)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(warmup_cosine, warmup=round(cfg.warmup_epochs * steps_per_epoch),
                                     total=cfg.epochs * steps_per_epoch))

    epoch, step_in_epoch, global_step, history = 0, 0, 0, []
    if (out / CHECKPOINT).exists():
        epoch, step_in_epoch, global_step, history = _restore(out / CHECKPOINT, model, optimizer, scheduler, semantic)
        # the schedule goes on from the same share of the run: the same step on a plain resume; where a fold model
        # continues its trunk's checkpoint on other samples (trainer.folds), an epoch there had another length
        scheduler.last_epoch = epoch * steps_per_epoch + step_in_epoch
        log.info("resuming at epoch %d, step %d of %d", epoch + 1, step_in_epoch, steps_per_epoch)
    chance = chance_metrics(manifest, val_shards, cfg, seed) if main else {}
    steps_this_run, metrics, validation = 0, {}, None
    while epoch < min(cfg.epochs, stop_after_epoch or cfg.epochs):
        frozen = epoch < cfg.freeze_epochs
        set_backbone_trainable(model, not frozen)  # frozen: only fc learns, BN statistics stay too (OLX)
        net = _distributed(model, world, device)  # re-wrapped per epoch: DDP syncs what is trainable now
        model.train()
        if side_info:  # the stream trains in every epoch, frozen backbone or not
            semantic_net = _distributed(semantic, world, device)
            semantic.train()
        stream.set_epoch(epoch)
        stream.resume_at(step_in_epoch)
        started, seen, losses, parts, titled = time.time(), 0, [], {term: [] for term in SIDE_INFO_TERMS}, 0
        collate = collate_titles if side_info else None
        with (out / "losses.jsonl").open("a", encoding="utf-8") if main else open(os.devnull, "w") as loss_log:
            for batch in make_loader(stream, collate):
                images, targets = batch["image"].to(device), batch["target"].to(device)
                if side_info:
                    _, visual = net(images)
                    has_title = title_present(batch["title_ids"])
                    titled += int(has_title.sum())  # counted on the host: no device sync
                    loss, terms = cotraining_loss(loss_fn, model.fc, visual,
                                                  semantic_net(batch["title_ids"].to(device))[0], targets,
                                                  cfg.side_info_weight, has_title=has_title.to(device))
                else:
                    logits, _ = net(images)
                    loss = loss_fn(logits, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step_in_epoch, global_step, steps_this_run = step_in_epoch + 1, global_step + 1, steps_this_run + 1
                seen += len(images)
                if side_info:  # the loss and its terms in one device sync
                    values = torch.stack([loss.detach(), *terms.values()]).tolist()
                    loss_value, terms = values[0], dict(zip(terms, values[1:]))
                    for name, value in terms.items():
                        parts[name].append(value)
                else:
                    loss_value, terms = loss.item(), {}
                losses.append(loss_value)
                line = {"epoch": epoch + 1, "step": global_step, "loss": loss_value,
                        "lr": scheduler.get_last_lr()[0], "frozen": frozen, **terms}
                loss_log.write(json.dumps(line) + "\n")
                if step_in_epoch % 50 == 0:
                    log.info("epoch %d step %d/%d loss %.4f (%.1f images/s)", epoch + 1, step_in_epoch,
                             steps_per_epoch, float(np.mean(losses[-50:])), seen / (time.time() - started))
                stop = cfg.max_steps and steps_this_run >= cfg.max_steps
                if main and (stop or (cfg.checkpoint_every and step_in_epoch % cfg.checkpoint_every == 0)):
                    _save(out / CHECKPOINT, model, optimizer, scheduler, epoch, step_in_epoch, global_step, cfg,
                          semantic, history)
                if stop and step_in_epoch < steps_per_epoch:
                    return TrainResult(out, epoch, global_step, False, metrics, chance)
        train_seconds = time.time() - started
        epoch, step_in_epoch = epoch + 1, 0
        if main:
            validated = epoch == cfg.epochs or bool(cfg.validate_every and epoch % cfg.validate_every == 0)
            metrics, validation = validate(model, manifest, val_shards, cfg, seed, device) if validated else ({}, None)
            report = {"epoch": epoch, "steps": global_step, "frozen_backbone": frozen, "ranks": world,
                      "train_loss": float(np.mean(losses)) if losses else None,
                      "train_images_per_second": world * seen / train_seconds if train_seconds > 0 else None,
                      "lr": scheduler.get_last_lr()[0], "skipped_shards": bad,
                      "validation": metrics, "chance": chance}
            if side_info:
                history.append({"epoch": epoch, **{name: float(np.mean(parts[term])) if parts[term] else None
                                                   for term, name in SIDE_INFO_TERMS.items()}})
                report.update(history[-1])
                report["side_info"] = {"weight": cfg.side_info_weight, "nonlinearity": cfg.side_info_nonlinearity,
                                       "vocabulary_size": semantic.vocab_size, "word_dim": semantic.word_dim,
                                       "train_samples_with_title": world * titled, "train_samples": world * seen,
                                       "history": history, "exported": False}
            _epoch_report_path(out, epoch).write_text(json.dumps(report, indent=2) + "\n")
            _save(out / CHECKPOINT, model, optimizer, scheduler, epoch, 0, global_step, cfg, semantic, history)
            if validated:
                log.info("epoch %d: train loss %s, validation mAP macro %s (chance %s)", epoch, report["train_loss"],
                         metrics.get("map_macro"), chance.get("map_macro"))
            else:
                log.info("epoch %d: train loss %s (not validated: train.validate_every = %d)", epoch,
                         report["train_loss"], cfg.validate_every)
        _barrier(world)  # the other processes wait while the first validates and checkpoints
        if cfg.max_steps and steps_this_run >= cfg.max_steps and epoch < cfg.epochs:
            return TrainResult(out, epoch, global_step, False, metrics, chance)
    if epoch < cfg.epochs:  # stopped after stop_after_epoch
        return TrainResult(out, epoch, global_step, False, metrics, chance)
    if main:
        export(model, manifest, out, cfg, _prototypes(model, manifest, train_shards, val_shards, out, cfg, seed,
                                                      device, held_out, validation) if cfg.prototypes else None)
        write_trained_images(manifest, out, held_out)
    return TrainResult(out, epoch, global_step, True, metrics, chance)


def _process_group(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Started by torchrun (WORLD_SIZE > 1), this is one process of several:
    the process group is joined and each rank reads its own equal share of the shards."""
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    device = torch.device(cfg.device)
    if world > 1:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _distributed(model: torch.nn.Module, world: int, device: torch.device) -> torch.nn.Module:
    if world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def predict_batches(model: torch.nn.Module, loader, loss: str, device: torch.device):
    """(keys, scores, embeddings, targets) over a loader, in eval mode without gradients."""
    model.eval()
    keys, scores, embeddings, targets = [], [], [], []
    with torch.no_grad():
        for batch in loader:
            logits, embedding = model(batch["image"].to(device))
            keys += list(batch["key"])
            scores.append(scores_from_logits(loss, logits).cpu().numpy())
            embeddings.append(embedding.cpu().numpy())
            targets.append(batch["target"].numpy())
    if not keys:
        return [], np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, 0))
    return keys, np.concatenate(scores), np.concatenate(embeddings), np.concatenate(targets)


def validate(model, manifest: Manifest, shards, cfg: TrainConfig, seed: int, device
             ) -> tuple[dict, tuple[np.ndarray, np.ndarray] | None]:
    """Every metric of trainer.metrics on the validation shards (each image once, no augmentation), and the
    (embeddings, targets) they came from (None without shards), which the prototype pass reuses."""
    if not shards:
        return {}, None
    loader = make_loader(_eval_stream(manifest, shards, cfg, seed))
    _, scores, embeddings, targets = predict_batches(model, loader, cfg.loss, device)
    return _evaluate(manifest, scores, targets, embeddings, cfg), (embeddings, targets)


def chance_metrics(manifest: Manifest, shards, cfg: TrainConfig, seed: int) -> dict:
    """The same metrics for scores and embeddings drawn at random: the level a model must clearly beat."""
    targets = []
    for batch in make_loader(_eval_stream(manifest, shards, cfg, seed, decode_images=False)):
        targets.append(batch["target"].numpy())
    if not targets:
        return {}
    targets = np.concatenate(targets)
    rng = np.random.default_rng(seed)
    return _evaluate(manifest, rng.random(targets.shape), targets, rng.standard_normal((len(targets), 64)), cfg)


def _evaluate(manifest: Manifest, scores, targets, embeddings, cfg: TrainConfig) -> dict:
    return evaluate(scores, targets, embeddings,
                    train_support=np.array([c["support"]["train"] for c in manifest.classes]),
                    class_paths=[list(c["path"]) for c in manifest.classes],
                    threshold=cfg.threshold, k=cfg.knn_k, boundary=cfg.head_tail_boundary)


def _targets_only(jpg: bytes, meta: dict, rng, *, num_classes: int) -> dict:
    target = torch.zeros(num_classes)
    target[list(meta["class_ids"])] = 1.0
    return {"image": torch.zeros(0), "target": target, "key": meta["key"]}


def _eval_stream(manifest: Manifest, shards, cfg: TrainConfig, seed: int, decode_images: bool = True,
                 held_out: frozenset[str] = frozenset()):
    decode = (functools.partial(decode_sample, num_classes=manifest.num_classes, image_size=cfg.image_size,
                                train=False) if decode_images
              else functools.partial(_targets_only, num_classes=manifest.num_classes))
    return ShardStream(shards, num_classes=manifest.num_classes, decode=decode, seed=seed,
                       batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers, shuffle_buffer=0,
                       use_repeats=False, augment=False, held_out=held_out)


def _optimizer(model: torch.nn.Module, cfg: TrainConfig, semantic: SemanticStream | None = None
               ) -> torch.optim.Optimizer:
    # Every parameter is in the optimizer from the start: a frozen one simply has no gradient, so the
    # optimizer state (and a checkpoint of it) has the same shape before and after unfreezing.
    # With a semantic stream its parameters are two more groups (same lr schedule): the word embeddings
    # without weight decay (it would shrink every word's pretrained vector at each step), the rest with it.
    params = model.parameters()
    if semantic is not None:
        params = [{"params": list(model.parameters())},
                  {"params": [semantic.embedding.weight], "weight_decay": 0.0},
                  {"params": [p for name, p in semantic.named_parameters() if not name.startswith("embedding.")]}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)


def _save(path: Path, model, optimizer, scheduler, epoch: int, step_in_epoch: int, global_step: int,
          cfg: TrainConfig, semantic: SemanticStream | None = None, history: list | None = None) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
             "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [], "arch": cfg.arch}
    if semantic is not None:  # an image-only checkpoint keeps exactly its old keys
        state["side_info"] = {"stream": semantic.state_dict(), "history": list(history or [])}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash while saving leaves the previous checkpoint intact


def _restore(path: Path, model, optimizer, scheduler, semantic: SemanticStream | None = None
             ) -> tuple[int, int, int, list]:
    """(epoch, step in epoch, global step, side-info loss history) after loading every state from `path`."""
    state = load_checkpoint(path)
    saved = state.get("side_info")
    if (saved is None) != (semantic is None):
        had, has = ("with", "without") if saved is not None else ("without", "with")
        raise CheckpointError(f"{path}: this checkpoint was trained {had} titles (side information) and this run "
                              f"is {has} them; resume with the same train.side_info_weight (0 or not), or train "
                              f"into a new output folder")
    try:
        model.load_state_dict(state["model"])
        if semantic is not None:
            semantic.load_state_dict(saved["stream"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:  # another architecture, class count, optimizer
        raise CheckpointError(f"{path}: does not fit this run ({_first_line(err)}); resume with the "
                              f"train config and dataset it was trained with, or {_start_over(path)}") from None
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    if state["cuda_rng"]:  # the sampled softmax draws on the device's generator when training on a GPU
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["epoch"], state["step_in_epoch"], state["global_step"], list(saved["history"] if saved else [])


def _prototypes(model: torch.nn.Module, manifest: Manifest, train_shards, val_shards, out: Path, cfg: TrainConfig,
                seed: int, device, held_out: frozenset[str] = frozenset(),
                validation: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """OUT/prototypes.npy, the classes' prototypes over the train split but `held_out` (each image once, eval
    view; a fold model's prototypes hold none of the images it is to tag), and their temperature fitted on the
    validation split (trainer.prototypes); returns model.json's entry. `validation`: this model's validation
    (embeddings, targets), when its last epoch's validation has them, else a pass makes them. The passes add up
    batch by batch: memory does not grow with the train split."""
    def batches(shards, held_out=frozenset()):
        model.eval()
        with torch.no_grad():
            for batch in make_loader(_eval_stream(manifest, shards, cfg, seed, held_out=held_out)):
                _, embedding = model(batch["image"].to(device))
                yield embedding.cpu().numpy(), batch["target"].numpy()

    sums = np.zeros((manifest.num_classes, model.embedding_dim))
    for embedding, targets in batches(train_shards, held_out):
        sums += prototype_sums(embedding, targets)
    prototypes = prototypes_of(sums)
    if validation is None:  # no validation to reuse: a pass of its own
        validation_batches = batches(val_shards) if val_shards else ()
    else:
        validation_batches = [validation]
    losses = np.zeros(len(TEMPERATURES))
    for embedding, targets in validation_batches:
        losses += temperature_losses(embedding, targets, prototypes)
    np.save(out / PROTOTYPES, prototypes)
    return {"temperature": fit_temperature(losses)}


def export(model: torch.nn.Module, manifest: Manifest, out: Path, cfg: TrainConfig, prototypes: dict | None = None
           ) -> Path:
    """TorchScript model (forward: images -> (logits, embedding)) with its class index (classes.json, and
    labels.csv for `tagmill image-pass --teacher`) and how to feed it (model.json; `prototypes`: the
    temperature of the class prototypes in prototypes.npy, which a teacher scores with, trainer.prototypes)."""
    model = model.cpu().eval()
    torch.jit.script(model).save(str(out / EXPORT))
    info = {"arch": cfg.arch, "pooling": cfg.pooling, "loss": cfg.loss,
            "scores": "softmax" if "softmax" in cfg.loss else "sigmoid", "image_size": cfg.image_size,
            "mean": MEAN, "std": STD, "num_classes": manifest.num_classes, "dataset": manifest.dataset,
            **({"prototypes": prototypes} if prototypes else {})}
    (out / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    (out / CLASS_INDEX).write_text(json.dumps({"classes": manifest.classes}, indent=2, ensure_ascii=False) + "\n")
    # The same classes as an Open Images style vocabulary, so the exported folder is directly a teacher.
    with (out / EXPORT_LABELS).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["LabelName", "DisplayName"])
        writer.writerows([f"tagmill:{c['id']}", c["name"]] for c in manifest.classes)
    return out / EXPORT


def export_average(folders: list[Path], manifest_path: str | Path, out: Path, cfg: TrainConfig, seed: int) -> Path:
    """OUT as a finished `tagmill train` output of the mean of the weights of the models in `folders` (their
    checkpoint.pt), which must share a start: the fine-tunes of one model average into one model that works as
    well as each or better (Wortsman et al. 2022, "model soups"). Cold-start fold models share their trunk
    (trainer.folds), and their mean has seen every training image. OUT gets checkpoint.pt (the weights and
    arch, a train.init_weights file), the export with prototypes over the whole train split, and
    trained_images.txt. Returns OUT."""
    states = [load_checkpoint(Path(f) / CHECKPOINT)["model"] for f in folders]
    mean = {k: sum(s[k] for s in states) / len(states) if v.is_floating_point() else v for k, v in states[0].items()}
    manifest = read_manifest(manifest_path)
    model = build_model(cfg.arch, manifest.num_classes, cfg.pooling)
    model.load_state_dict(mean)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": mean, "arch": cfg.arch}, out / CHECKPOINT)
    shards, _ = check_shards(manifest.shards, cfg.on_bad_shard)
    device = torch.device(cfg.device)
    model.to(device)
    export(model, manifest, out, cfg, _prototypes(model, manifest, [s for s in shards if s.split == "train"],
                                                  [s for s in shards if s.split == "validation"], out, cfg, seed,
                                                  device) if cfg.prototypes else None)
    write_trained_images(manifest, out)
    return out


def write_trained_images(manifest: Manifest, out: Path, held_out: frozenset[str] = frozenset()) -> Path:
    """OUT/trained_images.txt: the sample keys of the dataset's train split but `held_out`, one per line, sorted."""
    keys: set[str] = set()
    for shard in manifest.shards_for("train"):
        with tarfile.open(shard.path) as tar:
            keys.update(name.rsplit(".", 1)[0] for name in tar.getnames())
    (out / TRAINED_IMAGES).write_text("".join(f"{k}\n" for k in sorted(keys - held_out)), encoding="utf-8")
    return out / TRAINED_IMAGES
