"""Near-duplicate images (MSURU 3.2): code candidates, verified pairs, clusters that cannot chain.

Three steps, each a pure function (`labeling.near_duplicates` runs them in Spark):

1. `candidate_pairs`: pairs of binary codes within `max_hamming` bits, by multi-index hashing (Manku, Jain
   and Das Sarma 2007; Norouzi, Punjani and Fleet 2012): the code is cut into B blocks; two codes within
   r <= B - j bits agree exactly on at least j blocks, so one sorted table per choice of j blocks finds
   every such pair. `search_plan` picks B and j from n so that the search stays near-linear.
2. `verify_pairs`: each candidate pair is decided on finer evidence: the cosine of the float embeddings
   and a pixel comparison of the two thumbnails after aligning them (scale, rotation, shift, photometric
   gain), which survives crop, pad, small rotation, resizing, re-encoding, brightness and small overlays
   but not a different photograph of a look-alike product.
3. `cluster`: leader clustering over verified pairs only: an item joins a cluster only when it was
   verified against that cluster's canonical item, so clusters never chain into look-alike blobs.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations

import faiss
import numpy as np
from PIL import Image

# ---- 1. candidates -------------------------------------------------------------------------------------

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


# ---- 2. verification -----------------------------------------------------------------------------------

THUMBNAIL_VERSION = 1


def thumbnail(image: Image.Image, size: int) -> bytes:
    """The small picture `verify_pairs` compares, made once per decoded image (any mode; RGB expected).

    Format (version 1): 3 header bytes (version = 1, width - 1, height - 1), then the luma plane (height x
    width bytes), then the Cb and Cr planes at half resolution (ceil(height / 2) x ceil(width / 2) bytes
    each), all uint8 row-major: JPEG's YCbCr 4:2:0 layout, uncompressed. The picture keeps its aspect
    ratio with its longer side `size` (16..256) px, resized with a Lanczos filter; borders are kept as
    they are (the verifier aligns padded and cropped versions itself). 64 px: 6,147 bytes.
    """
    if not 16 <= size <= 256:
        raise ValueError(f"thumbnail size must be in 16..256, got {size}")
    rgb = image.convert("RGB")
    width, height = rgb.size
    scale = size / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    small = rgb.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0).convert("YCbCr")
    luma, cb, cr = small.split()
    half = (-(-w // 2), -(-h // 2))
    planes = [luma.tobytes()] + [plane.resize(half, Image.Resampling.BOX).tobytes() for plane in (cb, cr)]
    return bytes((THUMBNAIL_VERSION, w - 1, h - 1)) + b"".join(planes)


def _read_thumbnail(data: bytes) -> np.ndarray:
    """(3, h, w) float32 Y, Cb, Cr of a `thumbnail`, chroma brought back to full resolution."""
    if len(data) < 3 or data[0] != THUMBNAIL_VERSION:
        raise ValueError(f"not a version {THUMBNAIL_VERSION} thumbnail (first byte {data[:1]!r}); re-run the "
                         f"image pass to remake thumbnails")
    w, h = data[1] + 1, data[2] + 1
    cw, ch = -(-w // 2), -(-h // 2)
    if len(data) != 3 + w * h + 2 * cw * ch:
        raise ValueError(f"thumbnail of {w}x{h} px has {len(data)} bytes, expected {3 + w * h + 2 * cw * ch}")
    out = np.empty((3, h, w), np.float32)
    out[0] = np.frombuffer(data, np.uint8, w * h, 3).reshape(h, w)
    for c in (1, 2):
        plane = np.frombuffer(data, np.uint8, cw * ch, 3 + w * h + (c - 1) * cw * ch).reshape(ch, cw)
        up = Image.fromarray(plane).resize((2 * cw, 2 * ch), Image.Resampling.BILINEAR)
        out[c] = np.asarray(up, np.float32)[:h, :w]
    return out


# Rules of the pixel comparison. Distances are in full-size thumbnail px (64 px thumbnails), values 0-255;
# the figures quoted were measured on tagmill/demo/dupset.py (seeds 7, 11, 23).
_START_ZOOMS = (0.87, 1.0, 1.15)
"""B px per A px (for frames of equal size) tried first; the refinement reaches zooms ~10 % off them."""
_START_DEGREES = (-4.5, -2.25, 0.0, 2.25, 4.5)
"""Turns tried at full size before the rotation is refined (it converges from about 3 degrees off)."""
_MAX_DEGREES = 6.0
"""Largest rotation between near copies (straightening tools turn a photo up to ~5 degrees)."""
_ZOOM_RANGE = (0.75, 1.34)
"""Crops of up to ~12 % and pads of up to ~15 % of a side, either way round."""
_MAX_CUT = 0.22
"""Each picture's part that the other does not show, pads aside, is at most this share of it: crops of up
to ~10 % a side (19 % of the area), a straightened rotation's cut, or two such edits of one photo."""
_PAD_SPREAD = 8.0
"""A pad pixel is within this many luma levels of the picture's border colour."""
_MIN_SIGNAL = 10.0
"""A patch shows structure when its pixels vary this much (root of the summed channel variances)."""
_AGREE = 0.4
"""A patch agrees when what is left after the alignment varies at most this share of its structure."""
_MIN_PATCHES = 3
_OVERLAY_SHARE = 0.16
"""Patches that differ all within a box of at most this share of the patches are taken for an overlay
(a caption, price tag or watermark of up to ~6 % of the picture, which may straddle patch borders)."""
_MIN_DETAIL_CORRELATION, _MIN_DETAIL_Z = 0.1, 5.0
"""Fine detail (sensor noise, fine texture) in the plain parts of two copies of one photo correlates (98 % of
the planted pairs above 0.1, r * sqrt(pixels) above 5); that of two photos of look-alikes does not (|r| <
0.16, r * sqrt(pixels) < 5 in 12,000 look-alike pairs)."""
_MIN_DETAIL_PIXELS = 64
_PAD_EDGE_STD = 1.0
"""A picture side whose luma varies less than this is taken for a pad's edge (at thumbnail size, pads vary
0-1.0, photos' plain backgrounds 1.1-5)."""
_MIN_SIDE = 12
"""Thumbnails narrower than this (in either direction) are not compared."""
_LOSS_CAP = 30.0
"""A pixel's residual counts at most this much in an alignment's loss."""
_RETRY_LOSS = 6.0
"""A coarse fit this poor also tries the runner-up starting zoom."""
_GIVE_UP = 0.6
"""A pair whose half-size fit leaves this share of A's structure unexplained is no near copy (near copies
leave at most 0.3 in the planted set, look-alikes 0.5 as a median)."""


def _box3(image: np.ndarray) -> np.ndarray:
    """3 x 3 mean of a 2-D array, edges repeated."""
    p = np.pad(image, 1, mode="edge")
    h, w = image.shape
    return sum(p[i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0


def _max3(image: np.ndarray) -> np.ndarray:
    p = np.pad(image, 1, mode="edge")
    h, w = image.shape
    out = p[1:h + 1, 1:w + 1].copy()
    for i in range(3):
        for j in range(3):
            np.maximum(out, p[i:i + h, j:j + w], out=out)
    return out


@dataclass
class _Picture:
    """A decoded thumbnail, ready for comparisons: Y, Cb, Cr planes (3, h, w) at full (level 0), half and
    quarter size (levels 1, 2); per level what the alignment reads (values, 3 x 3 means at levels 1 and 2,
    and their x and y gradients: (h, w, 3, 3)); the 3 x 3 means at full size (h, w, 3); and (h, w, 2) the
    fine detail (luma minus its 3 x 3 mean) and how busy each pixel's neighbourhood is (the largest
    gradient of the 3 x 3 means, all channels summed, within one pixel)."""

    planes: list[np.ndarray]
    lk: list[np.ndarray]
    smooth: np.ndarray
    detail: np.ndarray
    grids: list[tuple[np.ndarray, np.ndarray]]
    padded: bool
    """Whether a side of the picture is a flat line of one colour, as a pad's outer edge is."""

    @classmethod
    def of(cls, data: bytes) -> _Picture:
        ycc = _read_thumbnail(data)
        planes = [ycc]
        for _ in range(2):
            q = planes[-1]
            h, w = q.shape[1] // 2 * 2, q.shape[2] // 2 * 2
            q = q[:, :h, :w]
            planes.append(0.25 * (q[:, 0::2, 0::2] + q[:, 1::2, 0::2] + q[:, 0::2, 1::2] + q[:, 1::2, 1::2]))
        lk = []
        for level, plane in enumerate(planes):
            values = plane if level == 0 else np.stack([_box3(channel) for channel in plane])
            gy, gx = np.gradient(values, axis=(1, 2))
            lk.append(np.ascontiguousarray(np.stack([values, gx, gy]).transpose(2, 3, 0, 1), np.float32))
        smooth = np.stack([_box3(plane) for plane in ycc])
        busy = np.zeros(ycc.shape[1:], np.float32)
        for plane in smooth:
            gy, gx = np.gradient(plane)
            busy += np.hypot(gx, gy)
        detail = np.stack([ycc[0] - smooth[0], _max3(busy)], axis=-1)
        luma = ycc[0]
        plainest = min(float(side.std()) for side in (luma[0], luma[-1], luma[:, 0], luma[:, -1]))
        picture = cls(planes, lk, np.ascontiguousarray(smooth.transpose(1, 2, 0), np.float32),
                      detail.astype(np.float32), [], plainest <= _PAD_EDGE_STD)
        picture.grids = [picture._grid(level) for level in range(len(planes))]
        return picture

    def half_size(self) -> tuple[float, float]:
        """Half the frame's width and height in level-0 px: the frame is |X| <= hw, |Y| <= hh around its centre."""
        return self.planes[0].shape[2] / 2, self.planes[0].shape[1] / 2

    def offset(self, level: int) -> tuple[float, float]:
        """Index of the frame centre at that level (pixel centres at whole numbers)."""
        s = 2 ** level
        h, w = self.planes[0].shape[1:]
        return ((w - 1) / 2 - (s - 1) / 2) / s, ((h - 1) / 2 - (s - 1) / 2) / s

    def grid(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Centred coordinates (level px) of every pixel of that level, flattened row-major."""
        return self.grids[level]

    def _grid(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.planes[level].shape[1:]
        off_x, off_y = self.offset(level)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        return (xs - np.float32(off_x)).ravel(), (ys - np.float32(off_y)).ravel()

    def inside(self, x: np.ndarray, y: np.ndarray, level: int, margin: float) -> np.ndarray:
        """Whether centred level coordinates lie in the frame, at least `margin` level px from its edge."""
        hw, hh = self.half_size()
        s = 2.0 ** level
        return (np.abs(x) <= hw / s - margin) & (np.abs(y) <= hh / s - margin)

    def sample(self, stack: np.ndarray, x: np.ndarray, y: np.ndarray, level: int) -> np.ndarray:
        """Bilinear samples (c, n) of an (h, w, c) stack of this level at centred coordinates (clamped)."""
        off_x, off_y = self.offset(level)
        return _bilinear(stack, x + np.float32(off_x), y + np.float32(off_y))


def _bilinear(stack: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w, c = stack.shape
    x = np.clip(x, 0, w - 1.001)
    y = np.clip(y, 0, h - 1.001)
    x0, y0 = x.astype(np.int32), y.astype(np.int32)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    flat = stack.reshape(-1, c)
    i = y0 * w + x0
    top, right = np.take(flat, i, axis=0), np.take(flat, i + 1, axis=0)
    top += (right - top) * fx
    i += w
    bottom, right = np.take(flat, i, axis=0), np.take(flat, i + 1, axis=0)
    bottom += (right - bottom) * fx
    top += (bottom - top) * fy
    return top.T


def _median(values: np.ndarray) -> float:
    k = len(values) // 2
    return float(np.partition(values, k)[k])


@dataclass
class _Warp:
    """B's centred level-0 coordinates of A's pixel centres: X_B = a X_A - b Y_A + tx, Y_B = b X_A + a Y_A + ty,
    and the fit A ~ gain * B + bias of the pair's structure channel."""

    a: float
    b: float
    tx: float
    ty: float
    gain: float = 1.0
    bias: float = 0.0

    def map(self, x: np.ndarray, y: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        s = 2.0 ** level
        a, b = np.float32(self.a), np.float32(self.b)
        return a * x - b * y + np.float32(self.tx / s), b * x + a * y + np.float32(self.ty / s)

    def inverse(self) -> _Warp:
        det = self.a * self.a + self.b * self.b
        a, b = self.a / det, -self.b / det
        return _Warp(a, b, -(a * self.tx - b * self.ty), -(b * self.tx + a * self.ty))

    @property
    def zoom(self) -> float:
        return math.hypot(self.a, self.b)

    @property
    def degrees(self) -> float:
        return math.degrees(math.atan2(self.b, self.a))


def _structure(a: _Picture, b: _Picture) -> np.ndarray:
    """(3,) weights of Y, Cb, Cr: the pair's main colour axis (first principal component of both half-size
    thumbnails), so that a shape that differs from its background in hue but not in brightness shows."""
    pixels = np.concatenate([a.planes[1].reshape(3, -1), b.planes[1].reshape(3, -1)], axis=1)
    vector = np.linalg.eigh(np.cov(pixels))[1][:, -1]
    return (vector if vector[0] >= 0 else -vector).astype(np.float32)


def _phase_shift(fa: np.ndarray, b: np.ndarray, valid_b: np.ndarray, max_shift: int) -> tuple[int, int, float]:
    """Whole-pixel shift d with A(y) ~ b(y + d), |d| <= max_shift, by phase correlation against A's
    spectrum fa (of A zero-padded to twice its size), and the height of the peak."""
    h, w = b.shape
    b = np.where(valid_b, b - (b[valid_b].mean() if valid_b.any() else 0.0), 0.0)
    cross = np.conj(fa) * np.fft.rfft2(b, s=(2 * h, 2 * w))
    magnitude = np.abs(cross)
    cross /= magnitude + 1e-3 * magnitude.max() + 1e-12
    corr = np.fft.irfft2(cross, s=(2 * h, 2 * w))
    steps = np.r_[0:max_shift + 1, -max_shift:0]
    window = corr[np.ix_(steps % (2 * h), steps % (2 * w))]
    iy, ix = np.unravel_index(int(np.argmax(window)), window.shape)
    return int(steps[ix]), int(steps[iy]), float(window[iy, ix])


class _Fit:
    """Lucas-Kanade (forward additive, Levenberg-Marquardt steps) of B onto A at one pyramid level, on the
    similarity and the structure channel's gain and bias. At levels 1 and 2 it reads A's pixels with a clear
    gradient (3 x 3 means); at full size one pixel in four, so that the fine detail two copies share pins
    down what compact shapes leave open. Residuals get Tukey weights, so an overlay or a cut-off part does
    not pull."""

    def __init__(self, a: _Picture, b: _Picture, weights: np.ndarray, level: int):
        sa, gx_a, gy_a = np.moveaxis(np.tensordot(a.lk[level], weights, axes=([3], [0])), 2, 0)
        self.stack = np.tensordot(b.lk[level], weights, axes=([3], [0]))  # B's values and gradients (h, w, 3)
        xs, ys = a.grid(level)
        if level == 0:
            h, w = sa.shape
            keep = ((np.arange(h)[:, None] % 2 == 0) & (np.arange(w)[None, :] % 2 == 0)).ravel()
        else:
            strength = np.hypot(gx_a, gy_a).ravel()
            keep = strength >= max(float(np.quantile(strength, 0.75)), 2.0)
            if keep.sum() < 24:
                keep = strength >= float(np.quantile(strength, 0.75))
        self.xs, self.ys, self.values = xs[keep], ys[keep], sa.ravel()[keep]
        self.b, self.level, self.scale = b, level, np.float32(2.0 ** level)
        self.spread = float(np.abs(self.values - _median(self.values)).mean()) + 1e-6
        """Mean absolute deviation of the values read: what a loss is measured against."""

    def evaluate(self, warp: _Warp) -> tuple[float, tuple | None]:
        """The loss of a warp: the mean residual over the pixels read that fall in B, each capped at
        _LOSS_CAP (_LOSS_CAP if under a quarter fall in B: a pad of A must not count against the right
        warp), and what `system` needs to improve on it (None then)."""
        xb, yb = warp.map(self.xs, self.ys, self.level)
        ok = self.b.inside(xb, yb, self.level, 0.5)
        if ok.sum() < max(12, 0.25 * len(ok)):
            return _LOSS_CAP, None
        sampled, gx, gy = self.b.sample(self.stack, xb[ok], yb[ok], self.level)
        residual = self.values[ok] - (np.float32(warp.gain) * sampled + np.float32(warp.bias))
        return float(np.minimum(np.abs(residual), _LOSS_CAP).mean()), (warp.gain, ok, sampled, gx, gy, residual)

    def system(self, parts: tuple) -> tuple[np.ndarray, np.ndarray]:
        """Tukey-weighted normal equations (6 x 6, 6) of a Gauss-Newton step from `evaluate`'s parts."""
        gain, ok, sampled, gx, gy, residual = parts
        g, s = np.float32(gain), self.scale
        x, y = self.xs[ok], self.ys[ok]
        jac = np.stack([g * (gx * x + gy * y), g * (gy * x - gx * y), g * gx / s, g * gy / s, sampled,
                        np.ones_like(sampled)], axis=1)
        centred = np.abs(residual)  # the bias takes up any offset
        limit = 4.685 * (1.4826 * _median(centred) + 1.0)
        weighted = jac * (np.clip(1.0 - (centred / limit) ** 2, 0.0, None) ** 2)[:, None]
        return (weighted.T @ jac).astype(np.float64), (weighted.T @ residual).astype(np.float64)

    def refine(self, warp: _Warp, iterations: int, rotate: bool = True) -> tuple[_Warp, float]:
        """The warp after up to `iterations` steps, and its loss. A step is taken only if it lowers the loss and
        stays within what near copies show (gain 0.6-1.6, rotation up to twice _MAX_DEGREES, zoom within a
        quarter of the start); rotate=False keeps the rotation as it is."""
        loss, parts = self.evaluate(warp)
        free = [0, 1, 2, 3, 4, 5] if rotate else [0, 2, 3, 4, 5]
        damping, start_zoom, s = 1e-3, warp.zoom, self.scale
        hessian = gradient = None
        for _ in range(iterations):
            if parts is None:
                break
            if hessian is None:
                hessian, gradient = self.system(parts)
            h, g = hessian[np.ix_(free, free)], gradient[free]
            scale = np.sqrt(np.maximum(np.diag(h), 1e-12))
            step = np.zeros(6)
            damped = h / np.outer(scale, scale) + damping * np.eye(len(free))
            step[free] = np.linalg.solve(damped, g / scale) / scale
            trial = _Warp(warp.a + step[0], warp.b + step[1], warp.tx + step[2], warp.ty + step[3],
                          warp.gain + step[4], warp.bias + step[5])
            sane = (0.6 <= trial.gain <= 1.6 and abs(trial.degrees) <= 2 * _MAX_DEGREES
                    and 0.8 < trial.zoom / start_zoom < 1.25)
            trial_loss, trial_parts = self.evaluate(trial) if sane else (math.inf, None)
            if trial_loss < loss:
                warp, loss, parts, hessian = trial, trial_loss, trial_parts, None
                damping *= 0.3
                if abs(step[2]) < 0.02 * s and abs(step[3]) < 0.02 * s and max(abs(step[0]), abs(step[1])) < 2e-4:
                    break
            else:
                damping *= 10.0
                if damping > 1e3:
                    break
        return warp, loss


def _plausible(a: _Picture, b: _Picture, warp: _Warp, slack: float = 0.0) -> bool:
    """Rotation and zoom (relative to equal frames) within what near copies show."""
    zoom = warp.zoom * max(a.half_size()) / max(b.half_size())
    return (abs(warp.degrees) <= _MAX_DEGREES + 2 * slack
            and _ZOOM_RANGE[0] - slack <= zoom <= _ZOOM_RANGE[1] + slack)


def _align(a: _Picture, b: _Picture, weights: np.ndarray) -> _Warp:
    """The similarity that maps A onto B: of a few starting zooms, the best by phase correlation at half
    size, refined at half size and (when still plausible) at full size."""
    sa = np.tensordot(weights, a.planes[1], axes=1)
    h, w = sa.shape
    fa = np.fft.rfft2(sa - sa.mean(), s=(2 * h, 2 * w))
    sb = np.tensordot(weights, b.planes[1], axes=1)[..., None]
    xs, ys = a.grid(1)
    unit = max(b.half_size()) / max(a.half_size())
    starts = []
    for zoom in _START_ZOOMS:
        start = _Warp(zoom * unit, 0.0, 0.0, 0.0)
        xb, yb = start.map(xs, ys, 1)
        valid = b.inside(xb, yb, 1, 0.0).reshape(h, w)
        warped = b.sample(sb, xb, yb, 1)[0].reshape(h, w)
        dx, dy, peak = _phase_shift(fa, warped, valid, max(2, round(0.15 * max(h, w))))
        # A at y matches B at start(y + d): the shift d (half-size px) is B's translation scale * 2d (full size)
        starts.append((peak, _Warp(start.a, 0.0, 2 * start.a * dx, 2 * start.a * dy)))
    starts.sort(key=lambda item: -item[0])
    # refined at quarter size, where a start ~10 % off still converges; the other starts too while the fit
    # leaves much unexplained, if they correlated nearly as well. The rotation waits for full size: at
    # coarse sizes a compact shape leaves it open.
    coarse = _Fit(a, b, weights, 2)
    warp, loss = coarse.refine(starts[0][1], 5, rotate=False)
    for peak, start in starts[1:]:
        if loss > _RETRY_LOSS and peak >= 0.7 * starts[0][0]:
            warp, loss = min([(warp, loss), coarse.refine(start, 5, rotate=False)], key=lambda item: item[1])
    half = _Fit(a, b, weights, 1)
    warp, loss = half.refine(warp, 6, rotate=False)
    if (not _plausible(a, b, warp, slack=0.05) or min(_covers(a, b, warp, 1)) < 1 - _MAX_CUT - 0.25
            or loss > _GIVE_UP * half.spread):
        return warp  # no near copy: not worth the full-size refinement
    # at full size the luma joins in (sensor noise and fine texture live there); of a few turns, the two
    # that fit best are refined, and the better kept
    fine = weights + np.array([1.0, 0.0, 0.0], np.float32)
    fit = _Fit(a, b, fine / np.linalg.norm(fine), 0)
    turns = sorted((_turned(warp, degrees) for degrees in _START_DEGREES),
                   key=lambda turned: fit.evaluate(turned)[0])
    return min((fit.refine(turned, 5) for turned in turns[:2]), key=lambda item: item[1])[0]


def _turned(warp: _Warp, degrees: float) -> _Warp:
    """The warp turned by `degrees` more about A's centre."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return _Warp(warp.a * c - warp.b * s, warp.a * s + warp.b * c, warp.tx, warp.ty, warp.gain, warp.bias)


def _covers(a: _Picture, b: _Picture, warp: _Warp, level: int) -> tuple[float, float]:
    """Share of A's frame that falls in B's, and of B's frame that A covers."""
    xs, ys = a.grid(level)
    xb, yb = warp.map(xs, ys, level)
    cover_a = float(b.inside(xb, yb, level, -1e-3).mean())
    return cover_a, cover_a * float(np.prod(a.half_size()) / np.prod(b.half_size())) * warp.zoom ** 2


def _compare(a: _Picture, b: _Picture) -> tuple[float, float, float, float]:
    """(pixel_similarity, zoom, degrees, detail_correlation) of a pair of pictures; see `verify_pairs`.

    The alignment reads A's strongest edges, and a pad's inner edge would pull it astray: when only A
    looks padded, B is aligned onto A instead, and the zoom and rotation are reported the other way
    round."""
    if a.padded and not b.padded:
        similarity, zoom, degrees, detail = _compare_onto(b, a)
        return similarity, 1 / zoom, -degrees, detail
    return _compare_onto(a, b)


def _compare_onto(a: _Picture, b: _Picture) -> tuple[float, float, float, float]:
    weights = _structure(a, b)
    warp = _align(a, b, weights)
    zoom = warp.zoom * max(a.half_size()) / max(b.half_size())
    if not _plausible(a, b, warp):
        return 0.0, zoom, warp.degrees, math.nan
    xs, ys = a.grid(0)
    xb, yb = warp.map(xs, ys, 0)
    if max(_cut(a, b, warp), _cut(b, a, warp.inverse())) > _MAX_CUT:
        return 0.0, zoom, warp.degrees, math.nan
    # compare away from both frames' edges, where resampling mixes in what lies beyond
    valid = b.inside(xb, yb, 0, 1.0) & a.inside(xs, ys, 0, 1.0)
    if valid.sum() < 64:
        return 0.0, zoom, warp.degrees, math.nan
    detail, pixels = _detail_correlation(a, b, valid, xb[valid], yb[valid])
    unrelated = detail < _MIN_DETAIL_CORRELATION or detail * math.sqrt(pixels) < _MIN_DETAIL_Z
    if not math.isnan(detail) and unrelated:  # two photos, however alike
        return 0.0, zoom, warp.degrees, detail
    va = a.smooth.reshape(-1, 3)[valid].T
    vb = b.sample(b.smooth, xb[valid], yb[valid], 0)
    return _patch_agreement(a, valid, va, _photometric_fit(va, vb)), zoom, warp.degrees, detail


def _cut(a: _Picture, b: _Picture, warp: _Warp) -> float:
    """Share of A's pixels that B does not show (beyond a 1.5 px seam), not counting pad: pixels within
    _PAD_SPREAD of the median luma of A's outermost ring."""
    xs, ys = a.grid(0)
    xb, yb = warp.map(xs, ys, 0)
    luma = a.planes[0][0]
    rest = luma.ravel()[~b.inside(xb, yb, 0, -1.5)]
    if rest.size == 0:
        return 0.0
    ring = np.concatenate([luma[0], luma[-1], luma[1:-1, 0], luma[1:-1, -1]])
    return float((np.abs(rest - _median(ring)) > _PAD_SPREAD).sum()) / luma.size


def _photometric_fit(va: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """B's values (3, n) brought to A's: one gain for all channels (a brightness change scales them alike,
    kept within 0.6-1.6) and an offset per channel, by Tukey-weighted least squares started from gain 1 and
    the channel medians, so that an overlay stays out of the fit."""
    ma = np.array([[_median(channel)] for channel in va], np.float32)
    mb = np.array([[_median(channel)] for channel in vb], np.float32)
    gain = 1.0
    for _ in range(3):
        residual = np.sqrt((((va - ma) - gain * (vb - mb)) ** 2).sum(axis=0))
        limit = 4.685 * (1.4826 * _median(residual) + 2.0)
        weight = np.clip(1.0 - (residual / limit) ** 2, 0.0, None) ** 2
        total = max(float(weight.sum()), 1e-9)
        ma = (va * weight).sum(axis=1, keepdims=True) / total
        mb = (vb * weight).sum(axis=1, keepdims=True) / total
        gain = float(((va - ma) * (vb - mb) * weight).sum() / max(float(((vb - mb) ** 2 * weight).sum()), 1e-9))
        gain = min(max(gain, 0.6), 1.6)
    return gain * (vb - mb) + ma


def _patch_agreement(a: _Picture, valid: np.ndarray, va: np.ndarray, predicted: np.ndarray) -> float:
    """Share of structured patches (8 x 8 px at 64 px) whose residual varies at most _AGREE of their
    structure: of A's structured patches or of B's, whichever agree more (an overlay adds structure to one
    side only); when the patches that differ all lie in one box of at most _OVERLAY_SHARE of the picture,
    they are taken for an overlay and left out. Patches less than 3/4 inside the compared area do not
    count. Pictures with too little structure on either side are compared on all their patches instead."""
    h, w = a.planes[0].shape[1:]
    size = max(4, round(max(h, w) / 8))
    columns = -(-w // size)
    cells = columns * -(-h // size)
    cell_all = ((np.arange(h)[:, None] // size) * columns + np.arange(w)[None, :] // size).ravel()
    total = np.bincount(cell_all, minlength=cells)
    cell = cell_all[valid]
    count = np.bincount(cell, minlength=cells)
    used = count >= 0.75 * total

    def spread(values: np.ndarray) -> np.ndarray:  # root of the channel variances summed, per patch
        out = np.zeros(cells)
        for channel in values:
            mean = np.bincount(cell, channel, cells) / np.maximum(count, 1)
            out += np.bincount(cell, channel * channel, cells) / np.maximum(count, 1) - mean * mean
        return np.sqrt(np.maximum(out, 0.0))

    signal_a, signal_b, error = spread(va), spread(predicted), spread(va - predicted)
    agree = error <= _AGREE * np.maximum(signal_a, signal_b)
    rows, cols = np.divmod(np.arange(cells), columns)
    shares = []
    for signal in (signal_a, signal_b):
        structured = used & (signal >= _MIN_SIGNAL)
        differ = structured & ~agree
        if differ.any():  # differences within one small box: an overlay covers them, leave them out
            box = (np.ptp(rows[differ]) + 1) * (np.ptp(cols[differ]) + 1)
            if box <= _OVERLAY_SHARE * used.sum() and (structured & agree).sum() >= _MIN_PATCHES:
                structured &= ~differ
        if structured.sum() >= _MIN_PATCHES:
            shares.append(float(agree[structured].mean()))
    if shares:
        return max(shares)
    return float((error[used] <= _AGREE * _MIN_SIGNAL).mean()) if used.any() else 0.0


def _detail_correlation(a: _Picture, b: _Picture, valid: np.ndarray, xb: np.ndarray,
                        yb: np.ndarray) -> tuple[float, int]:
    """Correlation of the two pictures' fine detail over the plain (not busy) pixels of both that carry
    detail on both sides, and how many there are; NaN when fewer than _MIN_DETAIL_PIXELS."""
    da, busy_a = a.detail.reshape(-1, 2)[valid].T
    db, busy_b = b.sample(b.detail, xb, yb, 0)
    quiet = (busy_a < 3.0) & (busy_b < 3.0) & (np.abs(da) > 0.05) & (np.abs(db) > 0.05)
    if quiet.sum() < _MIN_DETAIL_PIXELS:
        return math.nan, int(quiet.sum())
    da, db = da[quiet].astype(np.float64), db[quiet].astype(np.float64)
    return float((da * db).sum() / math.sqrt(max((da * da).sum() * (db * db).sum(), 1e-12))), int(quiet.sum())


def verify_pairs(emb_a: np.ndarray, emb_b: np.ndarray, thumb_a: list[bytes], thumb_b: list[bytes],
                 min_cosine: float, min_pixel_similarity: float, size: int) -> dict[str, np.ndarray]:
    """Score each candidate pair on finer evidence, then decide it.

    emb_a, emb_b: (n, D) float embeddings of the pairs' two sides; thumb_a, thumb_b: their `thumbnail`s
    (made with thumbnail size `size`, 16..256). Returns arrays of length n:

    - cosine (float32): cosine similarity of the embeddings.
    - pixel_similarity (float32): how well the thumbnails agree once aligned, 0..1; NaN where the cosine
      already failed (the pixel comparison, a few ms, is skipped) or a thumbnail is under 12 px on a side.
      The thumbnails are aligned by a similarity transform (zoom, rotation, shift) and a brightness fit:
      a few starting zooms ranked by phase correlation, then Lucas-Kanade at quarter, half and full size,
      the rotation picked at full size from a few turns. The score is the share of structured 8 x 8
      patches (at 64 px) that agree (differences confined to one small box count as an overlay), but 0
      when the alignment is no near-copy edit or the two are different photos:
        * a rotation over 6 degrees or a zoom outside 0.75-1.34;
        * more than 22 % of either picture not shown by the other, pads (its border colour) aside;
        * fine detail (sensor noise, fine texture) in the plain parts of both that does not correlate:
          r < 0.1 or r * sqrt(pixels) < 5 (copies of one photo share it, look-alike photos do not).
    - zoom, degrees (float32): the alignment found (zoom relative to equal frames); NaN where skipped.
    - detail_correlation (float32): that fine-detail correlation; NaN where skipped or not measurable.
    - verified (bool): cosine >= min_cosine and pixel_similarity >= min_pixel_similarity.
    - reason (str): "verified", "embedding_differs" (checked first) or "pixels_differ".
    """
    emb_a, emb_b = np.asarray(emb_a, np.float32), np.asarray(emb_b, np.float32)
    n = len(thumb_a)
    if emb_a.shape != emb_b.shape or emb_a.ndim != 2 or len(emb_a) != n or len(thumb_b) != n:
        raise ValueError(f"expected two (n, D) embedding matrices and two lists of n thumbnails, got shapes "
                         f"{emb_a.shape} and {emb_b.shape} and {n} and {len(thumb_b)} thumbnails")
    if not 16 <= size <= 256:
        raise ValueError(f"thumbnail size must be in 16..256, got {size}")
    norms = np.linalg.norm(emb_a, axis=1) * np.linalg.norm(emb_b, axis=1)
    cosine = ((emb_a * emb_b).sum(axis=1) / np.maximum(norms, 1e-12)).astype(np.float32)
    scores = np.full((4, n), np.nan, np.float32)
    pictures: dict[bytes, _Picture] = {}  # a leader is compared with many members: decode it once
    for k in np.flatnonzero(cosine >= min_cosine):
        if min(thumb_a[k][1:3] + thumb_b[k][1:3]) + 1 < _MIN_SIDE:
            continue  # a sliver of a picture (a banner): nothing to align; its pixel similarity stays NaN
        pa = pictures.get(thumb_a[k]) or pictures.setdefault(thumb_a[k], _Picture.of(thumb_a[k]))
        pb = pictures.get(thumb_b[k]) or pictures.setdefault(thumb_b[k], _Picture.of(thumb_b[k]))
        scores[:, k] = _compare(pa, pb)
    similarity = scores[0]
    embedding_ok = cosine >= min_cosine
    verified = embedding_ok & (np.nan_to_num(similarity, nan=-1.0) >= min_pixel_similarity)
    reason = np.where(verified, "verified", np.where(embedding_ok, "pixels_differ", "embedding_differs"))
    return {"cosine": cosine, "pixel_similarity": similarity, "zoom": scores[1], "degrees": scores[2],
            "detail_correlation": scores[3], "verified": verified, "reason": reason.astype(object)}


# ---- 3. clusters ---------------------------------------------------------------------------------------

def canonical_order(i: np.ndarray, j: np.ndarray, verified: np.ndarray, area: np.ndarray,
                    digest: list[str] | np.ndarray) -> np.ndarray:
    """Each item's rank as its cluster's canonical image (lowest first), for `cluster` and `components`:
    the item verified against the most others first, then the larger image, then the smaller content hash,
    so a re-run picks the same one.

    The original a re-upload was made from matches every copy, while two copies edited each their own way
    (a padded one and a rotated one) may not match each other; leading with the best-connected item keeps
    such copies in one cluster. On the planted set (seeds 7, 11, 23) cluster recall went from 0.96-0.97
    (larger image first) to 0.97-0.99, precision staying 1.0.

    i, j, verified: the pairs, as for `cluster`; area: (n,) pixels of each item; digest: (n,) content hashes.
    """
    i, j, verified = np.asarray(i, np.int64), np.asarray(j, np.int64), np.asarray(verified, bool)
    n = len(area)
    degree = np.bincount(np.concatenate([i[verified], j[verified]]), minlength=n)
    order = np.empty(n, np.int64)
    order[np.lexsort((np.asarray(digest), -np.asarray(area, np.int64), -degree))] = np.arange(n)
    return order


def cluster(n: int, i: np.ndarray, j: np.ndarray, verified: np.ndarray,
            order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Duplicate clusters of n items from pairs (i[k], j[k]) of which verified[k] holds.

    order: (n,) ints, each item's rank as a canonical image (lowest first; e.g. `canonical_order`, or larger image first, then
    smaller content hash); ties are broken by item index. Returns (cluster, canonical): cluster[x] is the
    index of the canonical item of x's cluster, canonical[x] whether x is that item.

    The rule is leader clustering: items are taken in rank order; an item joins the cluster of the best-ranked
    canonical item it was verified against, and becomes a canonical item itself when there is none. So every
    member was verified against its cluster's canonical image, and a chain a ~ b ~ c never puts a and c
    together unless a ~ c was verified too: a union-find over the same pairs would let look-alikes link up
    through each other into blobs. The price: a near copy verified only against another member (two crops
    of a photo whose original ranks first but failed against one of them) starts a cluster of its own.
    """
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    verified = np.asarray(verified, bool)
    order = np.asarray(order)
    if order.shape != (n,) or not (len(i) == len(j) == len(verified)):
        raise ValueError(f"expected order of shape ({n},) and equal-length i, j, verified; got {order.shape}, "
                         f"{len(i)}, {len(j)}, {len(verified)}")
    if len(i) and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n):
        raise ValueError(f"pair indices must be in 0..{n - 1}")
    rank = np.empty(n, np.int64)
    rank[np.lexsort((np.arange(n), order))] = np.arange(n)
    a, b = i[verified], j[verified]
    keep = a != b
    a, b = a[keep], b[keep]
    # each pair as (later item, earlier item), grouped by the later item's rank, earlier ranks first
    later = np.where(rank[a] > rank[b], a, b)
    earlier = np.where(rank[a] > rank[b], b, a)
    by = np.lexsort((rank[earlier], rank[later]))
    later, earlier = later[by].tolist(), earlier[by].tolist()
    cluster_of = np.arange(n, dtype=np.int64)
    canonical = np.ones(n, bool)
    # a later item is decided after all its earlier neighbours, since those come first in rank order
    k = 0
    while k < len(later):
        item, joined = later[k], False
        while k < len(later) and later[k] == item:
            if not joined and canonical[earlier[k]]:
                cluster_of[item], canonical[item], joined = earlier[k], False, True
            k += 1
    return cluster_of, canonical
