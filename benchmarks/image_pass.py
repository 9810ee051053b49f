"""Image pass: tagmill's Spark pass against a bare torch loop, bf16 against fp32, dedup grouping at scale, and
near-duplicate pair precision/recall of tagmill against a perceptual-hash baseline.

    .venv/bin/python benchmarks/image_pass.py [--images 600] [--arch resnet50] [--size 224]
                                              [--codes 1000000 10000000]

1. images/s of the image pass (local[2] Spark, 2 cores: read, hash-free decode, resize, forward, tags,
   embedding, thumbnail, Parquet write) against a bare loop forwarding the same images already decoded to
   tensors, with the same model, resolution, batch and 2 threads.
2. the same bare loop under bf16 autocast: speed and top-1 agreement with fp32.
3. dedup grouping (faiss candidate search + clusters) for random 64-bit codes with planted near duplicates.
4. pair precision and recall on the planted-duplicate set (tagmill/demo/dupset.py) for tagmill and for
   imagehash's pHash with union-find.

The teacher is a randomly initialised network of the named architecture (no weights can be downloaded):
its speed is that of the real thing, and bf16 agreement is measured on its scores. Everything runs on this
machine in this run.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tagmill.config import DedupConfig, ImagePassConfig, SparkConfig
from tagmill.demo.dupset import pair_scores, planted_duplicate_set
from tagmill.demo.images import design_signatures, draw_image
from tagmill.demo.vocabulary import build_leaves
from tagmill.labeling.codes import encode, fit_projection
from tagmill.labeling.candidates import candidate_pairs
from tagmill.labeling.clusters import canonical_order, cluster
from tagmill.labeling.images import open_image
from tagmill.labeling.layout import compact_layouts, layout_cosine, layout_descriptor, shortlist
from tagmill.labeling.near_duplicates import components
from tagmill.labeling.teacher import bf16_supported
from tagmill.labeling.verification import thumbnail, verify_pairs
from tagmill.trainer.backbones import build_model
from tagmill.trainer.transforms import MEAN, STD, eval_view

BATCH = 32
LABELS = 600


def make_images(folder: Path, n: int, side: int) -> list[str]:
    """n distinct demo drawings of side px as JPEG files; returns their names."""
    leaves = build_leaves()
    signatures = design_signatures(leaves, seed=7)
    names = []
    for i in range(n):
        name = f"{i:05d}.jpg"
        (folder / name).write_bytes(draw_image(signatures[i % len(leaves)], side, 7, i))
        names.append(name)
    return names


def make_teacher(folder: Path, arch: str) -> tuple[Path, Path]:
    """A TorchScript teacher (random weights, seed 0) and an Open Images style vocabulary of LABELS tags."""
    torch.manual_seed(0)
    model = build_model(arch, LABELS, pooling="avg").eval()
    path = folder / "teacher.ts"
    torch.jit.script(model).save(str(path))
    vocabulary = folder / "labels.csv"
    vocabulary.write_text("LabelName,DisplayName\n" + "".join(f"/m/bench{i:04d},tag {i}\n" for i in range(LABELS)))
    return path, vocabulary


def spark_pass(image_dir: Path, names: list[str], cfg: ImagePassConfig, out: Path) -> float:
    """Seconds for tagmill's forward pass over the images (after a warm-up on a few of them)."""
    from tagmill.jobs.spark import spark_session
    from tagmill.labeling.image_pass import forward_images

    spark_cfg = SparkConfig(master="local[2]", shuffle_partitions=2, log_level="ERROR")
    with spark_session(spark_cfg) as spark:
        def run(subset, target):
            rows = [(f"{i:064x}", name) for i, name in enumerate(subset)]
            df = spark.createDataFrame(rows, "content_hash string, image_path string").repartition(2)
            df = df.sortWithinPartitions("content_hash").persist()
            df.count()
            started = time.perf_counter()
            forward_images(df, str(image_dir), cfg).write.mode("overwrite").parquet(str(target))
            return time.perf_counter() - started

        run(names[: 4 * BATCH], out / "warmup")  # starts the Python workers and loads the model in each
        return run(names, out / "pass")


def decoded_tensors(image_dir: Path, names: list[str], size: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([eval_view(open_image((image_dir / n).read_bytes()), size, MEAN, STD)
                                      for n in names]))


def bare_loop(model, tensors: torch.Tensor, bf16: bool = False) -> tuple[float, torch.Tensor]:
    """(seconds, top-1 per image) forwarding in-memory tensors in batches with 2 threads."""
    torch.set_num_threads(2)
    top = []
    with torch.inference_mode():
        model(tensors[:BATCH])  # warm-up
        started = time.perf_counter()
        for start in range(0, len(tensors), BATCH):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits, _ = model(tensors[start:start + BATCH])
            top.append(logits.float().argmax(1))
        seconds = time.perf_counter() - started
    return seconds, torch.cat(top)


def grouping_time(n: int, planted: float = 0.01, seed: int = 0) -> dict:
    """Seconds to group n random 64-bit codes, `planted` of them near copies (1-4 bits flipped) of
    others: faiss candidate search within the default radius, then clusters and components."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    copies = rng.choice(n, int(n * planted), replace=False)
    sources = rng.integers(0, n, len(copies))
    codes[copies] = codes[sources]
    bits = np.unpackbits(codes[copies], axis=1)
    for row, flips in zip(bits, rng.integers(1, 5, len(copies))):
        row[rng.choice(64, flips, replace=False)] ^= 1
    codes[copies] = np.packbits(bits, axis=1)
    radius = DedupConfig().max_hamming
    started = time.perf_counter()
    i, j, _ = candidate_pairs(codes, radius)
    order = np.arange(n)
    cluster(n, i, j, np.ones(len(i), bool), order)
    seconds = time.perf_counter() - started
    found = set(zip(i.tolist(), j.tolist()))
    hit = sum((min(a, b), max(a, b)) in found for a, b in zip(copies.tolist(), sources.tolist()) if a != b)
    return {"codes": n, "radius": radius, "seconds": seconds, "candidate_pairs": len(i),
            "planted_found": f"{hit}/{int((copies != sources).sum())}"}


def planted_set_scores(seed: int = 7) -> dict[str, dict]:
    """Pair precision/recall on the planted-duplicate set for tagmill's dedup (layout-code candidates,
    shortlist, verification with embeddings of a randomly initialised ResNet-18, non-chaining clusters)
    and for imagehash's pHash + union-find at a few Hamming thresholds."""
    import imagehash

    dupset = planted_duplicate_set(seed)
    images = [open_image(data) for data in dupset.images]
    cfg, size = DedupConfig(), ImagePassConfig().thumbnail_size
    layouts = np.stack([layout_descriptor(im) for im in images])
    codes = encode(layouts, fit_projection(layouts, 64, "itq", seed))
    torch.manual_seed(0)
    model = build_model("resnet18", 10, pooling="avg").eval()
    with torch.inference_mode():
        _, embeddings = model(torch.from_numpy(np.stack([eval_view(im, 64, MEAN, STD) for im in images])))
    embeddings = embeddings.numpy()
    thumbs = [thumbnail(im, size) for im in images]
    started = time.perf_counter()
    i, j, _ = candidate_pairs(codes, cfg.max_hamming)
    keep = shortlist(i, j, layout_cosine(compact_layouts(layouts), i, j), cfg.shortlist)  # as code_candidates
    i, j = i[keep], j[keep]
    verdict = verify_pairs(embeddings[i], embeddings[j], [thumbs[k] for k in i], [thumbs[k] for k in j],
                           cfg.min_cosine, cfg.min_pixel_similarity, size)
    ok = np.asarray(verdict["verified"], bool)
    order = canonical_order(i, j, ok, np.array([im.width * im.height for im in images]),
                            [hashlib.sha256(data).hexdigest() for data in dupset.images])
    clusters, _ = cluster(len(images), i, j, ok, order)
    seconds = time.perf_counter() - started
    scores = {"tagmill clusters": {**_scores(dupset, clusters), "verified_pairs": len(i), "seconds": seconds},
              "tagmill split components": _scores(dupset, components(len(images), i[ok], j[ok], order))}
    hashes = np.array([int(str(imagehash.phash(im)), 16) for im in images], np.uint64)
    for threshold in (4, 8, 12):
        pairs = [(a, b) for a in range(len(images)) for b in range(a + 1, len(images))
                 if bin(int(hashes[a] ^ hashes[b])).count("1") <= threshold]
        a = np.array([p[0] for p in pairs], np.int64)
        b = np.array([p[1] for p in pairs], np.int64)
        scores[f"pHash union-find <= {threshold}"] = _scores(dupset, components(len(images), a, b, np.arange(len(images))))
    return scores


def _scores(dupset, clusters: np.ndarray) -> dict:
    result = pair_scores(dupset, clusters.tolist())
    return {"precision": float(result["precision"]), "recall": float(result["recall"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=224, help="teacher input side")
    parser.add_argument("--side", type=int, default=256, help="side of the generated JPEG files")
    parser.add_argument("--bf16-images", type=int, default=128, help="images for the bf16 comparison")
    parser.add_argument("--codes", type=int, nargs="*", default=[1_000_000, 10_000_000])
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image_dir = folder / "images"
        image_dir.mkdir()
        names = make_images(image_dir, args.images, args.side)
        teacher, vocabulary = make_teacher(folder, args.arch)
        cfg = ImagePassConfig(teacher=str(teacher), vocabulary=str(vocabulary), image_size=args.size,
                              batch_size=BATCH)
        spark_seconds = spark_pass(image_dir, names, cfg, folder)
        model = torch.jit.load(str(teacher)).eval()
        tensors = decoded_tensors(image_dir, names, args.size)
        bare_seconds, top_fp32 = bare_loop(model, tensors)
        tagmill_rate, bare_rate = len(names) / spark_seconds, len(names) / bare_seconds
        print(f"image pass ({args.arch}, {args.size} px, batch {BATCH}, {len(names)} images of {args.side} px, 2 cores)")
        print(f"{'':<34}{'images/s':>10}")
        print(f"{'tagmill (Spark, decode included)':<34}{tagmill_rate:>10.2f}")
        print(f"{'bare torch loop (decoded tensors)':<34}{bare_rate:>10.2f}")
        print(f"ratio tagmill / bare loop: {tagmill_rate / bare_rate:.2f} (target >= 0.90)")

        subset = tensors[: args.bf16_images]
        fp32_seconds, fp32_top = bare_loop(model, subset)
        bf16_seconds, bf16_top = bare_loop(model, subset, bf16=True)
        agreement = (fp32_top == bf16_top).float().mean().item()
        print(f"bf16 vs fp32 ({len(subset)} images, native bf16 on this CPU: {bf16_supported()}): "
              f"fp32 {len(subset) / fp32_seconds:.2f} images/s, bf16 {len(subset) / bf16_seconds:.2f} images/s "
              f"({fp32_seconds / bf16_seconds:.2f}x), top-1 agreement {agreement:.3f}")

    print("dedup grouping of random 64-bit codes with planted near duplicates (2 cores)")
    for n in args.codes:
        result = grouping_time(n)
        print("  " + "  ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:.2f}" if isinstance(v, float)
                               else f"{k} {v}" for k, v in result.items()))
    print("near-duplicate pairs on the planted set (tagmill/demo/dupset.py: look-alike listings of plain "
          "categories, copies resized, re-encoded, cropped, padded, rotated, brightened, overlaid)")
    for name, scores in planted_set_scores().items():
        print(f"  {name:<28}" + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
