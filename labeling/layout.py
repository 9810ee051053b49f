"""The layout descriptor: where a picture is light and dark, for finding near-duplicate candidates.

A classifier's embedding is built to be the same for every picture of a category, so it cannot tell a
re-upload from another listing photographed alike: measured on the demo marketplace with a teacher trained
there, 64-bit ITQ codes of the embedding put 1.1 million pairs of 7,028 images within 10 bits, and
same-category look-alikes had embedding cosines of 0.97-0.9999, as high as the true duplicates'. The
layout of the picture (a blurred 12 x 12 luminance grid after solid padding is trimmed, normalised for
brightness and contrast) does differ between two listings, and survives re-encoding, resizing, brightness
changes and small crops and turns. Its compact code (labeling.codes) gives the Hamming candidates; the
shortlist keeps each image's few most similar candidates, and labeling.dedup verifies those on pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

GRID = 12
"""Side of the luminance grid: 144 values."""
_WORK = 64
_PAD_STD = 1.2
"""A border row or column whose luminance varies less than this (0-255) is padding, not picture."""


def trim_padding(luma: np.ndarray) -> np.ndarray:
    """The picture without solid borders (never less than half of it on either side)."""
    h, w = luma.shape
    top, bottom, left, right = 0, h, 0, w
    while bottom - top > h // 2 and luma[top, left:right].std() < _PAD_STD:
        top += 1
    while bottom - top > h // 2 and luma[bottom - 1, left:right].std() < _PAD_STD:
        bottom -= 1
    while right - left > w // 2 and luma[top:bottom, left].std() < _PAD_STD:
        left += 1
    while right - left > w // 2 and luma[top:bottom, right - 1].std() < _PAD_STD:
        right -= 1
    return luma[top:bottom, left:right]


def layout_descriptor(image: Image.Image) -> np.ndarray:
    """float32 (GRID * GRID,) unit vector: the trimmed, blurred luminance grid minus its mean."""
    luma = np.asarray(image.convert("L").resize((_WORK, _WORK), Image.Resampling.BOX), np.float32)
    trimmed = Image.fromarray(np.clip(trim_padding(luma), 0, 255).astype(np.uint8))
    grid = np.array(trimmed.filter(ImageFilter.GaussianBlur(2)).resize((GRID, GRID), Image.Resampling.BOX),
                    np.float32).ravel()
    grid -= grid.mean()
    return grid / (np.linalg.norm(grid) + 1e-6)


def shortlist(i: np.ndarray, j: np.ndarray, similarity: np.ndarray, per_item: int) -> np.ndarray:
    """Mask of the candidate pairs to verify: a pair is kept while either of its images has fewer than
    `per_item` kept pairs, taking pairs from the most similar down (ties by i, j). Bounds verification to
    about per_item pairs per image however many look-alikes share a code neighbourhood."""
    order = np.lexsort((j, i, -similarity))
    kept = np.zeros(len(i), bool)
    count: dict[int, int] = {}
    for k in order.tolist():
        a, b = int(i[k]), int(j[k])
        if count.get(a, 0) < per_item or count.get(b, 0) < per_item:
            kept[k] = True
            count[a] = count.get(a, 0) + 1
            count[b] = count.get(b, 0) + 1
    return kept
