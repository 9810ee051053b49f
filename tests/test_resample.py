import math

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
