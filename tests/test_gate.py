"""The validation gate on tiny inline tables: clean tables pass; each injected bad row fails exactly the
expectation it breaks, names it and shows the row's key; the Data Docs and GateFailed say the same."""

from __future__ import annotations

import datetime as dt
import glob
import os

import pytest

from tagmill.dataset.expectations import checked_samples, mined_suites, sample_suites
from tagmill.dataset.gate import GateFailed, GateResult, TableSuite, check_gate, run_gate

pytestmark = pytest.mark.spark

T0 = dt.datetime(2026, 11, 20, 10, 0, 0)
PASSING_RUN_MAX_JOBS = 80
"""Upper bound on Spark jobs for the clean run of the four suites (measured: 56, with AQE on)."""

TUPLES_SCHEMA = ("query_norm string, product_id string, clicks long, contacts long, in_conversations long, "
                 "sessions long, events long, first_seen timestamp, last_seen timestamp")
IMAGE_LABELS_SCHEMA = ("label string, product_id string, image_path string, image_key string, tier string, "
                       "clicks long, contacts long, in_conversations long, sessions long, confidence double")
LABEL_TYPE = ("struct<class_id:int, name:string, confidence:double, source:string, tier:string, clicks:long, "
              "contacts:long, in_conversations:long, sessions:long>")
SAMPLES_SCHEMA = (f"image_key string, product_id string, image_path string, title string, class_ids array<int>, "
                  f"labels array<{LABEL_TYPE}>, repeats int, split string")
CLASSES_SCHEMA = ("class_id int, name string, path array<string>, support_train long, support_validation long, "
                  "support_test long")
CLASS_NAMES = ("chair", "lamp", "sofa")


def _key(n: int) -> str:
    return f"{n:020x}"


def _label(class_id: int, confidence: float) -> tuple:
    return (class_id, CLASS_NAMES[class_id] if class_id < len(CLASS_NAMES) else "?", confidence, "search_log",
            "contact", 4, 2, 1, 6)


def _sample(n: int, product: str, split: str, labels: list[tuple]) -> tuple:
    return (_key(n), product, f"img/{n}.jpg", f"title {product}", sorted({label[0] for label in labels}), labels,
            1 + n % 2, split)


CLEAN = {
    "tuples": [
        ("sofa", "p1", 5, 3, 1, 9, 14, T0, T0 + dt.timedelta(hours=1)),
        ("couch", "p1", 2, 2, 0, 2, 3, T0, T0),
        ("lamp", "p2", 4, 1, 1, 4, 6, T0, T0 + dt.timedelta(minutes=5)),
        ("chair", "p3", 1, 0, 0, 7, 7, T0, T0),
        ("lamp", "p4", 3, 3, 3, 3, 8, T0, T0),
    ],
    "image_labels": [
        ("sofa", "p1", "img/1.jpg", _key(1), "in_conversation", 5, 3, 1, 9, 0.97),
        ("sofa", "p1", "img/2.jpg", _key(2), "in_conversation", 5, 3, 1, 9, 0.97),
        ("lamp", "p2", "img/3.jpg", _key(3), "in_conversation", 4, 1, 1, 4, 0.9),
        ("chair", "p3", "img/4.jpg", _key(4), "click", 1, 0, 0, 7, 0.3),
        ("lamp", "p4", "img/5.jpg", _key(5), "in_conversation", 3, 3, 3, 3, 0.999),
    ],
    "samples": [
        _sample(1, "p1", "train", [_label(2, 0.97)]),
        _sample(2, "p1", "train", [_label(0, 0.2), _label(2, 0.97)]),
        _sample(3, "p2", "validation", [_label(1, 0.9)]),
        _sample(4, "p3", "test", [_label(0, 0.3)]),
        _sample(5, "p4", "train", [_label(1, 1.0)]),
        _sample(6, "p5", "test", []),  # a label-less sample is allowed
    ],
    "classes": [(0, "chair", [], 1, 0, 1), (1, "lamp", [], 1, 1, 0), (2, "sofa", ["furniture"], 2, 0, 0)],
}
SCHEMAS = {"tuples": TUPLES_SCHEMA, "image_labels": IMAGE_LABELS_SCHEMA, "samples": SAMPLES_SCHEMA,
           "classes": CLASSES_SCHEMA}


def _frames(spark, tables: dict[str, list]) -> dict:
    return {name: spark.createDataFrame(spark.sparkContext.parallelize(rows, 2), SCHEMAS[name])
            for name, rows in tables.items()}


def _mined(frames: dict, summary: dict | None = None) -> list[TableSuite]:
    summary = summary or {"tuples": len(CLEAN["tuples"]), "labels": {"image_label_pairs": len(CLEAN["image_labels"])}}
    return mined_suites(frames["tuples"], frames["image_labels"], summary)


def _sampled(frames: dict, expected: int | None = None) -> list[TableSuite]:
    return sample_suites(frames["samples"], frames["classes"], len(CLEAN["samples"]) if expected is None else expected)


def _replaced(name: str, index: int, row: tuple) -> dict[str, list]:
    rows = list(CLEAN[name])
    rows[index] = row
    return {**CLEAN, name: rows}


def _added(name: str, row: tuple) -> dict[str, list]:
    return {**CLEAN, name: [*CLEAN[name], row]}


# name: (tables, suites(frames), expected failure (suite, type, kwargs), key of the bad row or None)
CASES = {
    "null key": (
        _replaced("tuples", 2, ("lamp", None, 4, 1, 1, 4, 6, T0, T0)), _mined,
        ("mine-logs.tuples", "expect_column_values_to_not_be_null", {"column": "product_id"}), "lamp"),
    "contacts above clicks": (
        _replaced("image_labels", 2, ("lamp", "p2", "img/3.jpg", _key(3), "in_conversation", 1, 2, 1, 4, 0.9)),
        _mined,
        ("mine-logs.image_labels", "expect_column_pair_values_a_to_be_greater_than_b",
         {"column_A": "clicks", "column_B": "contacts", "or_equal": True}), _key(3)),
    "row count differs from the summary": (
        CLEAN, lambda f: _mined(f, {"tuples": 6, "labels": {"image_label_pairs": 5}}),
        ("mine-logs.tuples", "expect_table_row_count_to_equal", {"value": 6}), None),
    "class id outside the index": (
        _replaced("samples", 2, _sample(3, "p2", "validation", [_label(1, 0.9), _label(7, 0.5)])), _sampled,
        ("assemble.samples", "expect_column_values_to_be_in_set",
         {"column": "unknown_class_ids", "value_set": [0]}), _key(3)),
    "confidence 1.5 inside the labels": (
        _replaced("samples", 1, _sample(2, "p1", "train", [_label(0, 0.2), _label(2, 1.5)])), _sampled,
        ("assemble.samples", "expect_column_values_to_be_between", {"column": "max_confidence", "max_value": 1}),
        _key(2)),
    "one product in train and test": (
        _replaced("samples", 1, _sample(2, "p1", "test", [_label(2, 0.97)])), _sampled,
        ("assemble.samples", "expect_column_values_to_be_in_set", {"column": "product_splits", "value_set": [1]}),
        _key(2)),
    "duplicate image key": (
        _added("samples", (_key(1), "p1", "img/1b.jpg", "title p1", [2], [_label(2, 0.8)], 1, "train")),
        lambda f: _sampled(f, len(CLEAN["samples"]) + 1),
        ("assemble.samples", "expect_column_values_to_be_unique", {"column": "image_key"}), _key(1)),
}


@pytest.fixture(scope="module")
def gate_of(spark, tmp_path_factory):
    """gate_of(case) -> (GateResult, docs_dir); each case runs once per module."""
    done: dict[str, tuple[GateResult, str]] = {}

    def run(case: str) -> tuple[GateResult, str]:
        if case not in done:
            tables, suites, _, _ = CASES[case]
            docs = str(tmp_path_factory.mktemp("gate"))
            done[case] = run_gate(suites(_frames(spark, tables)), docs), docs
        return done[case]

    return run


@pytest.fixture(scope="module")
def clean_suites(spark):
    frames = _frames(spark, CLEAN)
    return _mined(frames) + _sampled(frames)


@pytest.fixture(scope="module")
def clean_gate(clean_suites, tmp_path_factory):
    return run_gate(clean_suites, str(tmp_path_factory.mktemp("gate")))


def test_clean_tables_pass(clean_gate, clean_suites):
    assert clean_gate.success, clean_gate.failures
    assert clean_gate.failures == ()
    assert os.path.isfile(clean_gate.docs_index) and clean_gate.docs_index.endswith("index.html")
    assert clean_gate.suites == 4
    assert [s.name for s in clean_suites] == ["mine-logs.tuples", "mine-logs.image_labels", "assemble.samples",
                                             "assemble.classes"]
    assert clean_gate.expectations == sum(len(s.expectations) for s in clean_suites)
    assert clean_gate.seconds > 0
    check_gate(clean_gate)  # does not raise


def test_passing_run_costs_few_spark_jobs_and_leaves_no_cache(clean_gate, clean_suites):
    # A passing run asks for counts only: no per-row sample query. Each derived frame is cached while
    # its suite runs and freed after; the caller's expectation objects are not bound to any GX suite.
    assert 0 < clean_gate.spark_jobs <= PASSING_RUN_MAX_JOBS
    assert not any(s.frame.is_cached for s in clean_suites)
    assert all(e.id is None for s in clean_suites for e in s.expectations)


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_row_fails_exactly_its_expectation(gate_of, case):
    _, _, (suite, kind, kwargs), key = CASES[case]
    result, _ = gate_of(case)
    assert not result.success
    assert [(f["suite"], f["expectation"]["type"], f["expectation"]["kwargs"]) for f in result.failures] == [
        (suite, kind, kwargs)]
    failure = result.failures[0]
    assert failure["expectation"]["description"]
    if key is None:  # a table-level expectation: an observed value, no rows
        assert failure["unexpected_count"] is None and failure["sample_rows"] == []
    else:
        assert failure["unexpected_count"] >= 1
        assert key in [value for row in failure["sample_rows"] for value in row.values()]


def test_row_count_failure_reports_the_observed_count(gate_of):
    result, _ = gate_of("row count differs from the summary")
    assert result.failures[0]["observed"] == len(CLEAN["tuples"])


def test_product_in_two_splits_samples_both_images(gate_of):
    result, _ = gate_of("one product in train and test")
    rows = result.failures[0]["sample_rows"]
    assert result.failures[0]["unexpected_count"] == 2
    assert sorted((r["image_key"], r["product_id"], r["product_splits"]) for r in rows) == [
        (_key(1), "p1", 2), (_key(2), "p1", 2)]


def test_data_docs_of_a_failing_run_name_the_failure_and_show_sample_rows(gate_of):
    result, docs = gate_of("one product in train and test")
    assert result.docs_index.startswith(docs) and os.path.isfile(result.docs_index)
    pages = glob.glob(os.path.join(os.path.dirname(result.docs_index), "validations", "assemble", "samples",
                               "**", "*.html"), recursive=True)
    assert len(pages) == 1
    html = open(pages[0], encoding="utf-8").read()
    assert result.failures[0]["expectation"]["description"] in html
    assert _key(2) in html  # the bad row's key, in the sampled-rows table
    assert "image_key" in html  # ... under its index column


def test_check_gate_raises_with_the_failures_and_the_docs_path(gate_of):
    result, _ = gate_of("duplicate image key")
    with pytest.raises(GateFailed) as err:
        check_gate(result)
    message = str(err.value)
    assert result.docs_index in message
    assert "assemble.samples: expect_column_values_to_be_unique(column='image_key'): 2 unexpected rows" in message
    assert _key(1) in message


def test_checked_samples_derives_the_columns_the_suite_checks(spark):
    tables = {**CLEAN, "samples": [*CLEAN["samples"][:1],
                                   _sample(2, "p1", "test", [_label(0, 0.2), _label(2, 1.5)]),
                                   _sample(3, "p2", "validation", [_label(1, 0.9), _label(7, -0.5)]),
                                   (_key(4), "p3", "img/4.jpg", "t", [1, 0], [_label(0, 0.3), _label(1, 0.4)], 1,
                                    "test"),
                                   _sample(6, "p5", "test", [])]}
    frames = _frames(spark, tables)
    got = sorted(tuple(r) for r in checked_samples(frames["samples"], frames["classes"]).select(
        "image_key", "unknown_class_ids", "class_ids_consistent", "min_confidence", "max_confidence",
        "product_splits").collect())
    assert got == [
        (_key(1), 0, True, 0.97, 0.97, 2),
        (_key(2), 0, True, 0.2, 1.5, 2),
        (_key(3), 1, True, -0.5, 0.9, 1),
        (_key(4), 0, False, 0.3, 0.4, 1),  # class_ids not sorted
        (_key(6), 0, True, None, None, 1),
    ]


def test_a_rerun_replaces_the_earlier_report_and_restores_the_callers_job_group(spark, tmp_path):
    frames = _frames(spark, _replaced("classes", 1, (5, "lamp", [], 1, 1, 0)))
    bad = [s for s in _sampled(frames) if s.name == "assemble.classes"]
    good = [s for s in _sampled(_frames(spark, CLEAN)) if s.name == "assemble.classes"]
    spark.sparkContext.setJobGroup("caller", "the caller's group")
    try:
        first = run_gate(bad, str(tmp_path))
        second = run_gate(good, str(tmp_path))
        assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") == "caller"
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        spark.sparkContext.setLocalProperty("spark.job.description", None)
    assert [f["expectation"]["kwargs"]["column"] for f in first.failures] == ["class_id_in_range"]
    assert second.success and second.docs_index == first.docs_index
    results = glob.glob(os.path.join(str(tmp_path), "gx", "uncommitted", "validations", "**", "*.json"),
                        recursive=True)
    assert len(results) == 1  # only the second run's


def test_malformed_suites_are_refused(spark, clean_suites, tmp_path):
    tuples = clean_suites[0]
    with pytest.raises(ValueError, match="unique names"):
        run_gate([tuples, tuples], str(tmp_path))
    with pytest.raises(ValueError, match=r"index columns \['image_key'\]"):
        run_gate([TableSuite(tuples.name, tuples.frame, tuples.expectations, ("image_key",))], str(tmp_path))
