"""Geometric alignment of two thumbnails for `labeling.verification`: the similarity transform (zoom,
rotation, shift) and brightness fit that map one picture onto the other, and what a near-copy edit can be.

`_align`: a few starting zooms ranked by phase correlation at half size, then Lucas-Kanade (`_Fit`; its loop
is compiled, `labeling.lucas_kanade`) at quarter, half and full size, the rotation picked at full size from a
few turns. It reads the pyramids of
`labeling.verification._Picture` (a decoded thumbnail); `_plausible` and `_MAX_CUT` bound the zoom,
rotation and cut of a near copy, for the comparison as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tagmill.labeling import lucas_kanade

if TYPE_CHECKING:
    from tagmill.labeling.verification import _Picture

# Rules of the alignment. Distances are in full-size thumbnail px (64 px thumbnails), values 0-255; the
# figures quoted were measured on tagmill/demo/dupset.py (seeds 7, 11, 23).
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
_RETRY_LOSS = 6.0
"""A coarse fit this poor also tries the runner-up starting zoom."""
_GIVE_UP = 0.6
"""A pair whose half-size fit leaves this share of A's structure unexplained is no near copy (near copies
leave at most 0.3 in the planted set, look-alikes 0.5 as a median)."""


def _median(values: np.ndarray) -> float:
    k = len(values) // 2
    return float(np.partition(values, k)[k])


def _quantile(values: np.ndarray, q: float) -> np.floating:
    """np.quantile(values, q) (its default, linear method) to the last bit, without its overhead: ~70 us a
    call, several calls a pair."""
    position = q * (len(values) - 1)
    low = int(position)
    high, t = min(low + 1, len(values) - 1), position - low
    ordered = np.partition(values, [low, high])
    a, b = ordered[low], ordered[high]
    if t == 0:
        return a
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t  # numpy's _lerp, both branches


def _project(stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """stack (..., 3) . weights (3,): np.tensordot(stack, weights, axes=([-1], [0])) to the last bit, without its
    overhead."""
    return np.dot(stack.reshape(-1, 3), weights.reshape(3, 1)).reshape(stack.shape[:-1])


def _mix(weights: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """weights (3,) . planes (3, h, w): np.tensordot(weights, planes, axes=1) to the last bit, without its
    overhead."""
    return np.dot(weights.reshape(1, 3), planes.reshape(3, -1)).reshape(planes.shape[1:])


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


def _phase_shifts(fa: np.ndarray, b: np.ndarray, valid_b: np.ndarray,
                  max_shift: int) -> list[tuple[int, int, float]]:
    """Per picture of b (k, h, w): the whole-pixel shift d with A(y) ~ b(y + d), |d| <= max_shift, by phase
    correlation against A's spectrum fa (of A zero-padded to twice its size), and the height of the peak. The k
    pictures go through the FFTs together: per call, numpy's overhead was most of their cost."""
    k, h, w = b.shape
    centred = np.empty_like(b)
    for i in range(k):
        centred[i] = np.where(valid_b[i], b[i] - (b[i][valid_b[i]].mean() if valid_b[i].any() else 0.0), 0.0)
    cross = np.conj(fa) * np.fft.rfft2(centred, s=(2 * h, 2 * w))
    magnitude = np.abs(cross)
    cross /= magnitude + 1e-3 * magnitude.max(axis=(1, 2), keepdims=True) + 1e-12
    corr = np.fft.irfft2(cross, s=(2 * h, 2 * w))
    steps = np.r_[0:max_shift + 1, -max_shift:0]
    windows = corr[:, (steps % (2 * h))[:, None], (steps % (2 * w))[None, :]]
    found = []
    for window in windows:
        iy, ix = np.unravel_index(int(np.argmax(window)), window.shape)
        found.append((int(steps[ix]), int(steps[iy]), float(window[iy, ix])))
    return found


class _Fit:
    """Lucas-Kanade (forward additive, Levenberg-Marquardt steps) of B onto A at one pyramid level, on the
    similarity and the structure channel's gain and bias. At levels 1 and 2 it reads A's pixels with a clear
    gradient (3 x 3 means); at full size one pixel in four, so that the fine detail two copies share pins
    down what compact shapes leave open. Residuals get Tukey weights, so an overlay or a cut-off part does
    not pull."""

    def __init__(self, a: _Picture, b: _Picture, weights: np.ndarray, level: int):
        sa, gx_a, gy_a = np.moveaxis(_project(a.lk[level], weights), 2, 0)
        self.stack = _project(b.lk[level], weights)  # B's values and gradients (h, w, 3)
        xs, ys = a.grid(level)
        if level == 0:
            h, w = sa.shape
            keep = ((np.arange(h)[:, None] % 2 == 0) & (np.arange(w)[None, :] % 2 == 0)).ravel()
        else:
            strength = np.hypot(gx_a, gy_a).ravel()
            upper = float(_quantile(strength, 0.75))
            keep = strength >= max(upper, 2.0)
            if keep.sum() < 24:
                keep = strength >= upper
        self.xs, self.ys, self.values = xs[keep], ys[keep], np.ascontiguousarray(sa.ravel()[keep])
        half_w, half_h = b.half_size()
        # what `lucas_kanade` reads of B's frame: scale, half size, centre index at this level
        self.frame = np.array([2.0 ** level, half_w, half_h, *b.offsets[level]])
        self.spread = float(np.abs(self.values - _median(self.values)).mean()) + 1e-6
        """Mean absolute deviation of the values read: what a loss is measured against."""

    def refine(self, warp: _Warp, iterations: int, rotate: bool = True) -> tuple[_Warp, float]:
        """The warp after up to `iterations` steps from `warp`, and its loss (`lucas_kanade.refine`: the rules
        of a step); rotate=False keeps the rotation as it is."""
        start = np.array([warp.a, warp.b, warp.tx, warp.ty, warp.gain, warp.bias])
        found, loss = lucas_kanade.refine(self.xs, self.ys, self.values, self.stack, self.frame, start, iterations,
                                          rotate, _MAX_DEGREES)
        return _Warp(*(float(v) for v in found)), float(loss)


def _plausible(a: _Picture, b: _Picture, warp: _Warp, slack: float = 0.0) -> bool:
    """Rotation and zoom (relative to equal frames) within what near copies show."""
    zoom = warp.zoom * max(a.half_size()) / max(b.half_size())
    return (abs(warp.degrees) <= _MAX_DEGREES + 2 * slack
            and _ZOOM_RANGE[0] - slack <= zoom <= _ZOOM_RANGE[1] + slack)


def _align(a: _Picture, b: _Picture, weights: np.ndarray) -> _Warp:
    """The similarity that maps A onto B: of a few starting zooms, the best by phase correlation at half
    size, refined at half size and (when still plausible) at full size."""
    sa = _mix(weights, a.planes[1])
    h, w = sa.shape
    fa = np.fft.rfft2(sa - sa.mean(), s=(2 * h, 2 * w))
    sb = _mix(weights, b.planes[1])[..., None]
    xs, ys = a.grid(1)
    unit = max(b.half_size()) / max(a.half_size())
    zoomed = [_Warp(zoom * unit, 0.0, 0.0, 0.0) for zoom in _START_ZOOMS]
    xb, yb = (np.concatenate(axis) for axis in zip(*(start.map(xs, ys, 1) for start in zoomed)))
    valid = b.inside(xb, yb, 1, 0.0).reshape(-1, h, w)
    warped = b.sample(sb, xb, yb, 1)[0].reshape(-1, h, w)
    shifts = _phase_shifts(fa, warped, valid, max(2, round(0.15 * max(h, w))))
    # A at y matches B at start(y + d): the shift d (half-size px) is B's translation scale * 2d (full size)
    starts = [(peak, _Warp(start.a, 0.0, 2 * start.a * dx, 2 * start.a * dy))
              for start, (dx, dy, peak) in zip(zoomed, shifts)]
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
    # at full size the luma joins in (sensor noise and fine texture live there); a few turns are refined a
    # little, the two that then fit best further, and the better kept. Real-photo set: five steps for the
    # best two turns by their starting loss (before) stopped short of a 5 degree turn (loss 6.5 where 1.5
    # was reachable): turned copies verified 0.891 -> 0.914, verification time +40 %.
    fine = weights + np.array([1.0, 0.0, 0.0], np.float32)
    fit = _Fit(a, b, fine / np.linalg.norm(fine), 0)
    tried = sorted((fit.refine(_turned(warp, degrees), 3) for degrees in _START_DEGREES), key=lambda item: item[1])
    return min((fit.refine(turned, 7) for turned, _ in tried[:2]), key=lambda item: item[1])[0]


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
