"""Square-root resampling (MSURU 5.4).

    r(q) = max(1, sqrt(t / f(q)))      f(q): images carrying label q
    r(I) = max over the image's labels of r(q)

Because sqrt(t / f) falls as f grows, r(I) = max(1, sqrt(t / m(I))) with m(I) the smallest f(q) among the
image's labels. So t can be solved exactly from the histogram {m: number of images}, which is bounded by
the label count, never by the image count: the driver only ever sees that histogram.
"""

from __future__ import annotations

import math

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def total_repeats(t: float, histogram: dict[int, int]) -> float:
    """Sum of r(I) over images, given {m(I): images}."""
    return sum(count * max(1.0, math.sqrt(t / m)) for m, count in histogram.items())


def solve_threshold(histogram: dict[int, int], factor: float) -> float:
    """The t whose total repeats equal `factor` x the number of images (MSURU chose t so that the data
    roughly doubles). Monotone in t, so bisection; exact to 1e-9 relative."""
    images = sum(histogram.values())
    if images == 0 or factor <= 1.0:
        return 0.0
    target = factor * images
    low, high = 0.0, float(max(histogram))
    while total_repeats(high, histogram) < target:
        high *= 4.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if total_repeats(mid, histogram) < target:
            low = mid
        else:
            high = mid
        if high - low <= 1e-9 * high:
            break
    return high


def repeat_factors(image_labels: DataFrame, factor: float, seed: int) -> tuple[DataFrame, float]:
    """Per-image repeat factors.

    Needs image_key and label (one row per image-label pair). Returns (one row per image: image_key,
    min_label_images = m(I), repeat_factor = r(I), repeats = r(I) rounded stochastically with a uniform
    drawn from a hash of (seed, image_key), so it does not depend on partitioning; the threshold t).
    With factor 0 (off) every image repeats once.
    """
    per_label = image_labels.groupBy("label").agg(F.count(F.lit(1)).alias("f"))
    per_image = (image_labels.join(per_label, "label")
                 .groupBy("image_key").agg(F.min("f").alias("min_label_images")))
    if factor == 0:
        return per_image.select("image_key", "min_label_images", F.lit(1.0).alias("repeat_factor"),
                                F.lit(1).alias("repeats")), 0.0
    histogram = {row["m"]: row["n"] for row in per_image.groupBy(F.col("min_label_images").alias("m"))
                 .agg(F.count(F.lit(1)).alias("n")).collect()}
    t = solve_threshold(histogram, factor)
    r = F.greatest(F.lit(1.0), F.sqrt(F.lit(t) / F.col("min_label_images")))
    # xxhash64 is a fixed function of its inputs: the same image gets the same draw on any cluster.
    uniform = (F.abs(F.xxhash64(F.lit(seed), F.col("image_key")) % F.lit(1 << 30)) / F.lit(float(1 << 30)))
    repeats = F.floor(r) + (uniform < r - F.floor(r)).cast("int")
    return per_image.select("image_key", "min_label_images", r.alias("repeat_factor"),
                            repeats.cast("int").alias("repeats")), t
