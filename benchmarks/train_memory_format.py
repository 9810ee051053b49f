"""Benchmark: the trainer's step and inference time with the weights channels-last (train.channels_last, the
default) against channels-first, in the same run, as a ratio.

The demo's settings (tagmill.jobs.demo.DEMO_OVERRIDES): ResNet-18, 64 px, batch 64, AdamW, the asymmetric
loss, on random images and labels; each variant times `--steps` optimizer steps after two warm-up steps, and
`--steps` forward passes without gradients (the validation, prototype and image-pass passes), the variants
taking turns `--rounds` times so that a slow spell of the machine falls on both. Prints the median seconds
per step of each and the ratio channels-first / channels-last (above 1: channels-last is faster).

    python benchmarks/train_memory_format.py [--arch resnet18] [--image-size 64] [--steps 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tagmill.trainer.backbones import build_model
from tagmill.trainer.losses import build_loss

CLASSES = 168
"""About the demo market's class count."""


def seconds_per_step(arch: str, image_size: int, batch: int, steps: int, channels_last: bool,
                     train: bool) -> float:
    """Median seconds of one training step (train=True) or one forward pass without gradients."""
    torch.manual_seed(0)
    model = build_model(arch, CLASSES, "max")
    model.to(memory_format=torch.channels_last if channels_last else torch.preserve_format)
    images = torch.randn(batch, 3, image_size, image_size)
    targets = (torch.rand(batch, CLASSES) < 0.01).float()
    loss_fn = build_loss("asl", gamma_neg=4.0, gamma_pos=0.0, clip=0.05, sampling_ratio=0.8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.05)
    model.train(train)
    times = []
    for step in range(steps + 2):  # two warm-up steps: the first calls pick their kernels
        started = time.perf_counter()
        if train:
            logits, _ = model(images)
            loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad():
                model(images)
        if step >= 2:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.arch}, {args.image_size} px, batch {args.batch}, {torch.get_num_threads()} threads; "
          f"median seconds per step over {args.rounds} rounds of {args.steps}")
    for train, name in ((True, "training step"), (False, "forward pass")):
        runs = {False: [], True: []}
        for _ in range(args.rounds):
            for channels_last in (False, True):
                runs[channels_last].append(seconds_per_step(args.arch, args.image_size, args.batch, args.steps,
                                                            channels_last, train))
        first, last = statistics.median(runs[False]), statistics.median(runs[True])
        print(f"{name}: channels-first {first:.3f} s, channels-last {last:.3f} s, ratio {first / last:.2f}")


if __name__ == "__main__":
    main()
