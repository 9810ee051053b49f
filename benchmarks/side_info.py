"""SICoT side information: what the semantic stream costs the trainer, and what the word vectors cost the build.

    .venv/bin/python benchmarks/side_info.py [--steps 200] [--batch 32] [--size 64] [--titles 1000000]
                                             [--tail-seeds 0]

1. training throughput (images/s, `train_images_per_second` of the epoch report) of `tagmill train` on one
   published dataset of steps x batch samples with titles, ResNet-18 at --size px on CPU, AdamW, 2 loader
   workers and 2 torch threads: once images only (train.side_info_weight 0) and once co-training with the
   titles' semantic stream (weight 1). Same data, model, seed and settings; only the weight differs.
2. Word2Vec (labeling.word_vectors.train_word_vectors: 64 dims, window 5, min_count 2, 5 epochs, one worker
   thread) on --titles English titles from the demo generator's `make_title`, tokenized by lower-casing
   and splitting at every non-alphanumeric character (`title_tokens`, with WordNet lemmas and noise phrases,
   is timed on 20,000 distinct titles after its first call has loaded WordNet, when WordNet is installed).
3. With --tail-seeds N: head and tail top-1 of image-only and co-trained runs on N generated long-tailed sets
   (tagmill.demo.titled.long_tail_set, seeds 0..N-1, the settings of the tail test), per seed, the means,
   and the standard error of the tail gain (co-trained minus image-only, paired by seed).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from tagmill.config import SideInfoConfig, TrainConfig
from tagmill.demo.catalog import make_title
from tagmill.demo.images import design_signatures, draw_image
from tagmill.demo.titled import LONG_TAIL_TRAIN, LongTail, long_tail_set, publish_titled
from tagmill.demo.vocabulary import build_leaves
from tagmill.labeling.word_vectors import train_word_vectors
from tagmill.word_vector_files import token_ids
from tagmill.trainer.train import epoch_report, train

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
    """A train-only dataset of `samples` demo images (400 distinct drawings) whose title_ids come from demo titles
    (the sample's title text is its class name, as publish_titled writes it), with their word vectors."""
    leaves = build_leaves()
    signatures = design_signatures(leaves, seed=7)
    titles, classes = generate_titles(samples, seed)
    tokens = [simple_tokens(t) for t in titles]
    vectors = train_word_vectors(tokens, dim=64, min_count=1, seed=seed)
    index = vectors.index()
    pool = [draw_image(signatures[i % len(leaves)], size, 7, i) for i in range(min(400, samples))]
    rows = [{"key": f"{i:020x}", "class_id": classes[i], "split": "train", "jpg": pool[i % len(pool)],
             "title_ids": token_ids(tokens[i], index, SideInfoConfig().max_title_words)} for i in range(samples)]
    return publish_titled(folder, rows, [leaf.name_en for leaf in leaves], vectors, shard_samples=1000)


def training_throughput(manifest: Path, out: Path, size: int, batch: int, weight: float) -> float:
    cfg = TrainConfig(arch="resnet18", image_size=size, epochs=1, freeze_epochs=0, batch_size=batch,
                      optimizer="adamw", lr=0.001, num_workers=2, use_repeats=False, side_info_weight=weight)
    train(manifest, out, cfg, seed=1)
    return epoch_report(out, 1)["train_images_per_second"]


def tail_top1(seeds: int, folder: Path) -> list[dict]:
    """Head and tail top-1 of image-only against co-trained (weight 1) runs on `long_tail_set(seed)` for
    seeds 0..seeds-1, with the settings of the tail test (LONG_TAIL_TRAIN)."""
    results = []
    for seed in range(seeds):
        manifest = long_tail_set(folder / f"tail-{seed}", seed)
        row = {"seed": seed}
        for name, weight in (("images", 0.0), ("cotrained", 1.0)):
            cfg = LONG_TAIL_TRAIN.model_copy(update={"side_info_weight": weight})
            result = train(manifest, folder / f"tail-{seed}-{name}", cfg, seed=seed)
            row[name] = {group: result.metrics["head_tail"][group]["top_k"]["1"] for group in ("head", "tail")}
        results.append(row)
        print(f"  seed {seed}: tail top-1 {row['images']['tail']:.3f} images only, {row['cotrained']['tail']:.3f} "
              f"co-trained; head {row['images']['head']:.3f} / {row['cotrained']['head']:.3f}", flush=True)
    return results


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

        started = time.perf_counter()
        title_tokens(titles[0])  # the first call loads WordNet (seconds), once per process
        result["wordnet_load_s"] = time.perf_counter() - started
        # distinct titles: a repeated one would come from normalize_query's cache
        sample = list(dict.fromkeys(titles[1:]))[:20_000]
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
    parser.add_argument("--tail-seeds", type=int, default=0, help="also compare head/tail top-1 of image-only and "
                        "co-trained runs on this many generated long-tailed sets (about 1 minute each)")
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
        print(f"title_tokens (noise phrases, WordNet lemmas) runs at {w2v['title_tokens_per_s']:,.0f} titles/s on "
              f"one core after WordNet's {w2v['wordnet_load_s']:.1f} s load: "
              f"{w2v['titles'] / w2v['title_tokens_per_s']:.0f} s for these titles")
    else:
        print(f"title_tokens not timed: {w2v.get('title_tokens_error')}")
    if args.tail_seeds:
        print(f"head/tail top-1 on generated long-tailed sets ({LongTail().describe()}, resnet18, "
              f"{LONG_TAIL_TRAIN.epochs} epochs):")
        with tempfile.TemporaryDirectory() as tmp:
            rows = tail_top1(args.tail_seeds, Path(tmp))
        for group in ("tail", "head"):
            means = [statistics.fmean(r[name][group] for r in rows) for name in ("images", "cotrained")]
            print(f"  mean {group} top-1 over {len(rows)} seeds: images only {means[0]:.3f}, co-trained "
                  f"{means[1]:.3f} ({means[1] - means[0]:+.3f})")
        gains = [r["cotrained"]["tail"] - r["images"]["tail"] for r in rows]
        if len(gains) > 1:  # the seeds pair the runs: same images, titles and initial weights
            print(f"  tail gain per seed: standard error {statistics.stdev(gains) / len(gains) ** 0.5:.3f}; "
                  f"co-training better on {sum(g > 0 for g in gains)} seeds, worse on {sum(g < 0 for g in gains)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
