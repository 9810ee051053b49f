"""The truth scoreboard's line on the teacher's cold-start tags (tagmill/demo/scoreboard.py), on hand-made
tables in the stages' layout."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tagmill import stages
from tagmill.demo.scoreboard import Truth, format_cold_start, score_cold_start

DAY = dt.date(2026, 11, 20)
TRUTH = Truth(leaf_of_product={"p1": "mug", "p2": "mug", "p3": "lamp"},
              lineage={"mug": ("mug", "group:kitchen", "domain:home"), "lamp": ("lamp", "group:light", "domain:home")},
              named={"mug": "mug", "lamp": "lamp", "kitchen": "group:kitchen"},
              leaves_with_listings=frozenset({"mug", "lamp"}))


def _write(root: Path, stage: str, table: str, rows: list[dict]) -> None:
    folder = Path(stages.table_path(str(root), stage, table, DAY))
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "part-0.parquet")


def test_cold_start_tags_are_scored_against_the_truth(tmp_path):
    assert score_cold_start(tmp_path, DAY, TRUTH) is None
    assert format_cold_start(None) == "  cold-start listings: no teacher tags"
    # a1 was searched; b1, b2 (p2) and c1 (p3) are cold start; c2 (p3) is cold and untagged
    _write(tmp_path, stages.MINE_LOGS, "image_labels", [{"image_key": "a1", "label": "mug"}])
    listed = (("a1", "p1"), ("b1", "p2"), ("b2", "p2"), ("c1", "p3"), ("c2", "p3"))
    _write(tmp_path, stages.MINE_LOGS, "images", [{"image_key": k, "product_id": p} for k, p in listed])
    _write(tmp_path, stages.IMAGE_PASS, "images", [{"image_key": k} for k in ("a1", "b1", "b2", "c1", "c2")])
    _write(tmp_path, stages.IMAGE_PASS, "teacher_tags", [
        {"image_key": "a1", "name": "lamp"},     # a searched image: not counted
        {"image_key": "b1", "name": "mug"},      # right
        {"image_key": "b2", "name": "kitchen"},  # right: the category's group
        {"image_key": "b2", "name": "lamp"},     # wrong
        {"image_key": "c1", "name": "mug"}])     # wrong
    cold = score_cold_start(tmp_path, DAY, TRUTH)
    assert cold == {"images": 4, "tagged": 3, "tags": 4, "right": 2}
    assert format_cold_start(cold) == ("  cold-start listing images (no search labeled them): 3 of 4 tagged by the "
                                       "teacher (0.750); their 4 tags right 0.500")
