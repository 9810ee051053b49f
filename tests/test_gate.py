"""The validation gate on tiny inline tables: clean tables pass; each injected bad row fails exactly the
expectation it breaks, names it and shows the row's key; the Data Docs and GateFailed say the same."""

from __future__ import annotations

import datetime as dt
import glob
import os

import pytest

from tagmill.dataset.expectations import checked_samples, mined_suites, sample_suites
from tagmill.dataset.gate import GateFailed, GateResult, TableSuite, check_gate, load_gx, run_gate

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
CLASSES_SCHEMA = ("class_id int, name string, path array<string>, taxonomy_id int, support_train long, "
                  "support_validation long, support_test long")
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
        _sample(7, "p6", "validation", [_label(1, 0.6)]),
        _sample(8, "p6", "validation", [_label(1, 0.6)]),
    ],
    "classes": [(0, "chair", [], 7, 1, 0, 1), (1, "lamp", [], 3, 1, 1, 0), (2, "sofa", ["furniture"], 12, 2, 0, 0)],
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


def _with(tables: dict[str, list], name: str, replace: dict[int, tuple] | None = None,
          add: tuple[tuple, ...] = ()) -> dict[str, list]:
    """A copy of `tables` whose table `name` has rows replaced (by position) and rows added."""
    rows = [(replace or {}).get(i, row) for i, row in enumerate(tables[name])]
    return {**tables, name: rows + list(add)}


# Bad rows, several per run, each breaking one rule: a run must fail exactly these expectations, and each
# failure must sample exactly the rows injected for it (so no bad row trips another rule).
FAULTY = {
    "mined": _with(_with(CLEAN, "tuples", {2: ("lamp", None, 4, 1, 1, 4, 6, T0, T0)}),  # null key
                   "image_labels", {2: ("lamp", "p2", "img/3.jpg", _key(3), "in_conversation", 1, 2, 1, 4, 0.9)}),
    "samples": _with(CLEAN, "samples", {
        1: _sample(2, "p1", "train", [_label(0, 0.2), _label(2, 1.5)]),  # a confidence above 1
        2: _sample(3, "p2", "validation", [_label(1, 0.9), _label(7, 0.5)]),  # class 7 is not in the index
        7: _sample(8, "p6", "test", [_label(1, 0.6)]),  # p6's other image is in validation
    }, add=((_key(5), "p4", "img/5b.jpg", "title p4", [1], [_label(1, 0.8)], 1, "train"),)),  # key 5 twice
}
MINED_SUMMARY = {"tuples": len(CLEAN["tuples"]), "labels": {"image_label_pairs": len(CLEAN["image_labels"]) + 1}}
# run, suite, expectation type, kwargs, index values of the rows it must sample (None: table-level)
FAULTS = {
    "null key": ("mined", "mine-logs.tuples", "expect_column_values_to_not_be_null", {"column": "product_id"},
                 [("lamp", None)]),
    "contacts above clicks": ("mined", "mine-logs.image_labels", "expect_column_pair_values_a_to_be_greater_than_b",
                              {"column_A": "clicks", "column_B": "contacts", "or_equal": True},
                              [(_key(3), "lamp", "p2")]),
    "row count differs from the summary": ("mined", "mine-logs.image_labels", "expect_table_row_count_to_equal",
                                           {"value": len(CLEAN["image_labels"]) + 1}, None),
    "confidence 1.5 inside the labels": ("samples", "assemble.samples", "expect_column_values_to_be_between",
                                         {"column": "max_confidence", "max_value": 1}, [(_key(2), "p1")]),
    "class id outside the index": ("samples", "assemble.samples", "expect_column_values_to_be_in_set",
                                   {"column": "unknown_class_ids", "value_set": [0]}, [(_key(3), "p2")]),
    "one product in validation and test": ("samples", "assemble.samples", "expect_column_values_to_be_in_set",
                                           {"column": "product_splits", "value_set": [1]},
                                           [(_key(7), "p6"), (_key(8), "p6")]),
    "duplicate image key": ("samples", "assemble.samples", "expect_column_values_to_be_unique",
                            {"column": "image_key"}, [(_key(5), "p4"), (_key(5), "p4")]),
}


@pytest.fixture(scope="module")
def clean_suites(spark):
    frames = _frames(spark, CLEAN)
    return _mined(frames) + _sampled(frames)


@pytest.fixture(scope="module")
def clean_gate(clean_suites, tmp_path_factory):
    return run_gate(clean_suites, str(tmp_path_factory.mktemp("gate")))


@pytest.fixture(scope="module")
def faulty_gate(spark, tmp_path_factory):
    """faulty_gate(run) -> GateResult of the FAULTY tables of that run; each run happens once per module."""
    done: dict[str, GateResult] = {}

    def run(name: str) -> GateResult:
        if name not in done:
            frames = _frames(spark, FAULTY[name])
            if name == "mined":
                suites = _mined(frames, MINED_SUMMARY)
            else:  # the classes are clean: leave them out
                suites = [s for s in _sampled(frames, len(FAULTY["samples"]["samples"]))
                          if s.name == "assemble.samples"]
            done[name] = run_gate(suites, str(tmp_path_factory.mktemp(f"gate-{name}")))
        return done[name]

    return run


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


@pytest.mark.parametrize("run", list(FAULTY))
def test_a_faulty_run_fails_only_the_injected_expectations(faulty_gate, run):
    result = faulty_gate(run)
    assert not result.success

    def ordered(failures):
        return sorted(failures, key=lambda f: (f[0], f[1], sorted(f[2].items())))

    assert ordered((f["suite"], f["expectation"]["type"], f["expectation"]["kwargs"]) for f in result.failures) == \
        ordered((suite, kind, kwargs) for r, suite, kind, kwargs, _ in FAULTS.values() if r == run)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_bad_row_fails_exactly_its_expectation_and_is_sampled(faulty_gate, fault):
    run, suite, kind, kwargs, rows = FAULTS[fault]
    result = faulty_gate(run)
    [failure] = [f for f in result.failures if f["suite"] == suite and f["expectation"]["type"] == kind
                 and f["expectation"]["kwargs"] == kwargs]
    assert failure["expectation"]["description"]
    if rows is None:  # a table-level expectation: the observed value, no rows
        assert failure["unexpected_count"] is None and failure["sample_rows"] == []
        assert failure["observed"] == len(CLEAN["image_labels"])
    else:
        index = {"mine-logs.tuples": ("query_norm", "product_id"),
                 "mine-logs.image_labels": ("image_key", "label", "product_id"),
                 "assemble.samples": ("image_key", "product_id")}[suite]
        assert failure["unexpected_count"] == len(rows)
        assert sorted(tuple(r[c] for c in index) for r in failure["sample_rows"]) == sorted(rows)


def test_product_in_two_splits_samples_both_images_with_their_count(faulty_gate):
    [failure] = [f for f in faulty_gate("samples").failures if f["expectation"]["kwargs"].get("column")
                 == "product_splits"]
    assert sorted((r["image_key"], r["product_splits"]) for r in failure["sample_rows"]) == [
        (_key(7), 2), (_key(8), 2)]


def test_data_docs_of_a_failing_run_name_the_failures_and_show_sample_rows(faulty_gate):
    result = faulty_gate("samples")
    assert os.path.isfile(result.docs_index)
    pages = glob.glob(os.path.join(os.path.dirname(result.docs_index), "validations", "assemble", "samples",
                                   "**", "*.html"), recursive=True)
    assert len(pages) == 1
    html = open(pages[0], encoding="utf-8").read()
    for failure in result.failures:
        assert failure["expectation"]["description"] in html
    for key in (_key(2), _key(3), _key(5), _key(7), _key(8)):  # the bad rows, in the sampled-rows tables
        assert key in html
    assert _key(1) not in html  # a good row is not sampled


def test_check_gate_raises_with_the_failures_and_the_docs_path(faulty_gate):
    result = faulty_gate("samples")
    with pytest.raises(GateFailed) as err:
        check_gate(result)
    message = str(err.value)
    assert result.docs_index in message
    assert f"4 of {result.expectations} expectations failed" in message
    assert "assemble.samples: expect_column_values_to_be_unique(column='image_key'): 2 unexpected rows" in message
    assert f"'image_key': '{_key(5)}'" in message


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
    frames = _frames(spark, _with(CLEAN, "classes", {1: (5, "lamp", [], 3, 1, 1, 0)}))
    classes = [s for s in _sampled(frames) if s.name == "assemble.classes"]
    spark.sparkContext.setJobGroup("caller", "the caller's group")
    try:
        first = run_gate(classes, str(tmp_path))
        assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") == "caller"
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        spark.sparkContext.setLocalProperty("spark.job.description", None)
    assert [f["expectation"]["kwargs"]["column"] for f in first.failures] == ["class_id_in_range"]
    assert [r["class_id"] for r in first.failures[0]["sample_rows"]] == [5]
    results = os.path.join(str(tmp_path), "gx", "uncommitted", "validations")
    assert len(glob.glob(os.path.join(results, "**", "*.json"), recursive=True)) == 1
    second = run_gate([], str(tmp_path))  # nothing to check: passes, and nothing of the first run is left
    assert second.success and second.spark_jobs == 0 and second.docs_index == first.docs_index
    assert glob.glob(os.path.join(results, "**", "*.json"), recursive=True) == []
    assert os.path.isfile(second.docs_index)


def test_an_expectation_that_cannot_run_fails_with_its_error(spark, tmp_path):
    gxe = load_gx().expectations
    frame = spark.createDataFrame(spark.sparkContext.parallelize([("a", 1), ("b", None), ("c", 3)], 2),
                                  "k string, v long")
    suite = TableSuite("any.table", frame, (gxe.ExpectColumnValuesToNotBeNull(column="nope"),
                                            gxe.ExpectColumnValuesToNotBeNull(column="v")))
    result = run_gate([suite], str(tmp_path))
    failures = sorted(result.failures, key=lambda f: f["expectation"]["kwargs"]["column"])
    assert [(f["expectation"]["kwargs"]["column"], f["unexpected_count"], f["sample_rows"]) for f in failures] == [
        ("nope", None, []), ("v", 1, [{"value": None}])]  # no index columns: the sampled values alone
    assert '"nope"' in failures[0]["observed"] and "does not exist" in failures[0]["observed"]


def test_malformed_suites_are_refused(spark, clean_suites, tmp_path):
    tuples = clean_suites[0]
    with pytest.raises(ValueError, match="unique names"):
        run_gate([tuples, tuples], str(tmp_path))
    with pytest.raises(ValueError, match=r"index columns \['image_key'\]"):
        run_gate([TableSuite(tuples.name, tuples.frame, tuples.expectations, ("image_key",))], str(tmp_path))


def _external_urls(html: str) -> list[str]:
    import re

    return re.findall(r"""(?:src|href)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]*)""", html, flags=re.I)


def test_gate_page_is_offline_and_shows_every_expectation_and_the_failures(clean_gate, faulty_gate, tmp_path):
    from tagmill.dataset.gate_page import append_history, history_entry, read_history, render_gate_page

    history = str(tmp_path / "gate" / "history.jsonl")
    result = faulty_gate("samples")
    for n, (gate, run_date) in enumerate([(clean_gate, "2026-11-19"), (result, "2026-11-20")]):
        append_history(history, history_entry(gate, run_date, f"2026-11-21T10:00:0{n}+00:00"))
    entries = read_history(history)
    assert [(e["run_date"], e["success"], e["failed"]) for e in entries] == [
        ("2026-11-19", True, 0), ("2026-11-20", False, len(result.failures))]
    assert len(entries[0]["results"]) == clean_gate.expectations and all(r["success"] for r in entries[0]["results"])
    assert sum(not r["success"] for r in entries[1]["results"]) == len(result.failures)
    html = render_gate_page(result, entries[-1], entries, "../gx/index.html", history)
    assert _external_urls(html) == [] and "http://" not in html and "https://" not in html
    assert "<script" not in html and 'href="../gx/index.html"' in html
    for failure in result.failures:
        assert failure["expectation"]["description"] in html
    for key in (_key(2), _key(3), _key(5), _key(7), _key(8)):  # the sampled bad rows
        assert key in html
    assert html.count("FAIL") >= len(result.failures) and "2026-11-19" in html and history in html
    # GE's own Data Docs, by contrast, load their styles from CDNs (why the page exists)
    assert _external_urls(open(result.docs_index, encoding="utf-8").read())


def test_gate_history_gains_one_entry_per_run_and_skips_a_torn_line(clean_gate, tmp_path):
    from tagmill.dataset.gate_page import append_history, history_entry, read_history

    history = str(tmp_path / "history.jsonl")
    assert read_history(history) == []
    append_history(history, history_entry(clean_gate, "2026-11-20", "2026-11-20T01:00:00+00:00"))
    with open(history, "a", encoding="utf-8") as f:
        f.write('{"started": "2026-11-20T01:30')  # a run killed mid-line
    append_history(history, history_entry(clean_gate, "2026-11-20", "2026-11-20T02:00:00+00:00"))
    assert [e["started"] for e in read_history(history)] == ["2026-11-20T01:00:00+00:00", "2026-11-20T02:00:00+00:00"]
