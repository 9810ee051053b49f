"""The layout descriptor: where a picture is light, dark and coloured, for finding near-duplicate candidates.

A classifier's embedding is built to be the same for every picture of a category, so it cannot tell a
re-upload from another listing photographed alike: measured on the demo marketplace with a teacher trained
there, 64-bit ITQ codes of the embedding put 1.1 million pairs of 7,028 images within 10 bits, and
same-category look-alikes had embedding cosines of 0.97-0.9999, as high as the true duplicates'. The
layout of the picture (after solid padding is trimmed, blurred 12 x 12 grids of luma and both chroma
channels, each minus its mean) does differ between two listings, and survives re-encoding,
resizing, brightness changes and small crops and turns. Its compact code (labeling.codes) gives the Hamming
candidates; the shortlist keeps each image's few candidates of most similar layout (`layout_cosine`, on the
int8 `compact_layouts` in the candidate step), and labeling.verification verifies those on pixels.

Measured on the planted set (tagmill/demo/dupset.py, 969 images, 825 true pairs), a true pair's image among
the other's 4 nearest by float cosine: luma grid alone 755; with chroma 801 (a yellow shape on light blue has
almost no luma contrast); with chroma and neutral-only trimming 825. On the real-photo set
(benchmarks/near_duplicates_real.py, seed 5, shortlist 8), true pairs reaching verification: 0.82 with the
strict trimming of before (white padding on a black background stopped at the JPEG ringing between them:
padded copies 0.67), 0.89 with the ringing-tolerant trimming of `trim_box` (padded 0.87). A 6 x 6 chroma grid
(half the descriptor) gave 0.88 there but lost a padded pair of the small planted set of
tests/test_near_duplicates.py (seed 11: recall 0.94 < 0.95); grids of 8-16 and blurs of 1-3 px all gave
0.88-0.89: the descriptor, not its resolution, is the limit (crops and turns 0.81-0.87).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

_KEEP = 4
"""Trimming leaves at least 1 / _KEEP of each side. At a half (before), a narrow article (trousers, a third
of the frame wide) was trimmed to half the frame, from whichever side came first, so its padded copy's box
fell elsewhere. Real-photo set (benchmarks/near_duplicates_real.py, seed 5): true pairs reaching
verification 0.947 -> 0.959 (crops' misses 12 -> 2, padding's 16 -> 7); a third 0.958, an eighth 0.956."""
_ISLAND = 0.25
"""A band within this share of the box at a side, parted from the rest by a solid line, is cut off too (a
caption in the black margin of an article would otherwise widen the box): 0.959 -> 0.973 (captions' misses
20 -> 3, rotations' 19 -> 26); 0.15: 0.966, 0.2: 0.969. Planted set 0.995 -> 0.993."""
GRID = 12
"""Side of each channel's grid (luma and both chroma): 3 * GRID ** 2 = 432 values."""
_WORK = 64
REGIONS = {"top": (0, 7, 0, 12), "bottom": (5, 12, 0, 12), "left": (0, 12, 0, 7), "right": (0, 12, 5, 12),
           "centre": (2, 10, 2, 10)}
"""Parts of the layout grid (first row, end row, first column, end column) that get codes of their own in the
candidate step (labeling.candidates.layout_candidates): a caption, a crop or a turn that moves the whole
descriptor leaves some part close. Halves overlap by two rows or columns so a caption at mid-height does
not spoil both."""
_PAD_STD = 1.2
"""A border row or column whose luminance varies less than this (0-255) may be padding ..."""
_PAD_TINT = 8.0
"""... and is, when its mean colour is grey: no channel further than this from the others' mean. Padding
is white, black or grey; a coloured background that brightening clipped flat in one channel is picture
(trimming it moved the layout of 8 of 70 brightened copies out of their original's 4 nearest)."""
_EXTREME = (20.0, 235.0)
"""A near-black (median luma at most the first) or near-white (at least the second) line may also be
padding with JPEG ringing in it ..."""
_RINGING_LEVELS = 16.0
_RINGING_SHARE = 0.95
"""... when this share of its pixels is within _RINGING_LEVELS of its median luma (and those are grey).
Real-photo set: padded copies among their original's 8 nearest 0.64 with the strict rule alone, 0.88 with
this one; mid-tone lines keep the strict rule, so the demo's noisy light backgrounds stay picture."""


def _solid_lines(lines: np.ndarray) -> np.ndarray:
    """Whether each line of border pixels, a float (n, k, 3) stack, is padding (see _PAD_STD, _EXTREME): (n,)
    bool."""
    luma = lines.mean(axis=2)
    colour = lines.mean(axis=1)
    strict = (luma.std(axis=1) < _PAD_STD) & (np.abs(colour - colour.mean(axis=1, keepdims=True)).max(axis=1)
                                              < _PAD_TINT)
    # ringing needs a median at an extreme, so at least half the line there: only such lines are looked at
    maybe = np.flatnonzero(~strict & (((luma <= _EXTREME[0]).mean(axis=1) >= 0.5)
                                      | ((luma >= _EXTREME[1]).mean(axis=1) >= 0.5)))
    if maybe.size:
        luma, lines = luma[maybe], lines[maybe]
        median = np.median(luma, axis=1)
        near = np.abs(luma - median[:, None]) <= _RINGING_LEVELS
        count = near.sum(axis=1)
        grey = (lines * near[..., None]).sum(axis=1) / np.maximum(count, 1)[:, None]
        strict[maybe] = (((median <= _EXTREME[0]) | (median >= _EXTREME[1]))
                         & (count >= _RINGING_SHARE * luma.shape[1])
                         & (np.abs(grey - grey.mean(axis=1, keepdims=True)).max(axis=1) < _PAD_TINT))
    return strict


def trim_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the picture inside solid grey borders of a float (h, w, 3) array,
    never less than 1 / _KEEP of it on either side, without a caption-like island in a margin (_ISLAND).

    The four sides are trimmed in turn until none changes, so white padding on one side and the black
    background of the picture inside it both go whatever the side (a column of black background is not
    solid while the white padding rows above it are still in it)."""
    h, w = rgb.shape[:2]
    top, bottom, left, right = 0, h, 0, w
    changed = True
    while changed:
        before = (top, bottom, left, right)
        top += _leading_solid(rgb[top:top + max(0, bottom - top - h // _KEEP), left:right])
        bottom -= _leading_solid(rgb[top:bottom, left:right][::-1][:max(0, bottom - top - h // _KEEP)])
        columns = rgb[top:bottom].transpose(1, 0, 2)  # (w, rows, 3): a column per line
        left += _leading_solid(columns[left:left + max(0, right - left - w // _KEEP)])
        right -= _leading_solid(columns[left:right][::-1][:max(0, right - left - w // _KEEP)])
        if (top, bottom, left, right) == before:  # nothing solid left at the sides: a caption in a margin?
            top, bottom, left, right = _without_islands(rgb, top, bottom, left, right)
        changed = (top, bottom, left, right) != before
    return top, bottom, left, right


def _leading_solid(lines: np.ndarray, chunk: int = 8) -> int:
    """How many of the (n, k, 3) lines, from the first, are solid (judged `chunk` at a time: most pictures
    have none, padded ones a few)."""
    count = 0
    while count < len(lines):
        solid = _solid_lines(lines[count:count + chunk])
        if not solid.all():
            return count + int(np.argmin(solid))
        count += len(solid)
    return count


def _without_islands(rgb: np.ndarray, top: int, bottom: int, left: int, right: int) -> tuple[int, int, int, int]:
    """The box with a narrow band at each side cut off where a solid line parts it from the rest: within
    _ISLAND of the box's side, the band outside the innermost solid line (a caption in the margin)."""
    band = max(1, int(_ISLAND * (bottom - top)))
    top += _innermost_solid(rgb[top:top + band, left:right])
    bottom -= _innermost_solid(rgb[bottom - band:bottom, left:right][::-1])
    band = max(1, int(_ISLAND * (right - left)))
    columns = rgb[top:bottom].transpose(1, 0, 2)  # (w, rows, 3): a column per line
    left += _innermost_solid(columns[left:left + band])
    right -= _innermost_solid(columns[right - band:right][::-1])
    return top, bottom, left, right


def _innermost_solid(lines: np.ndarray) -> int:
    """Index of the last solid line of (n, k, 3) lines counted from the outer edge, the edge itself aside
    (0 when none)."""
    solid = np.flatnonzero(_solid_lines(lines))
    return int(solid[solid > 0].max(initial=0))


def layout_descriptor(image: Image.Image) -> np.ndarray:
    """float32 (3 * GRID ** 2,) unit vector: the trimmed, blurred Y, Cb and Cr grids, each minus its mean."""
    work = image.convert("RGB").resize((_WORK, _WORK), Image.Resampling.BOX)
    top, bottom, left, right = trim_box(np.asarray(work, np.float32))
    # blurred in RGB: PIL cannot blur YCbCr
    blurred = work.crop((left, top, right, bottom)).filter(ImageFilter.GaussianBlur(2)).convert("YCbCr")
    grid = np.asarray(blurred.resize((GRID, GRID), Image.Resampling.BOX), np.float32)
    out = (grid - grid.mean(axis=(0, 1))).transpose(2, 0, 1).ravel()
    return (out / (np.linalg.norm(out) + 1e-6)).astype(np.float32)


def compact_layouts(layouts: np.ndarray) -> np.ndarray:
    """(n, d) int8: each row of float layouts scaled so its largest value is +-127 and rounded; what the
    candidate step keeps per image (432 bytes) to rank by `layout_cosine`. Real-photo and planted sets:
    the shortlist's true pairs are the same as with the float rows to 0.001."""
    layouts = np.asarray(layouts, np.float32)
    peak = np.abs(layouts).max(axis=1, keepdims=True) if layouts.size else np.ones((len(layouts), 1), np.float32)
    return np.round(layouts * (127.0 / np.maximum(peak, 1e-12))).astype(np.int8)


def region_layouts(compact: np.ndarray, region: tuple[int, int, int, int], chunk: int = 1 << 18) -> np.ndarray:
    """(n, 3 * rows * columns) int8: the cells of `region` (one of REGIONS) of each channel of the int8
    layouts `compact` (compact_layouts), each channel minus its mean over the region, rescaled like
    compact_layouts: a descriptor of that part of the picture alone. Built `chunk` rows at a time, so no
    float copy of all layouts is made."""
    if compact.ndim != 2 or compact.shape[1] != 3 * GRID * GRID:
        raise ValueError(f"expected (n, {3 * GRID * GRID}) layouts, got shape {compact.shape}")
    top, bottom, left, right = region
    out = np.empty((len(compact), 3 * (bottom - top) * (right - left)), np.int8)
    for start in range(0, len(compact), chunk):
        cells = compact[start:start + chunk].reshape(-1, 3, GRID, GRID)[:, :, top:bottom, left:right]
        cells = cells.astype(np.float32)
        cells -= cells.mean(axis=(2, 3), keepdims=True)
        out[start:start + chunk] = compact_layouts(cells.reshape(len(cells), -1))
    return out


def shortlist(i: np.ndarray, j: np.ndarray, similarity: np.ndarray, per_item: int) -> np.ndarray:
    """Mask of the candidate pairs to verify: each image's `per_item` most similar pairs (ties: the other
    image's smaller index first; NaN least similar), a pair kept when it is among either image's. Keeps at
    most per_item pairs per image on average however many look-alikes share a code neighbourhood.
    Vectorised (two sorts of 2 x pairs); at 100,000 codes ~100 candidate pairs per image, under a second."""
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    m = len(i)
    if per_item < 1:
        raise ValueError(f"per_item must be at least 1, got {per_item}")
    kept = np.zeros(m, bool)
    if m == 0:
        return kept
    ends, others = np.concatenate([i, j]), np.concatenate([j, i])
    score = np.asarray(similarity, np.float64)
    score = np.where(np.isnan(score), -np.inf, score)
    order = np.lexsort((others, -np.concatenate([score, score]), ends))
    grouped = ends[order]
    first = np.r_[True, grouped[1:] != grouped[:-1]]
    position = np.arange(2 * m)
    rank = position - np.maximum.accumulate(np.where(first, position, 0))
    kept[order[rank < per_item] % m] = True
    return kept


def layout_cosine(layouts: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """float32 cosine of the layout rows (n, d) (float, or int8 from `compact_layouts`) of each pair
    (i[k], j[k]): what `shortlist` ranks by. Computed `chunk` pairs at a time, so a crowded code
    neighbourhood's millions of pairs need no (pairs, d) matrix. An all-zero row has cosine 0."""
    out = np.empty(len(i), np.float32)
    norms = np.maximum(np.sqrt(np.einsum("nd,nd->n", layouts, layouts, dtype=np.float32)), 1e-12)
    for start in range(0, len(i), chunk):
        a, b = i[start:start + chunk], j[start:start + chunk]
        dot = np.einsum("kd,kd->k", layouts[a], layouts[b], dtype=np.float32)
        out[start:start + chunk] = dot / (norms[a] * norms[b])
    return out
