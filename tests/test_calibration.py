"""Per-class teacher thresholds calibrated to a target precision (labeling.calibration), on generated scores
whose precision per score bin is known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tagmill.labeling.calibration import THRESHOLD_COLUMNS, calibrate, label_shift_ratios


def histogram(name: str, bins: dict[int, tuple[int, int]]) -> list[tuple]:
    return [(name, b, checked, right) for b, (checked, right) in bins.items()]


def frame(*rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame([r for part in rows for r in part], columns=["name", "bin", "checked", "right"])


def test_the_lowest_threshold_that_reaches_the_target_is_picked():
    # mug: right 9 of 10 from 0.85 up, 6 of 10 in 0.60-0.79, 1 of 10 below: at 0.85 precision 0.90; the
    # threshold is the edge of the lowest bin holding a check (never lower: nothing was checked there)
    mug = histogram("mug", {95: (5, 5), 85: (5, 4), 80: (0, 0), 70: (5, 3), 60: (5, 3), 30: (10, 1)})
    table = calibrate(frame(mug), ["mug"], {"mug"}, target=0.9, min_positives=5)
    assert list(table.columns) == list(THRESHOLD_COLUMNS)
    row = table.iloc[0]
    assert (row["status"], row["threshold"], row["checked"], row["right"]) == ("calibrated", 0.85, 10, 9)
    assert row["precision"] == 0.9
    # a lower target reaches further down: at 0.60, 15 right of 20
    row = calibrate(frame(mug), ["mug"], {"mug"}, target=0.75, min_positives=5).iloc[0]
    assert (row["threshold"], row["checked"], row["right"]) == (0.6, 20, 15)


def test_a_class_that_cannot_reach_the_target_is_refused():
    # birdcage tagged on speakers: right 3 of 20 whatever the threshold
    cage = histogram("birdcage", {99: (4, 1), 90: (8, 1), 60: (8, 1)})
    table = calibrate(frame(cage), ["birdcage"], {"birdcage"}, target=0.9, min_positives=2)
    row = table.iloc[0]
    assert row["status"] == "refused" and pd.isna(row["threshold"])
    assert (row["checked"], row["right"]) == (20, 3)


def test_a_class_with_few_checks_borrows_the_pooled_threshold_unless_they_fall_short():
    mug = histogram("mug", {98: (50, 50), 50: (20, 8)})
    rare = histogram("lamp", {97: (2, 2)})
    wrong = histogram("vase", {99: (6, 1)})
    # pooled: at 0.99, 1 right of 6; at 0.98, 51 of 56; at 0.97, 53 of 58 (0.91): the pooled threshold is 0.97
    table = calibrate(frame(mug, rare, wrong), ["lamp", "mug", "vase", "kite"], {"lamp", "mug", "vase", "kite"},
                      target=0.9, min_positives=5).set_index("name")
    assert (table.loc["mug", "status"], table.loc["mug", "threshold"]) == ("calibrated", 0.98)
    assert (table.loc["lamp", "status"], table.loc["lamp", "threshold"]) == ("pooled", 0.97)  # 2 right: too few
    assert (table.loc["kite", "status"], table.loc["kite", "threshold"]) == ("pooled", 0.97)  # nothing checked
    assert table.loc["vase", "status"] == "refused"  # 1 right of its 6 checks above the pooled threshold


def test_a_class_no_search_label_names_is_unchecked():
    table = calibrate(frame(histogram("mug", {95: (10, 10)})), ["mug", "Sofa bed"], {"mug"}, 0.9, 5)
    assert dict(zip(table["name"], table["status"])) == {"mug": "calibrated", "Sofa bed": "unchecked"}
    assert pd.isna(table.set_index("name").loc["Sofa bed", "threshold"])


def test_precision_is_estimated_with_the_checks_weighted():
    # "mug" is right on 40 checked mug images, and wrong on 4 images of a rare class ("cup") the checked images
    # hold only 4 of: 40 of 44 counted (0.91), but with each label's images weighing 1 in all, the cup images
    # weigh as much as the mug ones and the class's precision is 0.5
    rows = [("mug", 95, 40, 40, 40 * (1 / 40), 40 * (1 / 40)), ("mug", 96, 4, 0, 4 * (1 / 4), 0.0)]
    weighted = pd.DataFrame(rows, columns=["name", "bin", "checked", "right", "checked_weight", "right_weight"])
    counted = weighted.drop(columns=["checked_weight", "right_weight"])
    row = calibrate(counted, ["mug"], {"mug"}, target=0.9, min_positives=5).iloc[0]
    assert (row["status"], row["threshold"], row["checked"], row["right"]) == ("calibrated", 0.95, 44, 40)
    row = calibrate(weighted, ["mug"], {"mug"}, target=0.9, min_positives=5).iloc[0]
    assert row["status"] == "refused" and row["precision"] == 0.5
    assert (row["checked"], row["right"]) == (44, 40)  # the checks are still counted as they are


def test_checks_weigh_by_how_much_more_common_their_label_is_among_the_cold_start_images():
    # no cold-start check: a uniform target, each label's checks weigh alike in all (3 * 2/3 = 1 * 2)
    assert np.allclose(label_shift_ratios(np.array([3.0, 1.0]), np.array([0.0, 0.0])), [2 / 3, 2])
    # cold-start checks of the second label only: it is 4/5 of the (add-one smoothed) target mix, 1/4 of the checks
    assert np.allclose(label_shift_ratios(np.array([3.0, 1.0]), np.array([0.0, 3.0])),
                       [(1 / 5) / (3 / 4), (4 / 5) / (1 / 4)])
