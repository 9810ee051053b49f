"""Shards: write N generated samples, read them back through tagmill's loader and through the `webdataset`
package's loader with the same decoding; then the trainer's images/s against a bare loop of the same model
on in-memory tensors (what the input pipeline costs); then the validation gate's share of a build.

    .venv/bin/python benchmarks/shards.py [--samples 20000] [--workers 2] [--build-config demo-out/tagmill.toml]

Everything runs on this machine in this run; figures are printed as ratios. The gate's share is read from
the run summaries of the build at --build-config (run `make demo` first), or skipped when there is none.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from tagmill.config import TrainConfig
from tagmill.dataset.publish import finish_publish, start_publish
from tagmill.dataset.shards import ImageOptions, write_shards
from tagmill.demo.images import design_signatures, draw_image
from tagmill.demo.titled import sample_record
from tagmill.demo.vocabulary import build_leaves
from tagmill.trainer.backbones import build_model
from tagmill.trainer.losses import build_loss
from tagmill.trainer.reader import ShardStream, decode_sample, make_loader, read_manifest
from tagmill.trainer.train import epoch_report, train

IMAGE_SIZE = 64
BATCH = 64


def generate(folder: Path, n: int, side: int) -> tuple[Path, float]:
    """Publish n samples of demo-generator images (side px) in shards of 1000; returns (manifest, seconds)."""
    leaves = build_leaves()
    signatures = design_signatures(leaves, seed=7)
    pool = {i: draw_image(signatures[i % len(leaves)], side, 7, i) for i in range(500)}  # distinct drawings
    samples = [sample_record(f"{i:020x}", i % len(leaves), leaves[i % len(leaves)].name_en, "train", f"p{i}", "t",
                             image_path=str(i % len(pool))) for i in range(n)]
    start_publish(str(folder))
    started = time.perf_counter()
    shards = [{**r, "split": "train", "shard": f"shards/{r['shard']}"} for r in write_shards(
        samples, "train-00000", lambda name: open(folder / "_staging" / "shards" / name, "wb"),
        lambda path: pool[int(path)], ImageOptions(max_side=0), 1000, 1 << 30)]
    seconds = time.perf_counter() - started
    classes = [{"class_id": i, "name": leaf.name_en, "path": [], "taxonomy_id": None, "support_train": 1,
                "support_validation": 0, "support_test": 0} for i, leaf in enumerate(leaves)]
    finish_publish(str(folder), shards, classes, {"dataset": "bench", "tagmill_version": "bench",
                                                   "config_sha256": "0" * 64, "image": {"max_side": 0}})
    return folder / "manifest.json", seconds


def _wds_decode(sample: dict, num_classes: int) -> dict:
    return decode_sample(sample["jpg"], json.loads(sample["json"]), None, num_classes=num_classes,
                         image_size=IMAGE_SIZE, train=False)


def read_tagmill(manifest_path: Path, workers: int) -> tuple[int, float]:
    manifest = read_manifest(manifest_path)
    stream = ShardStream(manifest.shards, num_classes=manifest.num_classes, seed=1, batch_size=BATCH,
                         num_workers=workers, shuffle_buffer=0, use_repeats=False, augment=False,
                         decode=functools.partial(decode_sample, num_classes=manifest.num_classes,
                                                  image_size=IMAGE_SIZE, train=False))
    return _drain(make_loader(stream))


def read_webdataset(manifest_path: Path, workers: int) -> tuple[int, float]:
    import webdataset as wds

    manifest = read_manifest(manifest_path)
    urls = [str(s.path) for s in manifest.shards]
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False).map(
        functools.partial(_wds_decode, num_classes=manifest.num_classes))
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=workers)
    return _drain(loader)


def _drain(loader) -> tuple[int, float]:
    started, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch["key"])
    return n, time.perf_counter() - started


def trainer_vs_bare_loop(manifest_path: Path, workers: int, folder: Path) -> tuple[float, float]:
    """(trainer images/s over one epoch, bare loop images/s) for ResNet-18 at 64 px, batch 64, CPU."""
    cfg = TrainConfig(arch="resnet18", image_size=IMAGE_SIZE, epochs=1, freeze_epochs=0, batch_size=BATCH,
                      optimizer="adamw", lr=0.001, num_workers=workers, use_repeats=False)
    train(manifest_path, folder / "model", cfg, seed=1)
    report = epoch_report(folder / "model", 1)
    trainer_rate = report["train_images_per_second"]

    manifest = read_manifest(manifest_path)
    model = build_model(cfg.arch, manifest.num_classes, cfg.pooling)
    loss_fn = build_loss(cfg.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    images = torch.randn(BATCH, 3, IMAGE_SIZE, IMAGE_SIZE)
    targets = torch.zeros(BATCH, manifest.num_classes)
    targets[:, 0] = 1
    model.train()
    steps = 40
    started = time.perf_counter()
    for _ in range(steps):
        logits, _ = model(images)
        loss = loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return trainer_rate, steps * BATCH / (time.perf_counter() - started)


def gate_share(build_config: Path) -> str:
    from tagmill.config import load_config
    from tagmill.jobs.shards import gate_report_path

    if not build_config.is_file():
        return f"gate share: skipped (no build at {build_config}; run `make demo` first)"
    cfg = load_config(build_config)
    runs = Path(cfg.outputs.root)
    date = cfg.run.run_date().isoformat()
    seconds = {}
    for stage in ("mine-logs", "taxonomy", "assemble", "shards"):
        path = runs / stage / "_runs" / f"run_date={date}" / "summary.json"
        if not path.is_file():
            return f"gate share: skipped (no {stage} summary at {path})"
        seconds[stage] = json.loads(path.read_text())["seconds"]
    gate = json.loads(Path(gate_report_path(cfg)).read_text())
    build = sum(seconds.values())
    return (f"gate: {gate['seconds']:.1f} s, {gate['spark_jobs']} Spark jobs, {gate['expectations']} expectations "
            f"in {gate['suites']} suites; build {build:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in seconds.items())})"
            f" -> gate share {gate['seconds'] / build:.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--side", type=int, default=96, help="side of the generated images in pixels")
    parser.add_argument("--build-config", type=Path, default=Path("demo-out/tagmill.toml"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tagmill-bench-") as tmp:
        folder = Path(tmp)
        manifest, write_s = generate(folder / "dataset", args.samples, args.side)
        print(f"wrote {args.samples:,} samples in {write_s:.1f} s ({args.samples / write_s:,.0f} samples/s)")
        # the trainer first: it measures best on a machine no earlier loader has touched
        small, _ = generate(folder / "train-set", min(args.samples, 4096), args.side)
        trainer_rate, bare_rate = trainer_vs_bare_loop(small, args.workers, folder)
        print(f"trainer {trainer_rate:,.0f} images/s vs bare loop on in-memory tensors {bare_rate:,.0f} images/s "
              f"(ResNet-18, {IMAGE_SIZE} px, batch {BATCH}): input pipeline costs "
              f"{1 - trainer_rate / bare_rate:.1%} of the throughput")
        rates = {"tagmill": 0.0, "webdataset": 0.0}
        for _ in range(2):  # best of two rounds, alternating, so neither reader always runs on a cold cache
            for name, reader in (("tagmill", read_tagmill), ("webdataset", read_webdataset)):
                n, seconds = reader(manifest, args.workers)
                assert n == args.samples, f"{name} read {n} samples, expected {args.samples}"
                rates[name] = max(rates[name], n / seconds)
        print(f"{'reader':<12}{'samples/s':>12}   (decode to {IMAGE_SIZE} px tensors, batch {BATCH}, "
              f"{args.workers} workers, best of 2)")
        for name, rate in rates.items():
            print(f"{name:<12}{rate:>12,.0f}")
        print(f"ratio tagmill / webdataset: {rates['tagmill'] / rates['webdataset']:.2f}x (target >= 1.00)")
    print(gate_share(args.build_config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
