"""SICoT side information: what the semantic stream costs the trainer, and what the word vectors cost the build.

    .venv/bin/python benchmarks/side_info.py [--steps 200] [--batch 32] [--size 64] [--titles 1000000]

1. training throughput (images/s, `train_images_per_second` of the epoch report) of `tagmill train` on one
   published dataset of steps x batch samples with titles, ResNet-18 at --size px on CPU, AdamW, 2 loader
   workers and 2 torch threads: once images only (train.side_info_weight 0) and once co-training with the
   titles' semantic stream (weight 1). Same data, model, seed and settings; only the weight differs.
2. Word2Vec (labeling.word_vectors.train_word_vectors: 64 dims, window 5, min_count 2, 5 epochs, one worker
   thread) on --titles English titles from the demo generator's `make_title`, tokenized by lower-casing
   and splitting at every non-alphanumeric character (`title_tokens`, with WordNet lemmas and noise phrases,
   is timed on a sample and its rate printed beside, when WordNet is installed).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from tagmill.config import TrainConfig
from tagmill.demo.catalog import make_title
from tagmill.demo.images import design_signatures, draw_image
from tagmill.demo.vocabulary import build_leaves
from tagmill.labeling.word_vectors import save_word_vectors, token_ids, train_word_vectors
from tagmill.trainer.reader import TITLE_MAX_LEN
from tagmill.trainer.train import train

_WORD = re.compile(r"[^\W_]+")


def simple_tokens(title: str) -> list[str]:
    """Lower case, split at every character that is not a letter or digit (no lemmas, no noise phrases)."""
    return _WORD.findall(title.lower())


def generate_titles(n: int, seed: int) -> tuple[list[str], list[int]]:
    """(n English demo titles, the leaf index of each), leaves drawn uniformly."""
    leaves = build_leaves()
    rnd = random.Random(seed)
    picks = [rnd.randrange(len(leaves)) for _ in range(n)]
    return [make_title(leaves[i], rnd, chinese=False) for i in picks], picks


def publish_titled_dataset(folder: Path, samples: int, size: int, seed: int) -> Path:
    """A train-only dataset of `samples` demo images (400 distinct drawings) with titles and word vectors."""
    from tagmill.dataset.publish import finish_publish, start_publish
    from tagmill.dataset.shards import ImageOptions, write_shards

    leaves = build_leaves()
    signatures = design_signatures(leaves, seed=7)
    titles, classes = generate_titles(samples, seed)
    tokens = [simple_tokens(t) for t in titles]
    vectors = train_word_vectors(tokens, dim=64, min_count=1, seed=seed)
    index = vectors.index()
    pool = {i: draw_image(signatures[i % len(leaves)], size, 7, i) for i in range(min(400, samples))}
    rows = [{"image_key": f"{i:020x}", "image_path": str(i % len(pool)), "product_id": f"p{i}", "title": titles[i],
             "split": "train", "class_ids": [classes[i]], "repeats": 1,
             "title_ids": token_ids(tokens[i], index, TITLE_MAX_LEN),
             "labels": [{"class_id": classes[i], "name": leaves[classes[i]].name_en, "confidence": 0.9,
                         "source": "search_log", "tier": "in_conversation", "clicks": 1, "contacts": 1,
                         "in_conversations": 1, "sessions": 1}]} for i in range(samples)]
    start_publish(str(folder))
    shards = [{**r, "split": "train", "shard": f"shards/{r['shard']}"} for r in write_shards(
        rows, "train-00000", lambda name: open(folder / "_staging" / "shards" / name, "wb"),
        lambda path: pool[int(path)], ImageOptions(max_side=0), 1000, 1 << 30)]
    index_rows = [{"class_id": i, "name": leaf.name_en, "path": [], "support_train": classes.count(i),
                   "support_validation": 0, "support_test": 0} for i, leaf in enumerate(leaves)]
    staged = folder.parent / "word-vectors"
    files = {Path(p).name: Path(p).read_bytes() for p in save_word_vectors(vectors, staged)}
    finish_publish(str(folder), shards, index_rows, {"dataset": "bench", "tagmill_version": "bench",
                                                     "config_sha256": "0" * 64, "image": {"max_side": 0}},
                   word_vectors=files)
    return folder / "manifest.json"


def training_throughput(manifest: Path, out: Path, size: int, batch: int, weight: float) -> float:
    cfg = TrainConfig(arch="resnet18", image_size=size, epochs=1, freeze_epochs=0, batch_size=batch,
                      optimizer="adamw", lr=0.001, num_workers=2, use_repeats=False, side_info_weight=weight)
    train(manifest, out, cfg, seed=1)
    return json.loads((out / "metrics" / "epoch-001.json").read_text())["train_images_per_second"]


def word2vec_timing(n: int) -> dict:
    started = time.perf_counter()
    titles, _ = generate_titles(n, seed=3)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    sentences = [simple_tokens(t) for t in titles]
    tokenized = time.perf_counter() - started
    started = time.perf_counter()
    vectors = train_word_vectors(sentences, dim=64, window=5, min_count=2, epochs=5, seed=3)
    trained = time.perf_counter() - started
    result = {"titles": n, "tokens": sum(map(len, sentences)), "vocabulary": len(vectors.vocabulary),
              "generate_s": generated, "tokenize_s": tokenized, "train_s": trained, "title_tokens_per_s": None}
    try:
        from tagmill.labeling.titles import title_tokens

        sample = titles[:2000]
        started = time.perf_counter()
        for title in sample:
            title_tokens(title)
        result["title_tokens_per_s"] = len(sample) / (time.perf_counter() - started)
    except (FileNotFoundError, LookupError, ImportError) as err:  # WordNet not installed here
        result["title_tokens_error"] = str(err).splitlines()[0]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per run (the dataset holds "
                        "steps x batch samples, one epoch)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--titles", type=int, default=1_000_000, help="titles for the Word2Vec timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = publish_titled_dataset(folder / "dataset", args.steps * args.batch, args.size, seed=1)
        images_only = training_throughput(manifest, folder / "images", args.size, args.batch, 0.0)
        cotraining = training_throughput(manifest, folder / "side", args.size, args.batch, 1.0)
    print(f"training, resnet18 {args.size} px, batch {args.batch}, {args.steps} steps, CPU 2 threads, 2 workers:")
    print(f"{'images only':<28}{images_only:>10.1f} images/s")
    print(f"{'with semantic stream':<28}{cotraining:>10.1f} images/s   "
          f"(ratio {cotraining / images_only:.2f}, {100 * (images_only / cotraining - 1):+.1f}% time per image)")
    w2v = word2vec_timing(args.titles)
    print(f"Word2Vec on {w2v['titles']:,} titles ({w2v['tokens']:,} tokens, vocabulary {w2v['vocabulary']:,}): "
          f"train {w2v['train_s']:.1f} s ({w2v['tokens'] * 5 / w2v['train_s']:,.0f} words/s over 5 epochs); "
          f"generating the titles {w2v['generate_s']:.1f} s, tokenizing {w2v['tokenize_s']:.1f} s")
    if w2v["title_tokens_per_s"]:
        print(f"title_tokens (noise phrases, WordNet lemmas) runs at {w2v['title_tokens_per_s']:,.0f} titles/s: "
              f"{w2v['titles'] / w2v['title_tokens_per_s']:.0f} s for these titles")
    else:
        print(f"title_tokens not timed: {w2v.get('title_tokens_error')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
