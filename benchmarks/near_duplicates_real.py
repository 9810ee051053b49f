"""Near-duplicate pairs on real product pictures: tagmill's dedup against imagehash's pHash.

    .venv/bin/python benchmarks/near_duplicates_real.py [--data /work/shared/realdata] [--seed 5]
                                                        [--products 1500] [--teacher PATH] [--scale 100000 1000000]

The set (tagmill/demo/realphotos.py) holds Fashion-MNIST articles and regions of Tencent ML-Images photos,
some re-uploaded (JPEG quality 20-60, resize, crop, brightness/contrast, rotation, white padding, a text
caption); products of one class or one photo are look-alikes. tagmill's dedup runs as the image pass chains
it, without Spark: layout descriptor -> ITQ code -> Hamming candidates -> shortlist, and the same for each
part of the picture (labeling.candidates.layout_candidates) -> thumbnails -> verify_pairs -> non-chaining
clusters, with the DedupConfig / ImagePassConfig defaults.

It prints, per set (the real-photo set, then the demo's planted set tagmill/demo/dupset.py):
  * candidates: candidate pairs per image, and candidate recall (true pairs that reach verification);
  * pair precision and recall of tagmill's clusters without a teacher (pixels alone decide), and with a
    teacher's embeddings when --teacher is given; recall per re-upload kind (pairs of an original and a
    copy made that way);
  * the same for pHash (64-bit) with union-find over all pairs within 4, 8, 12 bits;
then how candidate pairs per image grow with the number of images (--scale: codes of descriptors drawn
from a Gaussian fitted to the set's layout descriptors). Seeded; a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from tagmill.config import DedupConfig, ImagePassConfig
from tagmill.demo.dupset import planted_duplicate_set
from tagmill.demo.realphotos import real_duplicate_set, realdata_folder
from tagmill.labeling.candidates import candidate_pairs, layout_candidates
from tagmill.labeling.clusters import canonical_order, cluster
from tagmill.labeling.codes import encode, fit_projection
from tagmill.labeling.images import open_image
from tagmill.labeling.layout import compact_layouts, layout_cosine, layout_descriptor, shortlist
from tagmill.labeling.near_duplicates import components
from tagmill.labeling.verification import thumbnail, verify_pairs

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"


def dedup_pipeline(images: list, embeddings: np.ndarray | None, seed: int, rank: str = "cosine") -> dict:
    """tagmill's dedup over decoded pictures, as the image pass chains it; returns the candidate pairs
    (i, j), the verdict of verify_pairs and the clusters. rank: how the shortlist ranks each image's
    candidates: "cosine" (labeling.candidates.layout_candidates, as labeling.near_duplicates.code_candidates
    runs it: the cosine of the int8 layout descriptors, and the parts of the picture) or "hamming" (the
    codes' distance and no parts, the ranking before, for comparison)."""
    cfg, ip = DedupConfig(), ImagePassConfig()
    layouts = np.stack([layout_descriptor(im) for im in images])
    codes = encode(layouts, fit_projection(layouts, ip.code_bits, ip.code_method, seed))
    thumbs = [thumbnail(im, ip.thumbnail_size) for im in images]
    started = time.perf_counter()
    if rank == "hamming":
        i, j, distance = candidate_pairs(codes, cfg.max_hamming, cfg.exact_hamming)
        keep = shortlist(i, j, -distance.astype(np.float32), cfg.shortlist)
        i, j = i[keep], j[keep]
    else:
        i, j, _ = layout_candidates(codes, compact_layouts(layouts), cfg.max_hamming, cfg.exact_hamming,
                                    cfg.shortlist, cfg.region_hamming, cfg.region_shortlist, seed)
    emb_a = emb_b = None
    if embeddings is not None:
        emb_a, emb_b = embeddings[i], embeddings[j]
    verdict = verify_pairs(emb_a, emb_b, [thumbs[k] for k in i], [thumbs[k] for k in j], cfg.min_cosine,
                           cfg.min_pixel_similarity, ip.thumbnail_size)
    ok = np.asarray(verdict["verified"], bool)
    area = np.array([im.width * im.height for im in images])
    digests = [hashlib.sha256(im.tobytes()).hexdigest() for im in images]
    order = canonical_order(i, j, ok, area, digests)
    clusters, _ = cluster(len(images), i, j, ok, order)
    return {"i": i, "j": j, "verdict": verdict, "clusters": clusters, "layouts": layouts,
            "seconds": time.perf_counter() - started}


def true_pairs(group: list[int]) -> set[tuple[int, int]]:
    members: dict[int, list[int]] = {}
    for k, g in enumerate(group):
        members.setdefault(g, []).append(k)
    return {(a, b) for ids in members.values() for n, a in enumerate(ids) for b in ids[n + 1:]}


def scores(group: list[int], relation: list[str], clusters: np.ndarray) -> dict:
    """Pair precision and recall of a clustering, and recall per re-upload kind (original-copy pairs)."""
    true = true_pairs(group)
    predicted = sum(n * (n - 1) // 2 for n in Counter(clusters.tolist()).values())
    correct = sum(clusters[a] == clusters[b] for a, b in true)
    out = {"precision": correct / predicted if predicted else 1.0, "recall": correct / len(true)}
    per_kind: dict[str, list[bool]] = {}
    for a, b in true:
        kinds = {relation[a], relation[b]}
        if "original" in kinds:
            per_kind.setdefault((kinds - {"original"}).pop(), []).append(bool(clusters[a] == clusters[b]))
    out.update({kind: float(np.mean(hits)) for kind, hits in sorted(per_kind.items())})
    return out


def phash_rows(images: list, group: list[int], relation: list[str]) -> dict[str, dict]:
    import imagehash

    hashes = np.array([int(str(imagehash.phash(im)), 16) for im in images], np.uint64)
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1)
    distance = np.zeros((len(images), len(images)), np.int32)
    for start in range(0, len(images), 512):
        distance[start:start + 512] = (bits[start:start + 512, None, :] != bits[None, :, :]).sum(axis=2)
    rows = {}
    for threshold in (4, 8, 12):
        a, b = np.nonzero(np.triu(distance <= threshold, 1))
        rows[f"pHash union-find <= {threshold}"] = scores(group, relation,
                                                          components(len(images), a, b, np.arange(len(images))))
    return rows


def report(title: str, images: list, group: list[int], relation: list[str], embeddings: dict, seed: int,
           ranks: list[str]) -> None:
    print(title)
    true = true_pairs(group)
    for (mode, emb), rank in ((m, r) for m in embeddings.items() for r in ranks):
        mode = f"{mode}, shortlist by {rank}"
        result = dedup_pipeline(images, emb, seed, rank)
        found = set(zip(result["i"].tolist(), result["j"].tolist()))
        reached = sum(p in found for p in true)
        reasons = Counter(result["verdict"]["reason"].tolist())
        print(f"  candidates: {len(found) / len(images):.2f} pairs per image, candidate recall "
              f"{reached / len(true):.3f} ({reached}/{len(true)} true pairs)")
        print(f"  verification ({mode}): {dict(sorted(reasons.items()))}, {result['seconds']:.1f} s")
        _print_row(f"tagmill {mode}", scores(group, relation, result["clusters"]))
    for name, row in phash_rows(images, group, relation).items():
        _print_row(name, row)


def _print_row(name: str, row: dict) -> None:
    print(f"  {name:<44} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))


def scale_rows(layouts: np.ndarray, sizes: list[int], seed: int) -> None:
    """Candidate pairs per image for n codes of descriptors drawn from a Gaussian fitted to `layouts`, the
    shortlist ranked by the cosine of their int8 forms; seconds of the candidate search and of the cosine +
    shortlist, apart; then all of labeling.candidates.layout_candidates (the parts of the picture too) as
    labeling.near_duplicates.code_candidates runs it, pairs per image and seconds."""
    cfg, ip = DedupConfig(), ImagePassConfig()
    rng = np.random.default_rng(seed)
    projection = fit_projection(layouts, ip.code_bits, ip.code_method, seed)
    mean, cov = layouts.mean(axis=0), np.cov(layouts, rowvar=False)
    print("candidate pairs per image as the set grows (descriptors drawn from a Gaussian fitted to the set's)")
    for n in sizes:
        drawn = np.empty((n, layouts.shape[1]), np.float32)
        for start in range(0, n, 100_000):
            part = rng.multivariate_normal(mean, cov, min(100_000, n - start), method="svd")
            drawn[start:start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
        codes = encode(drawn, projection)
        compact = compact_layouts(drawn)
        del drawn
        started = time.perf_counter()
        i, j, _ = candidate_pairs(codes, cfg.max_hamming, cfg.exact_hamming)
        searched = time.perf_counter()
        keep = shortlist(i, j, layout_cosine(compact, i, j), cfg.shortlist)
        done = time.perf_counter()
        del i, j
        a, _, _ = layout_candidates(codes, compact, cfg.max_hamming, cfg.exact_hamming, cfg.shortlist,
                                    cfg.region_hamming, cfg.region_shortlist, seed)
        print(f"  {n:>9,} codes: {len(keep) / n:8.2f} within {cfg.max_hamming} bits per image, "
              f"{keep.sum() / n:5.2f} shortlisted per image; search {searched - started:.1f} s, "
              f"cosine + shortlist {done - searched:.1f} s; with the parts (layout_candidates) "
              f"{len(a) / n:5.2f} per image in {time.perf_counter() - done:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared realdata folder")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--products", type=int, default=1500)
    parser.add_argument("--teacher", default="", help="a teacher (tagmill.labeling.teacher.load_teacher) to also "
                                                      "measure verification with its embeddings")
    parser.add_argument("--scale", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--rank", nargs="+", default=["cosine"], choices=["cosine", "hamming"],
                        help="shortlist ranking(s) to measure: layout cosine (the pipeline's) or Hamming distance")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo's planted set")
    args = parser.parse_args(argv)

    real = real_duplicate_set(realdata_folder(args.data), args.seed, args.products)
    pictures = [open_image(data) for data in real.images]
    modes: dict[str, np.ndarray | None] = {"without a teacher": None}
    if args.teacher:
        modes["with a teacher"] = teacher_embeddings(args.teacher, pictures)
    kinds = Counter(real.relation)
    report(f"real-photo set (seed {args.seed}): {len(pictures)} images of {args.products} products, "
           f"{len(true_pairs(real.group))} true pairs; copies per kind {dict(sorted(kinds.items()))}",
           pictures, real.group, real.relation, modes, args.seed, args.rank)
    if not args.no_demo:
        demo = planted_duplicate_set(7)
        demo_pictures = [open_image(data) for data in demo.images]
        demo_modes: dict[str, np.ndarray | None] = {"without a teacher": None}
        if args.teacher:
            demo_modes["with a teacher"] = teacher_embeddings(args.teacher, demo_pictures)
        report(f"demo planted set (seed 7): {len(demo_pictures)} images", demo_pictures, demo.group, demo.relation,
               demo_modes, 7, args.rank)
    if args.scale:
        layouts = np.stack([layout_descriptor(im) for im in pictures])
        scale_rows(layouts, args.scale, args.seed)
    return 0


def teacher_embeddings(path: str, pictures: list) -> np.ndarray:
    import torch

    from tagmill.labeling.teacher import load_teacher
    from tagmill.trainer.transforms import eval_view

    teacher = load_teacher(path)
    out = []
    for start in range(0, len(pictures), 64):
        batch = np.stack([eval_view(im, teacher.image_size, teacher.mean, teacher.std)
                          for im in pictures[start:start + 64]])
        out.append(teacher.forward(torch.from_numpy(batch))[1])
    return np.concatenate(out)


if __name__ == "__main__":
    sys.exit(main())
