"""Near-duplicate candidates (MSURU 3.2, first step): pairs of binary codes within a Hamming radius.

`candidate_pairs`: pairs of binary codes within `max_hamming` bits, by multi-index hashing (Manku, Jain
and Das Sarma 2007; Norouzi, Punjani and Fleet 2012): the code is cut into B blocks; two codes within
r <= B - j bits agree exactly on at least j blocks, so one sorted table per choice of j blocks finds
every such pair. `search_plan` picks B and j from n so that the search stays near-linear (small sets:
a faiss brute-force range search).

`layout_candidates` is what the image pass verifies: those pairs of the layout code, each image's nearest few
by the layout descriptor's cosine, and the same again for each part of the picture (labeling.layout.REGIONS).

The next steps: `labeling.verification` decides each candidate pair, `labeling.clusters` groups the
verified ones; `labeling.near_duplicates` runs the three in Spark.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations

import faiss
import numpy as np

from tagmill.labeling.codes import encode, fit_projection
from tagmill.labeling.layout import REGIONS, layout_cosine, region_layouts, shortlist

EXACT_HAMMING = 5
"""Default radius up to which `candidate_pairs` finds every pair whatever n (see `search_plan`)."""

# single-core costs measured on a 2.5 GHz Xeon (numpy 2.4, faiss 1.15): they only rank the plans
_SECONDS_PER_ITEM_AND_TABLE = 1.0e-7    # key extraction, sort, group scan of one code in one table
_SECONDS_PER_TABLE_PAIR = 6.0e-8        # gather and compare one colliding pair of one table
_SECONDS_PER_BRUTE_PAIR = 1.2e-9        # faiss IndexBinaryFlat range search, per (query, code)
_CHEAP_SECONDS = 2.0                    # below this, a plan exact up to max_hamming is always preferred
_MAX_TABLES = 4096


@dataclass(frozen=True)
class SearchPlan:
    """How `candidate_pairs` searches: by brute force (faiss range search, blocks = 0) or with C(blocks,
    leading) tables, each sorting the codes on `leading` of `blocks` equal blocks of bits."""

    blocks: int
    leading: int
    exact_up_to: int
    """Every pair within this many bits is found (min(blocks - leading, max_hamming); max_hamming for the
    brute force). Pairs farther apart, up to max_hamming, are found when at least `leading` blocks agree."""
    tables: int
    estimated_seconds: float
    """Single-core estimate for random codes; near duplicates add their own pairs."""


def search_plan(n: int, bits: int, max_hamming: int, exact_hamming: int = EXACT_HAMMING) -> SearchPlan:
    """The plan `candidate_pairs` uses for n codes of `bits` bits.

    It is the cheapest plan exact up to min(exact_hamming, max_hamming), unless a plan exact up to a larger
    radius (best: max_hamming) costs no more than that or under ~2 s anyway; small sets are thus searched
    exactly up to max_hamming (64-bit codes, radius 10: up to ~30,000 codes; 7 bits at 100,000, 6 at
    300,000), and large ones exactly up to exact_hamming. For 10M 64-bit codes and exact_hamming 5 this is
    8 blocks of 8 bits with 3 leading (56 tables): exact up to 5 bits, and of random pairs at 6, 7, 8, 9, 10
    bits it finds about 90, 72, 53, 36, 23 %.
    """
    if n < 0 or bits < 1 or max_hamming < 0 or exact_hamming < 0:
        raise ValueError(f"need n >= 0, bits >= 1, max_hamming >= 0, exact_hamming >= 0; got {n}, {bits}, "
                         f"{max_hamming}, {exact_hamming}")
    target = min(exact_hamming, max_hamming)
    half_square = n * max(n - 1, 0) / 2
    index_bits = max(1, int(n - 1).bit_length())
    plans = [SearchPlan(0, 0, max_hamming, 1, _SECONDS_PER_BRUTE_PAIR * 2 * half_square)]
    for blocks in range(1, min(bits, max_hamming + 24) + 1):
        sizes = sorted(_block_bounds(bits, blocks)[1:] - _block_bounds(bits, blocks)[:-1])
        for leading in range(max(1, blocks - max_hamming), blocks + 1):
            tables = math.comb(blocks, leading)
            if tables > _MAX_TABLES:
                continue
            key_bits = min(sum(sizes[:leading]), 64 - index_bits)
            pairs = half_square / 2.0 ** key_bits  # random codes colliding in one table
            seconds = tables * (_SECONDS_PER_ITEM_AND_TABLE * n + _SECONDS_PER_TABLE_PAIR * pairs)
            plans.append(SearchPlan(blocks, leading, min(blocks - leading, max_hamming), tables, float(seconds)))
    cheapest = min((p for p in plans if p.exact_up_to >= target), key=lambda p: p.estimated_seconds)
    budget = max(cheapest.estimated_seconds, _CHEAP_SECONDS)
    return min((p for p in plans if p.estimated_seconds <= budget),
               key=lambda p: (-p.exact_up_to, p.estimated_seconds, p.blocks))


def candidate_pairs(codes: np.ndarray, max_hamming: int, exact_hamming: int = EXACT_HAMMING,
                    threads: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of codes within `max_hamming` bits: (i, j, distance) int64 arrays, i < j, sorted by (i, j).

    codes: (n, bytes) uint8 packed codes (`codes.encode`). Every pair within the plan's `exact_up_to` bits
    is returned (see `search_plan`: max_hamming for small sets, min(exact_hamming, max_hamming) at least);
    pairs farther apart but within max_hamming are returned when the plan's tables catch them, so the
    output never holds a pair beyond max_hamming. threads: worker threads (0: the CPUs this process may
    use). k identical codes give k(k-1)/2 pairs: the output is all pairs, however many.
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise ValueError(f"expected codes as an (n, bytes) uint8 matrix, got shape {codes.shape}")
    if max_hamming < 0:
        raise ValueError(f"max_hamming must be at least 0, got {max_hamming}")
    n, width = codes.shape
    threads = threads or len(os.sched_getaffinity(0))
    empty = np.zeros(0, np.int64)
    if n < 2:
        return empty, empty.copy(), empty.copy()
    plan = search_plan(n, width * 8, max_hamming, exact_hamming)
    if plan.blocks == 0:
        i, j = _brute_force_pairs(codes, max_hamming, threads)
    else:
        i, j = _table_pairs(codes, max_hamming, plan, threads)
    distance = np.bitwise_count(codes[i] ^ codes[j]).sum(axis=1, dtype=np.int64)
    return i, j, distance


def _brute_force_pairs(codes: np.ndarray, max_hamming: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    faiss.omp_set_num_threads(threads)
    found_i, found_j = [], []
    step = 8192
    for start in range(0, len(codes), step):
        lims, _, ids = index.range_search(codes[start:start + step], max_hamming + 1)  # radius is exclusive
        query = np.repeat(np.arange(start, start + len(lims) - 1, dtype=np.int64), np.diff(lims).astype(np.int64))
        keep = ids > query
        found_i.append(query[keep])
        found_j.append(ids[keep].astype(np.int64))
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    order = np.lexsort((j, i))
    return i[order], j[order]


def _table_pairs(codes: np.ndarray, max_hamming: int, plan: SearchPlan,
                 threads: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(codes)
    words = _words(codes)
    bounds = _block_bounds(codes.shape[1] * 8, plan.blocks)
    index_bits = max(1, int(n - 1).bit_length())

    def one_table(chosen: tuple[int, ...]) -> np.ndarray:
        keyed = _table_key(words, [(bounds[b], bounds[b + 1]) for b in chosen], 64 - index_bits)
        keyed <<= np.uint64(index_bits)
        keyed |= np.arange(n, dtype=np.uint64)
        keyed.sort()
        ids = keyed & np.uint64((1 << index_bits) - 1)
        keyed >>= np.uint64(index_bits)
        same = keyed[1:] == keyed[:-1]
        del keyed
        found = []
        at = np.flatnonzero(same)
        offset = 1
        while at.size:  # (p, p + offset) in one run of equal keys; runs are short for spread-out codes
            a, b = ids[at].astype(np.int64), ids[at + offset].astype(np.int64)
            distance = np.zeros(len(at), np.int64)
            for w in range(words.shape[1]):
                distance += np.bitwise_count(words[a, w] ^ words[b, w])
            near = distance <= max_hamming
            low, high = np.minimum(a[near], b[near]), np.maximum(a[near], b[near])
            found.append(low * n + high)
            offset += 1
            at = at[at + offset - 1 < len(same)]
            at = at[same[at + offset - 1]]
        return np.concatenate(found) if found else np.zeros(0, np.int64)

    tables = list(combinations(range(plan.blocks), plan.leading))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        found = list(pool.map(one_table, tables))
    pairs = np.unique(np.concatenate(found))
    return pairs // n, pairs % n


def _block_bounds(bits: int, blocks: int) -> np.ndarray:
    """Bit offsets of `blocks` near-equal blocks of a `bits`-bit code: blocks + 1 ascending values."""
    return np.array([k * bits // blocks for k in range(blocks + 1)], np.int64)


def _words(codes: np.ndarray) -> np.ndarray:
    """(n, ceil(bytes / 8)) uint64: the packed code as big-endian words, so code bit k is bit 63 - k % 64
    of word k // 64 (zero-padded at the end)."""
    n, width = codes.shape
    padded = np.zeros((n, -(-width // 8) * 8), np.uint8)
    padded[:, :width] = codes
    return padded.view(">u8").astype(np.uint64)


def _table_key(words: np.ndarray, spans: list[tuple[int, int]], key_bits: int) -> np.ndarray:
    """uint64 key per code from the bits in `spans` ([lo, hi) bit ranges): their concatenation when it
    fits in key_bits bits, else a 64-bit mix of them cut to key_bits (equal bits always give equal keys;
    unequal ones collide rarely, which only adds candidates that the distance check drops)."""
    pieces = []
    for lo, hi in spans:
        for w in range(lo // 64, (hi - 1) // 64 + 1):
            a, b = max(lo, 64 * w), min(hi, 64 * w + 64)
            piece = words[:, w] >> np.uint64(64 * w + 64 - b)
            if b - a < 64:
                piece &= np.uint64((1 << (b - a)) - 1)
            pieces.append((piece, b - a))
    total = sum(width for _, width in pieces)
    key = np.zeros(len(words), np.uint64)
    if total <= key_bits:
        for piece, width in pieces:
            key <<= np.uint64(width)
            key |= piece
        return key
    for piece, _ in pieces:  # splitmix64-style mixing, wrapping uint64 arithmetic
        key ^= piece
        key *= np.uint64(0x9E3779B97F4A7C15)
        key ^= key >> np.uint64(31)
    return key >> np.uint64(64 - key_bits)


def layout_candidates(codes: np.ndarray, compact: np.ndarray, max_hamming: int, exact_hamming: int,
                      per_item: int, region_hamming: int, region_per_item: int, seed: int = 0,
                      fit_sample: int = 20_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs to verify: (i, j, distance of `codes`) int64, i < j, sorted by (i, j).

    1. pairs of the layout codes within `max_hamming` bits (`candidate_pairs`), of which each image keeps its
       `per_item` nearest by the cosine of the int8 layout descriptors `compact` (labeling.layout.shortlist);
    2. for each part of the picture in labeling.layout.REGIONS: its descriptor (region_layouts), a 64-bit ITQ
       code fitted on `fit_sample` of them (seeded), pairs within `region_hamming` bits, of which each image
       keeps its `region_per_item` nearest by the part's cosine; 0 skips this step.
    The union goes on. Why the parts: a caption, a crop, padding or a turn moves the whole descriptor of a
    re-upload away from its original's, among look-alikes, while some part stays close. Real-photo set
    (benchmarks/near_duplicates_real.py, seed 5): true pairs reaching verification 0.888 with step 1 alone
    (5.2 pairs per image), 0.939 with the parts at 6 bits and 3 per image (7.0), 0.951 at 10 bits (7.8);
    kNN by the whole descriptor's cosine instead reached 0.905 at 8 and 0.927 at 16 neighbours (12.3 per
    image). Memory: one part's int8 descriptors (192-252 bytes per image) at a time besides `compact`."""
    i, j, _ = candidate_pairs(codes, max_hamming, exact_hamming)
    keep = shortlist(i, j, layout_cosine(compact, i, j), per_item)
    found_i, found_j = [i[keep]], [j[keep]]
    if region_per_item > 0 and len(compact) > 1:
        rng = np.random.default_rng(seed)
        for region in REGIONS.values():
            part = region_layouts(compact, region)
            sample = part[rng.permutation(len(part))[:fit_sample]] if len(part) > fit_sample else part
            projection = fit_projection(sample.astype(np.float32), 64, "itq", seed)
            part_codes = np.concatenate([encode(part[start:start + (1 << 18)].astype(np.float32), projection)
                                         for start in range(0, len(part), 1 << 18)])
            a, b, _ = candidate_pairs(part_codes, region_hamming, min(exact_hamming, region_hamming))
            kept = shortlist(a, b, layout_cosine(part, a, b), region_per_item)
            found_i.append(a[kept])
            found_j.append(b[kept])
    pairs = np.unique(np.stack([np.concatenate(found_i), np.concatenate(found_j)], axis=1), axis=0)
    i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    distance = np.bitwise_count(codes[i] ^ codes[j]).sum(axis=1, dtype=np.int64)
    return i, j, distance
