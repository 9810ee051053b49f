"""Which bytes each catalog image path gets: its own drawing, a copy of another image, or a broken file.

Planting is decided before any pixel is drawn, so the truth files (duplicates, bad images) come from the
plan, and the files are then produced by `render_images`, one image per seeded stream, in any order or
process. Copies are only ever made of original drawings (never of copies or broken files), and broken
files are only planted on images outside every duplicate group, so each image has one truth.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from tagmill.config import DemoConfig
from tagmill.demo.catalog import Catalog, listings_of_leaf
from tagmill.demo.images import (NEAR_KINDS, Signature, corrupt_bytes, deal_near_kinds, draw_image, near_copy,
                                 truncated_bytes)
from tagmill.demo.randomness import stream

BAD_IMAGE_KINDS = ("corrupt", "truncated", "empty", "missing")
RELATIONS = ("original", "exact", *NEAR_KINDS)


@dataclass(frozen=True)
class ImageFile:
    """One image path of the catalog and how its bytes are made.

    relation: None for an image nobody copies, "original" for the source of a duplicate group, else
    "exact" or a near-copy kind, with `copy_of` the original's path. bad: None or a BAD_IMAGE_KINDS value.
    """

    path: str
    leaf_index: int
    key: int
    relation: str | None = None
    copy_of: str | None = None
    group: str | None = None
    bad: str | None = None
    stock: bool = False


@dataclass(frozen=True)
class ImagePlan:
    files: list[ImageFile]
    """Every image path of the good listings, then those of bad catalog rows (plain drawings)."""
    good_refs: int
    """How many of `files` belong to good listings."""


def plan_images(catalog: Catalog, n_leaves: int, cfg: DemoConfig) -> ImagePlan:
    """Assign stock photos, re-uploads and broken files to the catalog's image paths."""
    files = [ImageFile(path, listing.leaf_index, 0) for listing in catalog.listings for path in listing.image_paths]
    slot_of = {f.path: i for i, f in enumerate(files)}
    by_leaf = listings_of_leaf(catalog.listings, n_leaves)
    used: set[str] = set()  # product ids already in a stock group or re-uploading
    _plant_stock_photos(files, slot_of, by_leaf, used, cfg)
    _plant_reuploads(files, slot_of, by_leaf, used, cfg)
    _name_groups(files)
    _plant_bad_images(files, cfg)
    good_refs = len(files)
    files += [ImageFile(path, listing.leaf_index, 0) for listing in catalog.bad_listings
              for path in listing.image_paths if not path.startswith(("/", "..")) and "/../" not in path]
    return ImagePlan([replace(f, key=i) for i, f in enumerate(files)], good_refs)


def _copy_relations(count: int, rng: np.random.Generator, used: Counter[str]) -> list[str]:
    """Half exact copies, half near copies, in random order; the near kinds are dealt least used first
    (counting `used`, which the caller updates), so every kind gets about the same number of copies."""
    exact = (count + 1) // 2
    kinds = ["exact"] * exact + deal_near_kinds(count - exact, rng, used)
    return [kinds[i] for i in rng.permutation(count)]


def _plant_stock_photos(files, slot_of, by_leaf, used, cfg: DemoConfig) -> None:
    """Each stock photo: an original image of one listing, copied into 1-4 other listings of its leaf."""
    rng = stream(cfg.seed, "stock-photos")
    dealt: Counter[str] = Counter()
    sizes = np.array([len(listings) for listings in by_leaf], dtype=float)
    for _ in range(cfg.stock_photo_groups):
        free = [[lst for lst in listings if lst.product_id not in used] for listings in by_leaf]
        weights = sizes * np.array([len(f) >= 2 for f in free])
        if weights.sum() == 0:
            return
        leaf = int(rng.choice(len(by_leaf), p=weights / weights.sum()))
        members = [free[leaf][i] for i in rng.permutation(len(free[leaf]))[: int(rng.integers(2, 6))]]
        chosen = [slot_of[m.image_paths[int(rng.integers(len(m.image_paths)))]] for m in members]
        original = files[chosen[0]]
        files[chosen[0]] = replace(original, relation="original", stock=True)
        relations = _copy_relations(len(chosen) - 1, rng, dealt)
        dealt.update(relations)
        for slot, relation in zip(chosen[1:], relations):
            files[slot] = replace(files[slot], relation=relation, copy_of=original.path, stock=True)
        used.update(m.product_id for m in members)


def _plant_reuploads(files, slot_of, by_leaf, used, cfg: DemoConfig) -> None:
    """`reupload_share` of listings replace one image with a copy of another same-leaf listing's image."""
    rng = stream(cfg.seed, "reuploads")
    candidates = [lst for listings in by_leaf if len(listings) >= 2 for lst in listings if lst.product_id not in used]
    count = min(len(candidates), round(cfg.reupload_share * sum(len(x) for x in by_leaf)))
    targets = [candidates[i] for i in sorted(rng.choice(len(candidates), count, replace=False))]
    target_slot = {t.product_id: slot_of[t.image_paths[int(rng.integers(len(t.image_paths)))]] for t in targets}
    taken = set(target_slot.values())
    for target, relation in zip(targets, _copy_relations(len(targets), rng, Counter())):
        sources = [slot_of[p] for other in by_leaf[target.leaf_index] if other.product_id != target.product_id
                   for p in other.image_paths
                   if slot_of[p] not in taken and files[slot_of[p]].relation in (None, "original")]
        if not sources:
            continue
        source = files[sources[int(rng.integers(len(sources)))]]
        if source.relation is None:
            files[slot_of[source.path]] = replace(source, relation="original")
        slot = target_slot[target.product_id]
        files[slot] = replace(files[slot], relation=relation, copy_of=source.path)
        used.add(target.product_id)


def _name_groups(files: list[ImageFile]) -> None:
    """Group ids g0001... in the order of the originals' paths, so they do not depend on planting order."""
    originals = sorted(f.path for f in files if f.relation == "original")
    group_of = {path: f"g{i:04d}" for i, path in enumerate(originals, start=1)}
    for i, f in enumerate(files):
        if f.relation:
            files[i] = replace(f, group=group_of[f.copy_of or f.path])


def _plant_bad_images(files: list[ImageFile], cfg: DemoConfig) -> None:
    """`bad_image_share` of image references get a broken file: each kind at least once."""
    if cfg.bad_image_share <= 0:
        return
    rng = stream(cfg.seed, "bad-images")
    candidates = [i for i, f in enumerate(files) if f.relation is None]
    count = min(len(candidates), max(len(BAD_IMAGE_KINDS), round(cfg.bad_image_share * len(files))))
    chosen = rng.choice(candidates, count, replace=False)
    extra = rng.integers(0, len(BAD_IMAGE_KINDS), max(0, count - len(BAD_IMAGE_KINDS)))
    kinds = (list(BAD_IMAGE_KINDS) + [BAD_IMAGE_KINDS[i] for i in extra])[:count]
    for slot, kind in zip(chosen, kinds):
        files[int(slot)] = replace(files[int(slot)], bad=kind)


def _draw(args: tuple[Signature, int, int, int]) -> bytes:
    return draw_image(*args)


def render_images(plan: ImagePlan, signatures: list[Signature], cfg: DemoConfig,
                  workers: int | None = None) -> dict[str, bytes]:
    """Bytes of every image file to write, by path; a `missing` image has no entry.

    Drawings are spread over `workers` processes (default: the CPUs available, at most 4); the bytes do
    not depend on it.
    """
    drawn_files = [f for f in plan.files if f.copy_of is None and f.bad not in ("corrupt", "empty", "missing")]
    jobs = [(signatures[f.leaf_index], cfg.image_size, cfg.seed, f.key) for f in drawn_files]
    if not workers:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = min(4, cpus)
    if workers > 1 and len(jobs) > 200:
        with ProcessPoolExecutor(workers) as pool:
            drawn = list(pool.map(_draw, jobs, chunksize=64))
    else:
        drawn = [_draw(job) for job in jobs]
    data = {f.path: image for f, image in zip(drawn_files, drawn)}
    for f in plan.files:
        if f.relation == "exact":
            data[f.path] = data[f.copy_of]
        elif f.copy_of is not None:
            data[f.path] = near_copy(data[f.copy_of], f.relation, cfg.seed, f.key)
        elif f.bad == "corrupt":
            data[f.path] = corrupt_bytes(cfg.seed, f.key)
        elif f.bad == "truncated":
            data[f.path] = truncated_bytes(data[f.path], cfg.seed, f.key)
        elif f.bad == "empty":
            data[f.path] = b""
    return data
