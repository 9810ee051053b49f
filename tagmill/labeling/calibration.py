"""Per-class teacher thresholds calibrated to a target precision, checked against the search log.

One global threshold on a sigmoid keeps mostly noise: on the demo, the teacher's tags at 0.5-0.6 were right 4 %
of the time and those at 0.9-1.0 74-90 %, and the errors come in pairs of look-alike classes. So each class gets
the lowest threshold at which its tags are right at least `target` of the time, estimated on the images that
can check it: images with search-log labels (right when one of them names the class, a tag read as the class
the taxonomy merged it into) that the teacher never trained on (a model is overconfident on its own training
images).

The checks are not a sample of the images the teacher is there to tag, those of listings no search touched: a
listing no search touched is most often of a tail category, while the checked images are mostly searched ones,
of head categories, among which a head class's false positives on tail images are rare. So each checked image is
weighed by how much more common its label is among the cold-start images than among the checks (importance
weights for a label shift, Lipton et al. 2018, "Detecting and correcting for label shift"), the cold-start
mix counted on the cold-start images that a seller's category checks, add-one smoothed (`label_shift_ratios`).
With no such image the target mix is uniform and every label's checks weigh alike in all (classes balanced);
where every check is a cold-start image the weights are about 1.

Measured on the demo against the truth, tags of cold-start images: with one teacher (checks mostly searched
images; their true class has a median of 15 training images against 74 for searched ones), right 0.701 of the
time calibrated on the raw mix (184 tags) and 0.782 with the classes balanced (156 tags). With cold-start fold
teachers (782 cold-start and 1,283 searched validation and test checks): balanced, 0.794 of the cold-start
images tagged at precision 0.967; raw, 0.830 at 0.959; reweighted to the cold-start mix, 0.834 at 0.984.

Scores arrive as a histogram (class, bin, checked, right and their weights) so that the driver holds one row
per class and bin, never one per image. A class with fewer than `min_positives` right checks above the
threshold borrows the threshold of all classes pooled, unless its own checks already show it below the target;
a class no threshold brings to the target gets no tags; a class no search-log label names cannot be checked at
all.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FLOOR = 0.05
"""Scores below this are not kept by the forward pass when calibrating: a threshold below it is never chosen."""
BINS = 100
"""Score bins over [0, 1] (bin = floor(score * BINS), 1.0 in the last): thresholds are multiples of 0.01."""
STATUSES = ("calibrated", "pooled", "refused", "unchecked")
"""calibrated: own threshold; pooled: too few checks of its own, the pooled threshold; refused: no threshold
reaches the target, no tags; unchecked: no search-log label names the class."""
THRESHOLD_COLUMNS = ("name", "status", "threshold", "precision", "checked", "right")
"""One row per teacher class: the threshold used (null when refused or unchecked), the estimated precision of
its tags at that threshold (checks weighted) and the checks (right of checked, counted) above it."""


def calibrate(histogram: pd.DataFrame, names: list[str], checkable: set[str], target: float,
              min_positives: int) -> pd.DataFrame:
    """THRESHOLD_COLUMNS rows, one per name in `names`.

    histogram: name, bin, checked (checked predictions in the bin), right (of those, right), checked_weight
    and right_weight (their summed image weights; without these columns every check weighs 1);
    checkable: the names some search-log label names."""
    if "checked_weight" not in histogram:
        histogram = histogram.assign(checked_weight=histogram["checked"], right_weight=histogram["right"])
    pooled = _lowest(_counts(histogram), target, min_positives)
    by_name = dict(tuple(histogram.groupby("name"))) if len(histogram) else {}
    rows = []
    for name in names:
        counts = _counts(by_name.get(name, histogram.iloc[0:0]))
        if name not in checkable:
            rows.append((name, "unchecked", None, None, 0, 0))
            continue
        own = _lowest(counts, target, min_positives)
        if own is not None:
            rows.append((name, "calibrated", *own))
            continue
        if pooled is not None:
            edge = pooled[0]
            checked, right, weight, right_weight = _above(counts, edge)
            # too few checks of its own to set a threshold; refused when even those show it below the target
            if not (checked >= min_positives and right_weight < target * weight * (1 - _TIE)):
                rows.append((name, "pooled", edge, pooled[1], checked, right))
                continue
        checked, right, weight, right_weight = _above(counts, FLOOR)
        rows.append((name, "refused", None, _precision(right_weight, weight) if weight else None, checked, right))
    return pd.DataFrame(rows, columns=list(THRESHOLD_COLUMNS))


_COLUMNS = ["checked", "right", "checked_weight", "right_weight"]
_TIE = 1e-9
"""Relative slack of the precision test: the weights are float sums in an order Spark does not fix, and a class
exactly at the target must not pass or fail with that order."""


def label_shift_ratios(checked: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """Per label, its share among the cold-start images over its share among all checks: checked[i] (checks of
    label i) and cold[i] (those on cold-start images), counts. The cold-start shares are add-one smoothed, so a
    label no cold-start image was checked by keeps a weight; with no cold-start check at all they are uniform."""
    target = (cold + 1.0) / (cold.sum() + len(cold))
    return target / (checked / checked.sum())


def _precision(right_weight: float, weight: float) -> float:
    # rounded for the same reason: the estimate becomes the teacher labels' confidence in the published bytes
    return round(right_weight / weight, 6)


def _counts(histogram: pd.DataFrame) -> np.ndarray:
    """(BINS, 4) checked, right, checked_weight, right_weight per bin."""
    out = np.zeros((BINS, len(_COLUMNS)))
    if len(histogram):
        grouped = histogram.groupby("bin")[_COLUMNS].sum()
        out[grouped.index.to_numpy(int)] = grouped.to_numpy(float)
    return out


def _above(counts: np.ndarray, edge: float) -> tuple[int, int, float, float]:
    checked, right, weight, right_weight = counts[int(round(edge * BINS)):].sum(axis=0)
    return int(round(checked)), int(round(right)), float(weight), float(right_weight)


def _lowest(counts: np.ndarray, target: float, min_positives: int) -> tuple[float, float, int, int] | None:
    """(threshold, precision, checked, right) at the lowest bin with checks whose checks at or above it reach
    `target` weighted precision with at least `min_positives` right (its lower edge: no lower, where nothing
    was checked); None when no bin does."""
    above = np.cumsum(counts[::-1], axis=0)[::-1]  # checked, right and their weights at or above each bin
    first = int(round(FLOOR * BINS))
    for b in range(first, BINS):
        checked, right, weight, right_weight = above[b]
        if counts[b, 0] and right >= min_positives and right_weight >= target * weight * (1 - _TIE):
            return round(b / BINS, 6), _precision(right_weight, weight), int(round(checked)), int(round(right))
    return None
