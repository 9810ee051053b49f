import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagmill.labeling.resample import solve_threshold, total_repeats


def test_threshold_solved_by_hand():
    # Two images whose rarest label has 1 image, two whose rarest has 4. For t >= 4:
    # 2*sqrt(t) + 2*sqrt(t/4) = 3*sqrt(t) = 2 * 4 images  =>  t = 64/9.
    t = solve_threshold({1: 2, 4: 2}, factor=2.0)
    assert math.isclose(t, 64 / 9, rel_tol=1e-7)
    assert math.isclose(total_repeats(t, {1: 2, 4: 2}), 8.0, rel_tol=1e-7)


def test_factor_one_or_no_images_means_no_resampling():
    assert solve_threshold({3: 10}, factor=1.0) == 0.0
    assert solve_threshold({}, factor=2.0) == 0.0
    assert total_repeats(0.0, {3: 10, 7: 1}) == 11


@given(st.dictionaries(st.integers(1, 10_000), st.integers(1, 1_000), min_size=1, max_size=30),
       st.floats(1.01, 10.0))
def test_solved_threshold_hits_the_target_length(histogram, factor):
    t = solve_threshold(histogram, factor)
    assert math.isclose(total_repeats(t, histogram), factor * sum(histogram.values()), rel_tol=1e-6)


@pytest.mark.spark
def test_repeats_count_the_datasets_classes_in_the_training_split(spark):
    from tagmill.dataset.assemble import with_repeats

    # training split: class 0 on t1-t4, class 1 on t2 alone, class 2 on t5 alone; validation and test too.
    # Three samples' rarest class has 4 samples, two samples' has 1: for t >= 4 the repeats total
    # 3 * sqrt(t / 4) + 2 * sqrt(t) = 2.8 * 5 samples  =>  t = 16, repeats 2 and 4 (a sample takes its
    # rarest class's)
    rows = [("t1", [0], "train"), ("t2", [0, 1], "train"), ("t3", [0], "train"), ("t4", [0], "train"),
            ("t5", [2], "train"), ("v1", [2], "validation"), ("s1", [1], "test")]
    samples = spark.createDataFrame([(key, ids, [], split) for key, ids, split in rows],
                                    "image_key string, class_ids array<int>, labels array<int>, split string")
    out, t = with_repeats(samples, 2.8, seed=7)
    assert math.isclose(t, 16.0, rel_tol=1e-7)
    assert out.columns == ["image_key", "class_ids", "labels", "repeats", "split"]
    assert {r.image_key: r.repeats for r in out.collect()} == {
        "t1": 2, "t2": 4, "t3": 2, "t4": 2, "t5": 4, "v1": 1, "s1": 1}
    off, t = with_repeats(samples, 0.0, seed=7)
    assert t == 0.0 and {r.repeats for r in off.collect()} == {1}
