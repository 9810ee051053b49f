"""The inner loop of the alignment (`labeling.alignment._Fit.refine`), compiled with numba.

Lucas-Kanade, forward additive with Levenberg-Marquardt steps, of B onto A on a similarity (a, b, tx, ty) and the
structure channel's gain and bias; residuals Tukey-weighted. Why compiled: the verifier refines some 12 warps per
candidate pair, each a few steps over ~1,000 points, and written in numpy each step was ~40 small calls whose
per-call cost was most of the image pass's time (12 ms per pair; the demo's first build verifies 35,000 pairs).
Here a whole refinement is one call. Sums run in float64 where numpy summed float32 pairwise, so scores may
differ from the numpy form in their last digits (benchmarks/near_duplicates_real.py measures the outcome).

`bilinear` is the sampler the verifier reads B with outside this loop (`labeling.verification`), compiled for the
same reason and bit for bit what its numpy form gave.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

LOSS_CAP = 30.0
"""A pixel's residual counts at most this much in an alignment's loss."""
_TUKEY = 4.685
"""Tukey's biweight constant, in robust standard deviations (1.4826 x the median absolute residual)."""
_MARGIN = 0.5
"""A point counts as in B when it lies at least this far (level px) inside B's frame."""


@njit(cache=True, nogil=True)
def _evaluate(xs, ys, values, stack, warp, frame, out):
    """The loss of `warp` (mean residual capped at LOSS_CAP over the points read that fall in B; LOSS_CAP and
    -1 when under a quarter of them, or 12, fall in B), and how many fell in B. out[:, :n] gets, per such
    point: its index, B's value, x and y gradient (bilinear samples) and the residual.

    frame: level scale s, B's half width and height at level 0, B's offsets (index of its frame centre) at
    this level."""
    s, half_w, half_h, off_x, off_y = frame[0], frame[1], frame[2], frame[3], frame[4]
    a, b = np.float32(warp[0]), np.float32(warp[1])
    tx, ty = np.float32(warp[2] / s), np.float32(warp[3] / s)
    gain, bias = np.float32(warp[4]), np.float32(warp[5])
    limit_x, limit_y = half_w / s - _MARGIN, half_h / s - _MARGIN
    h, w = stack.shape[0], stack.shape[1]
    n, count, total = len(xs), 0, 0.0
    for k in range(n):
        xb = a * xs[k] - b * ys[k] + tx
        yb = b * xs[k] + a * ys[k] + ty
        if abs(xb) > limit_x or abs(yb) > limit_y:
            continue
        x = min(max(xb + np.float32(off_x), np.float32(0.0)), np.float32(w - 1.001))
        y = min(max(yb + np.float32(off_y), np.float32(0.0)), np.float32(h - 1.001))
        x0, y0 = int(x), int(y)
        fx, fy = x - np.float32(x0), y - np.float32(y0)
        for c in range(3):
            top = stack[y0, x0, c] + (stack[y0, x0 + 1, c] - stack[y0, x0, c]) * fx
            bottom = stack[y0 + 1, x0, c] + (stack[y0 + 1, x0 + 1, c] - stack[y0 + 1, x0, c]) * fx
            out[1 + c, count] = top + (bottom - top) * fy
        residual = values[k] - (gain * out[1, count] + bias)
        out[0, count], out[4, count] = k, residual
        total += min(abs(residual), LOSS_CAP)
        count += 1
    if count < max(12.0, 0.25 * n):
        return LOSS_CAP, -1
    return total / count, count


@njit(cache=True, nogil=True)
def _select(values, k):
    """The k-th smallest of `values` (reordered in place): Hoare's quickselect. Written out, as is `_solve`,
    because numba's np.partition and np.linalg.solve took 8 of the 11 s numba spent compiling this module (once
    per checkout and Spark worker)."""
    lo, hi = 0, len(values) - 1
    while lo < hi:
        pivot = values[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return values[k]


@njit(cache=True, nogil=True)
def _solve(matrix, vector):
    """x with matrix @ x = vector (a small square system): Gaussian elimination with partial pivoting, as
    LAPACK's gesv does it."""
    n = len(vector)
    a, x = matrix.copy(), vector.copy()
    for k in range(n):
        p = k
        for i in range(k + 1, n):
            if abs(a[i, k]) > abs(a[p, k]):
                p = i
        if p != k:
            for j in range(n):
                a[k, j], a[p, j] = a[p, j], a[k, j]
            x[k], x[p] = x[p], x[k]
        for i in range(k + 1, n):
            f = a[i, k] / a[k, k]
            for j in range(k, n):
                a[i, j] -= f * a[k, j]
            x[i] -= f * x[k]
    for k in range(n - 1, -1, -1):
        s = x[k]
        for j in range(k + 1, n):
            s -= a[k, j] * x[j]
        x[k] = s / a[k, k]
    return x


@njit(cache=True, nogil=True)
def _normal_equations(xs, ys, parts, count, gain, s):
    """Tukey-weighted normal equations (6 x 6, 6) of a Gauss-Newton step on the points `_evaluate` kept."""
    centred = np.abs(parts[4, :count])
    median = _select(centred, count // 2)
    limit = _TUKEY * (1.4826 * median + 1.0)
    hessian, gradient, jac = np.zeros((6, 6)), np.zeros(6), np.empty(6)
    for j in range(count):
        k = int(parts[0, j])
        sampled, gx, gy, residual = parts[1, j], parts[2, j], parts[3, j], parts[4, j]
        jac[0] = gain * (gx * xs[k] + gy * ys[k])
        jac[1] = gain * (gy * xs[k] - gx * ys[k])
        jac[2] = gain * gx / s
        jac[3] = gain * gy / s
        jac[4] = sampled
        jac[5] = 1.0
        weight = max(1.0 - (abs(residual) / limit) ** 2, 0.0) ** 2
        for p in range(6):
            wp = weight * jac[p]
            gradient[p] += wp * residual
            for q in range(6):
                hessian[p, q] += wp * jac[q]
    return hessian, gradient


@njit(cache=True, nogil=True)
def refine(xs, ys, values, stack, frame, start, iterations, rotate, max_degrees):
    """The warp (a, b, tx, ty, gain, bias) after up to `iterations` steps from `start`, and its loss. A step is
    taken only if it lowers the loss and stays within what near copies show (gain 0.6-1.6, rotation up to twice
    max_degrees, zoom within a quarter of the start); rotate=False keeps b (the rotation) as it is.

    xs, ys, values: A's points read (centred level coordinates, float32) and their values; stack: B's values and
    x and y gradients (h, w, 3) at that level; frame: see `_evaluate`."""
    free = np.array([0, 1, 2, 3, 4, 5]) if rotate else np.array([0, 2, 3, 4, 5])
    m, s = len(free), frame[0]
    parts, trial_parts = np.empty((5, len(xs)), np.float32), np.empty((5, len(xs)), np.float32)
    warp = start.copy()
    loss, count = _evaluate(xs, ys, values, stack, warp, frame, parts)
    damping, start_zoom = 1e-3, math.hypot(warp[0], warp[1])
    hessian, gradient = np.zeros((6, 6)), np.zeros(6)  # typed here for numba; made at the first step
    stale = True
    for _ in range(iterations):
        if count < 0:
            break
        if stale:
            hessian, gradient = _normal_equations(xs, ys, parts, count, np.float32(warp[4]), s)
            stale = False
        damped, g, scale = np.empty((m, m)), np.empty(m), np.empty(m)
        for p in range(m):
            scale[p] = math.sqrt(max(hessian[free[p], free[p]], 1e-12))
        for p in range(m):
            g[p] = gradient[free[p]] / scale[p]
            for q in range(m):
                damped[p, q] = hessian[free[p], free[q]] / (scale[p] * scale[q])
            damped[p, p] += damping
        solved = _solve(damped, g)
        step = np.zeros(6)
        for p in range(m):
            step[free[p]] = solved[p] / scale[p]
        trial = warp + step
        zoom = math.hypot(trial[0], trial[1])
        sane = (0.6 <= trial[4] <= 1.6 and abs(math.degrees(math.atan2(trial[1], trial[0]))) <= 2 * max_degrees
                and 0.8 < zoom / start_zoom < 1.25)
        trial_loss, trial_count = math.inf, -1
        if sane:
            trial_loss, trial_count = _evaluate(xs, ys, values, stack, trial, frame, trial_parts)
        if trial_loss < loss:
            warp, loss, count = trial, trial_loss, trial_count
            parts, trial_parts = trial_parts, parts
            stale = True
            damping *= 0.3
            if abs(step[2]) < 0.02 * s and abs(step[3]) < 0.02 * s and max(abs(step[0]), abs(step[1])) < 2e-4:
                break
        else:
            damping *= 10.0
            if damping > 1e3:
                break
    return warp, loss


@njit(cache=True, nogil=True)
def bilinear(stack, x, y):
    """(c, n) float32 bilinear samples of an (h, w, c) float32 stack at index coordinates x, y (float32),
    clamped to the stack. Rounds as numpy did: the fractions (x - floor x) in float64, each interpolation in
    float64 rounded to float32."""
    h, w, c = stack.shape
    out = np.empty((c, len(x)), np.float32)
    high_x, high_y = np.float32(w - 1.001), np.float32(h - 1.001)
    for k in range(len(x)):
        xk = min(max(x[k], np.float32(0.0)), high_x)
        yk = min(max(y[k], np.float32(0.0)), high_y)
        x0, y0 = np.int32(xk), np.int32(yk)
        fx, fy = np.float64(xk) - np.float64(x0), np.float64(yk) - np.float64(y0)
        for ch in range(c):
            left = stack[y0, x0, ch]
            top = np.float32(np.float64(left) + np.float64(stack[y0, x0 + 1, ch] - left) * fx)
            left = stack[y0 + 1, x0, ch]
            bottom = np.float32(np.float64(left) + np.float64(stack[y0 + 1, x0 + 1, ch] - left) * fx)
            out[ch, k] = np.float32(np.float64(top) + np.float64(bottom - top) * fy)
    return out
