"""Near-duplicate verification (MSURU 3.2, second step): thumbnails and the aligned pixel comparison.

`verify_pairs`: each candidate pair (`labeling.candidates`) is decided on finer evidence: the cosine of the
float embeddings and a pixel comparison of the two thumbnails after aligning them (scale, rotation, shift,
photometric gain), which survives crop, pad, small rotation, resizing, re-encoding, brightness and small
overlays but not a different photograph of a look-alike product. This module owns the thumbnail format
(`thumbnail`, made once per decoded image by the image pass), the decoded pictures (`_Picture`) and the
comparison once aligned; the alignment itself is `labeling.alignment`. `labeling.clusters` groups the
verified pairs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from tagmill.labeling import lucas_kanade
from tagmill.labeling.alignment import _MAX_CUT, _Warp, _align, _median, _plausible, _quantile, _structure

THUMBNAIL_VERSION = 1
PIXEL_RULES = 3
"""The version of the pixel comparison: the rules below, the alignment (`labeling.alignment`) and how an image
is opened and made a thumbnail. Bump it with any change to them: an image pass reuses an earlier run's pixel
scores of a pair only under the same `pixel_scores_version`. 2: the alignment's inner loop compiled
(`labeling.lucas_kanade`, sums in float64), so a score may differ from version 1's in its last digits. 3: its
step solved by written-out elimination instead of LAPACK's, which may round differently."""


def pixel_scores_version(size: int) -> str:
    """What a pair's pixel scores depend on besides the two images' bytes: the rules and the thumbnail."""
    return f"pixel rules {PIXEL_RULES}, thumbnail v{THUMBNAIL_VERSION} {size} px"


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


# Rules of the pixel comparison. Distances are in full-size thumbnail px (64 px thumbnails), values 0-255.
# "Real-photo set": benchmarks/near_duplicates_real.py (tagmill/demo/realphotos.py, seed 5), its true pairs and
# the look-alike pairs among each image's 12 nearest candidates; "planted set": tagmill/demo/dupset.py, seed 7.
# (the alignment's rules, _MAX_CUT among them, are in labeling.alignment)
_PAD_SPREAD = 8.0
"""A pad pixel is within this many luma levels of the picture's border colour."""
_OVERLAY_SHARE = 0.16
"""Pixels that differ all within a box of at most this share of the compared area are taken for an overlay
(a caption, price tag or watermark of up to ~6 % of the picture)."""
_RESIDUAL_LEVELS = 20.0
"""A compared pixel agrees when its luma, one picture's brought to the other's by the tone fit
(`_tone_residual`), is within this many levels. Real-photo set: re-uploads leave at most 8 % of their
pixels beyond it (95th percentile per kind: padding 10 %, the rest 1-6 %), look-alikes 31 % as a median."""
_SATURATED = 4.0
"""The tone fit: a gain and an offset with the result clipped to the target picture's range, fitted both
ways (a copy is a function of its original, not the other way round where it clipped) and the better
kept. Real-photo set: brightened copies verified 0.957 -> 0.996 (a plain gain and offset fit missed
clipped whites), no look-alike let through. Lumas within this many levels of a picture's darkest or
lightest may be clipped (brightening clips at 255, and a contrast change after it moves that plateau,
e.g. to 236): the tone fit leaves them out."""
_MAX_GAIN = 1.8
"""The tone fit's gain stays within 1 / _MAX_GAIN.._MAX_GAIN: brightness and contrast edits of up to 25 %
each scale the luma by 0.56-1.56; two photos of one smooth scene could otherwise be stretched onto each
other (real-photo set: a look-alike pair at gain 0.42 agreed on 0.9995 of its pixels)."""
_RESIDUAL_TRIM = 0.02
"""The tone fit is refitted without this share of worst pixels (a caption's)."""
_MIN_LUMA_CORRELATION = 0.9
"""Below this luma correlation (worst _RESIDUAL_TRIM left out) a pair scores 0: a flat picture agrees
within _RESIDUAL_LEVELS with any other flat one, but only a copy follows its light and dark parts."""
_FLAT_LUMA = 2.0
"""Two pictures whose lumas both vary less than this (standard deviation, levels) are blank: no correlation
to measure, so they are compared as they are, without a gain or an offset."""
_MIN_DETAIL_CORRELATION, _MIN_DETAIL_PIXELS = 0.1, 200
"""Fine detail (sensor noise, fine texture) in the plain parts of two copies of one photo correlates; that
of two photos of look-alikes does not. It vetoes a pair when measured on at least _MIN_DETAIL_PIXELS plain
pixels and below _MIN_DETAIL_CORRELATION. Planted set (drawn pictures with sensor noise, plain
backgrounds, where the residual alone passes 1,184 of 3,987 look-alikes): copies 0.23-1.0 (5th percentile
up), look-alikes within +-0.05. Real-photo set: JPEG re-encoding leaves little shared detail, so on fewer
pixels it is too noisy to veto (the rule before, r * sqrt(pixels) >= 5 on any count, refused 25 % of the
true pairs); at 200 pixels it refuses 2 % of them."""
_SHARED_DETAIL = 0.5
"""Fine detail that correlates this well is one photo's: such a pair needs no teacher's embedding to agree
(a classifier's embedding is not brightness-invariant: brightened copies' cosines go down to 0.56).
Measured with the demo's teacher at min_cosine 0.85 (benchmarks/near_duplicates_real.py --teacher): real-
photo set precision 1.000 both ways, recall 0.955 -> 0.968 (brightened 0.903 -> 0.969); planted set
1.000 both ways, 0.901 -> 0.970 (brightened 0.571 -> 0.929); look-alikes' detail correlates within
+-0.12 at most. The cost: with a teacher every candidate pair is compared on pixels, as without one."""
_WEAK_DETAIL, _CLOSE_LEVELS = 0.7, 1.5
"""... except where the detail is weak: under _WEAK_DETAIL levels root mean square in either picture's
plain parts (uint8 rounding alone leaves 0.29), re-encoding and resizing leave little of it, so its
correlation cannot tell; such a pair passes when its lumas agree within _CLOSE_LEVELS for half its compared
pixels (after the tone fit). Real-photo set (pairs that the residual passes): the veto refused 59 true pairs
(JPEG and resized copies of photos) and no look-alike; with this exception 23 and none (the look-alikes
refused then had median residuals of 2.7-8); planted set: 1 -> 2 of 826 look-alikes pass, no copy refused
either way."""
_PAD_EDGE_STD = 1.0
"""A picture side whose luma varies less than this is taken for a pad's edge (at thumbnail size, pads vary
0-1.0, photos' plain backgrounds 1.1-5)."""
_MIN_SIDE = 12
"""Thumbnails narrower than this (in either direction) are not compared."""


def _edge_padded(image: np.ndarray) -> np.ndarray:
    """An array with the outer rows and columns of its last two axes repeated once (np.pad's "edge" mode,
    without its cost)."""
    rows = np.concatenate([image[..., :1, :], image, image[..., -1:, :]], axis=-2)
    return np.concatenate([rows[..., :1], rows, rows[..., -1:]], axis=-1)


def _box3(image: np.ndarray) -> np.ndarray:
    """3 x 3 mean over the last two axes, edges repeated (each plane of a stack on its own)."""
    p = _edge_padded(image)
    h, w = image.shape[-2:]
    return sum(p[..., i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0


def _max3(image: np.ndarray) -> np.ndarray:
    p = _edge_padded(image)
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
    and their x and y gradients: (h, w, 3, 3)); and (h, w, 2) the fine detail (luma minus its 3 x 3 mean)
    and how busy each pixel's neighbourhood is (the largest gradient of the 3 x 3 means, all channels
    summed, within one pixel)."""

    planes: list[np.ndarray]
    lk: list[np.ndarray]
    detail: np.ndarray
    grids: list[tuple[np.ndarray, np.ndarray]]
    padded: bool
    """Whether a side of the picture is a flat line of one colour, as a pad's outer edge is."""
    offsets: list[tuple[np.float32, np.float32]] = field(default_factory=list)
    """`offset` of each level, as float32."""

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
            values = plane if level == 0 else _box3(plane)
            gy, gx = np.gradient(values, axis=(1, 2))
            lk.append(np.ascontiguousarray(np.stack([values, gx, gy]).transpose(2, 3, 0, 1), np.float32))
        smooth = _box3(ycc)
        gy, gx = np.gradient(smooth, axis=(1, 2))
        edges = np.hypot(gx, gy)
        busy = edges[0] + edges[1] + edges[2]  # all channels summed
        detail = np.stack([ycc[0] - smooth[0], _max3(busy)], axis=-1)
        luma = ycc[0]
        plainest = min(float(side.std()) for side in (luma[0], luma[-1], luma[:, 0], luma[:, -1]))
        picture = cls(planes, lk, detail.astype(np.float32), [], plainest <= _PAD_EDGE_STD)
        picture.grids = [picture._grid(level) for level in range(len(planes))]
        picture.offsets = [tuple(np.float32(v) for v in picture.offset(level)) for level in range(len(planes))]
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
        return _centred_grid(*self.planes[level].shape[1:], *self.offset(level))

    def inside(self, x: np.ndarray, y: np.ndarray, level: int, margin: float) -> np.ndarray:
        """Whether centred level coordinates lie in the frame, at least `margin` level px from its edge."""
        hw, hh = self.half_size()
        s = 2.0 ** level
        return (np.abs(x) <= hw / s - margin) & (np.abs(y) <= hh / s - margin)

    def sample(self, stack: np.ndarray, x: np.ndarray, y: np.ndarray, level: int) -> np.ndarray:
        """Bilinear samples (c, n) of an (h, w, c) stack of this level at centred coordinates (clamped)."""
        off_x, off_y = self.offsets[level]
        return lucas_kanade.bilinear(stack, x + off_x, y + off_y)


@functools.cache
def _centred_grid(h: int, w: int, off_x: float, off_y: float) -> tuple[np.ndarray, np.ndarray]:
    """`_Picture.grid` of an h x w level (made once per size: thumbnails come in a few sizes), read-only."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    grid = (xs - np.float32(off_x)).ravel(), (ys - np.float32(off_y)).ravel()
    for axis in grid:
        axis.setflags(write=False)
    return grid


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
    detail, strength = _detail_correlation(a, b, valid, xb[valid], yb[valid])
    vetoed = detail < _MIN_DETAIL_CORRELATION  # two photos, however alike (NaN, not measurable, never vetoes)
    if vetoed and strength >= _WEAK_DETAIL:
        return 0.0, zoom, warp.degrees, detail
    agreement, typical = _residual_agreement(a, b, valid, xb[valid], yb[valid])
    if vetoed and typical > _CLOSE_LEVELS:  # detail as weak as rounding leaves cannot tell; lumas this close can
        return 0.0, zoom, warp.degrees, detail
    return agreement, zoom, warp.degrees, detail


def _residual_agreement(a: _Picture, b: _Picture, valid: np.ndarray, xb: np.ndarray,
                        yb: np.ndarray) -> tuple[float, float]:
    """(share, median residual in levels) of the compared pixels: the share whose luma agrees within
    _RESIDUAL_LEVELS once one luma is brought to the other's by the tone fit (`_tone_residual`: gain, offset
    and clipping, both ways, refitted without the worst _RESIDUAL_TRIM of the pixels so that a caption does
    not pull it); 0 when even then the two lumas correlate less than _MIN_LUMA_CORRELATION
    (and so does the pair's main colour axis). Two blank pictures (_FLAT_LUMA) are compared as they are.

    Why pixels and not patches of structure (the rule before; MSURU 3.2 leaves the test open): on real
    product pictures a look-alike, aligned as well as it goes, still agrees in most structured patches, and
    the patches' fine detail, which told them apart on drawn pictures, is mostly the JPEG encoder's noise,
    which two encodings of one photo do not share; a re-upload leaves its luma within a few levels nearly
    everywhere (JPEG q20, resizing to 0.4 and rotation included). When the pixels that differ lie (all but
    6 % of them) in one box of at most _OVERLAY_SHARE of the compared area, they are taken for a caption
    and count as agreeing."""
    la = a.planes[0][0].ravel()[valid].astype(np.float64)
    lb = b.sample(b.planes[0][0][..., None], xb, yb, 0)[0].astype(np.float64)
    if max(la.std(), lb.std()) < _FLAT_LUMA:  # blank pictures: only a blank of about the same grey matches
        residual = np.abs(la - lb)
        return float((residual <= _RESIDUAL_LEVELS).mean()), float(np.median(residual))
    # the copy is a function of the original, not the other way round where it clipped: both ways, the better
    residual, keep = min(_tone_residual(lb, la), _tone_residual(la, lb),
                         key=lambda fit: int((fit[0] > _RESIDUAL_LEVELS).sum()))
    if _correlation(la[keep], lb[keep]) < _MIN_LUMA_CORRELATION:
        # a shape that differs from its background in hue, not brightness: the pair's main colour axis
        weights = _structure(a, b).astype(np.float64)
        ca = a.planes[0].reshape(3, -1)[:, valid].T.astype(np.float64) @ weights
        cb = b.sample(np.ascontiguousarray(b.planes[0].transpose(1, 2, 0)),
                      xb, yb, 0).T.astype(np.float64) @ weights
        if _correlation(ca[keep], cb[keep]) < _MIN_LUMA_CORRELATION:
            return 0.0, math.inf
    differ = residual > _RESIDUAL_LEVELS
    if differ.sum() >= 8:  # differences within one small box (most of them): a caption, excused as before
        xs, ys = (axis[valid] for axis in a.grid(0))
        x0, x1 = (_quantile(xs[differ], q) for q in (0.03, 0.97))
        y0, y1 = (_quantile(ys[differ], q) for q in (0.03, 0.97))
        box = (xs >= x0 - 1) & (xs <= x1 + 1) & (ys >= y0 - 1) & (ys <= y1 + 1)
        if box.mean() <= _OVERLAY_SHARE:
            differ &= ~box
    return float(1.0 - differ.mean()), float(np.median(residual))


def _tone_residual(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|y - clip(gain * x + offset)| per pixel, clipped to y's range: brightness and contrast with the
    saturation they cause. The gain and offset are fitted (least squares) on the pixels off y's ends
    (_SATURATED levels), refitted without the worst _RESIDUAL_TRIM of the pixels so that a caption does not
    pull them; also returns the pixels kept in that fit."""
    low, high = float(y.min()), float(y.max())
    inner = (y > low + _SATURATED) & (y < high - _SATURATED)
    keep = np.ones(len(x), bool)
    for _ in range(2):
        fit = keep & inner if (keep & inner).sum() >= 64 else keep
        design = np.stack([x[fit], np.ones(int(fit.sum()))], axis=1)
        gain, offset = np.linalg.lstsq(design, y[fit], rcond=None)[0]
        if not 1 / _MAX_GAIN <= gain <= _MAX_GAIN:  # no brightness or contrast edit: held to the nearest one
            gain = float(np.clip(gain, 1 / _MAX_GAIN, _MAX_GAIN))
            offset = float((y[fit] - gain * x[fit]).mean())
        residual = np.abs(y - np.clip(gain * x + offset, low, high))
        keep = residual <= _quantile(residual, 1.0 - _RESIDUAL_TRIM)
    return residual, keep


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / math.sqrt(max(float((x * x).sum() * (y * y).sum()), 1e-12)))


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


def _detail_correlation(a: _Picture, b: _Picture, valid: np.ndarray, xb: np.ndarray,
                        yb: np.ndarray) -> tuple[float, float]:
    """Correlation of the two pictures' fine detail over the plain (not busy) pixels of both that carry
    detail on both sides (NaN when fewer than _MIN_DETAIL_PIXELS), and the detail's strength: the smaller
    of the two pictures' root mean square detail over their plain pixels (0 when none)."""
    da, busy_a = a.detail.reshape(-1, 2)[valid].T
    db, busy_b = b.sample(b.detail, xb, yb, 0)
    plain = (busy_a < 3.0) & (busy_b < 3.0)
    strength = math.sqrt(min(float(np.mean(da[plain] ** 2)), float(np.mean(db[plain] ** 2)))) if plain.any() else 0.0
    quiet = plain & (np.abs(da) > 0.05) & (np.abs(db) > 0.05)
    if quiet.sum() < _MIN_DETAIL_PIXELS:
        return math.nan, strength
    da, db = da[quiet].astype(np.float64), db[quiet].astype(np.float64)
    return float((da * db).sum() / math.sqrt(max((da * da).sum() * (db * db).sum(), 1e-12))), strength


def verify_pairs(emb_a: np.ndarray | None, emb_b: np.ndarray | None, thumb_a: list[bytes], thumb_b: list[bytes],
                 min_cosine: float, min_pixel_similarity: float, size: int,
                 earlier: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Score each candidate pair on finer evidence, then decide it.

    emb_a, emb_b: (n, D) float embeddings of the pairs' two sides, or both None without a teacher (the
    pixels alone decide); thumb_a, thumb_b: their `thumbnail`s (made with thumbnail size `size`, 16..256).
    Returns arrays of length n:

    - cosine (float32): cosine similarity of the embeddings; NaN without embeddings.
    - pixel_similarity (float32): how well the thumbnails agree once aligned, 0..1; NaN where a thumbnail
      is under 12 px on a side.
      The thumbnails are aligned by a similarity transform (zoom, rotation, shift) and a brightness fit:
      a few starting zooms ranked by phase correlation, then Lucas-Kanade at quarter, half and full size,
      the rotation picked at full size from a few turns. The score is the share of compared pixels whose
      luma agrees within 20 levels after a tone fit (gain, offset and the clipping brightening causes;
      differences confined to one small box count as an overlay), but 0 when the alignment is no
      near-copy edit or the two are different photos:
        * a rotation over 6 degrees or a zoom outside 0.75-1.34;
        * more than 22 % of either picture not shown by the other, pads (its border colour) aside;
        * lumas that correlate less than 0.9 once aligned (a copy follows the original's light and dark);
        * fine detail (sensor noise, fine texture) in the plain parts of both that does not correlate:
          r < 0.1 over at least 200 such pixels (copies of one photo share it, look-alike photos do not),
          unless that detail is as weak as rounding leaves (under 0.7 levels) and the lumas agree within
          1.5 levels for half the pixels.
    - zoom, degrees (float32): the alignment found (zoom relative to equal frames); NaN where skipped.
    - detail_correlation (float32): that fine-detail correlation; NaN where skipped or not measurable.
    - verified (bool): pixel_similarity >= min_pixel_similarity, and cosine >= min_cosine unless the fine
      detail is shared (detail_correlation >= 0.5: copies of one photo, which a classifier's embedding of
      a brightened copy may not see).
    - reason (str): "verified", "embedding_differs" (checked first) or "pixels_differ".
    """
    n = len(thumb_a)
    no_embeddings = emb_a is None and emb_b is None  # no teacher: the pixels alone decide
    if no_embeddings:
        emb_a = emb_b = np.full((n, 1), np.nan, np.float32)
    emb_a, emb_b = np.asarray(emb_a, np.float32), np.asarray(emb_b, np.float32)
    if emb_a.shape != emb_b.shape or emb_a.ndim != 2 or len(emb_a) != n or len(thumb_b) != n:
        raise ValueError(f"expected two (n, D) embedding matrices and two lists of n thumbnails, got shapes "
                         f"{emb_a.shape} and {emb_b.shape} and {n} and {len(thumb_b)} thumbnails")
    if not 16 <= size <= 256:
        raise ValueError(f"thumbnail size must be in 16..256, got {size}")
    norms = np.linalg.norm(emb_a, axis=1) * np.linalg.norm(emb_b, axis=1)
    cosine = ((emb_a * emb_b).sum(axis=1) / np.maximum(norms, 1e-12)).astype(np.float32)
    scores = np.full((4, n), np.nan, np.float32)
    reused = np.zeros(n, bool)
    if earlier is not None:
        earlier = np.asarray(earlier, np.float32)
        if earlier.shape != (4, n):
            raise ValueError(f"expected (4, {n}) earlier pixel scores, got shape {earlier.shape}")
        reused = ~np.isnan(earlier[0])
        scores[:, reused] = earlier[:, reused]
    pictures: dict[bytes, _Picture] = {}  # a leader is compared with many members: decode it once
    for k in np.flatnonzero(~reused):  # with embeddings too: shared fine detail overrules them
        if min(thumb_a[k][1:3] + thumb_b[k][1:3]) + 1 < _MIN_SIDE:
            continue  # a sliver of a picture (a banner): nothing to align; its pixel similarity stays NaN
        pa = pictures.get(thumb_a[k]) or pictures.setdefault(thumb_a[k], _Picture.of(thumb_a[k]))
        pb = pictures.get(thumb_b[k]) or pictures.setdefault(thumb_b[k], _Picture.of(thumb_b[k]))
        scores[:, k] = _compare(pa, pb)
    similarity = scores[0]
    embedding_ok = (np.ones(n, bool) if no_embeddings else cosine >= min_cosine) | (
        np.nan_to_num(scores[3], nan=-1.0) >= _SHARED_DETAIL)
    verified = embedding_ok & (np.nan_to_num(similarity, nan=-1.0) >= min_pixel_similarity)
    reason = np.where(verified, "verified", np.where(embedding_ok, "pixels_differ", "embedding_differs"))
    return {"cosine": cosine, "pixel_similarity": similarity, "zoom": scores[1], "degrees": scores[2],
            "detail_correlation": scores[3], "verified": verified, "reason": reason.astype(object),
            "reused": reused}
