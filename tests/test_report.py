"""The taxonomy report and notebook over small synthetic taxonomy tables written in the stage's storage layout:
two domains with a three-level tree, rare and isolated drops, synset and Chinese-table merges, unmapped tags
(one of them "<script>"), co-occurring pairs and one diff row."""

from __future__ import annotations

import base64
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tagmill.taxonomy.report import COLUMNS, TABLES, load_tables, render_report, rule_thresholds, write_report

RUN_DATE = "2024-05-02"
IMAGES = 1000

STR, LONG, INT, DOUBLE, STRS = pa.string(), pa.int64(), pa.int32(), pa.float64(), pa.list_(pa.string())
SCHEMAS = {  # the Spark types of the contract (long -> int64, int -> int32)
    "tag_stats": [("tag", STR), ("images", LONG), ("products", LONG), ("share", DOUBLE),
                  ("search_log_images", LONG), ("teacher_images", LONG), ("seller_category_images", LONG)],
    "tag_stats_by_source": [("tag", STR), ("source", STR), ("tier", STR), ("images", LONG), ("products", LONG)],
    "cooccurrence": [("tag_a", STR), ("tag_b", STR), ("images_ab", LONG), ("images_a", LONG), ("images_b", LONG),
                     ("p_a_given_b", DOUBLE), ("p_b_given_a", DOUBLE), ("pmi", DOUBLE), ("jaccard", DOUBLE)],
    "decisions": [("tag", STR), ("action", STR), ("rule", STR), ("other", STR), ("value", DOUBLE),
                  ("threshold", DOUBLE), ("detail", STR)],
    "tag_map": [("tag", STR), ("class_id", INT), ("class_name", STR), ("status", STR), ("reason", STR),
                ("synset", STR), ("mapped_by", STR)],
    "taxonomy": [("class_id", INT), ("name", STR), ("kind", STR), ("synset", STR), ("aliases", STRS),
                 ("parent_id", INT), ("domain", STR), ("depth", INT), ("support", LONG), ("path", STRS)],
    "diff": [("change", STR), ("name", STR), ("previous", STR), ("detail", STR)],
}

IMAGES_PER_TAG = {"mobile phone": 300, "cell phone": 120, "手机": 80, "landline": 40, "laptop": 200,
                  "notebook computer": 30, "chair": 150, "椅子": 25, "sofa": 60, "iphone case": 35,
                  "<script>": 2, "blorp": 3, "lonely lamp": 12}

TAG_MAP = [  # tag, class_id, class_name, status, reason, synset, mapped_by
    ("mobile phone", 2, "mobile phone", "kept", "kept", "cellular_telephone.n.01", "wordnet"),
    ("cell phone", 2, "mobile phone", "merged", "synset_merge", "cellular_telephone.n.01", "wordnet"),
    ("手机", 2, "mobile phone", "merged", "chinese_table", "cellular_telephone.n.01", "chinese_table"),
    ("landline", 3, "landline", "kept", "kept", "landline.n.01", "wordnet"),
    ("laptop", 5, "laptop", "kept", "kept", "laptop.n.01", "wordnet"),
    ("notebook computer", 5, "laptop", "merged", "synset_merge", "laptop.n.01", "wordnet"),
    ("chair", 8, "chair", "kept", "kept", "chair.n.01", "wordnet"),
    ("椅子", 8, "chair", "merged", "chinese_table", "chair.n.01", "chinese_table"),
    ("sofa", 9, "sofa", "kept", "kept", "sofa.n.01", "wordnet"),
    ("iphone case", 10, "iphone case", "kept", "kept", None, "unmapped"),
    ("<script>", None, None, "dropped", "rare_images", None, "unmapped"),
    ("blorp", None, None, "dropped", "rare_share", None, "unmapped"),
    ("lonely lamp", None, None, "dropped", "isolated", "lamp.n.02", "wordnet"),
]

DECISIONS = [  # tag, action, rule, other, value, threshold, detail
    ("cell phone", "merge", "synset_merge", "mobile phone", None, None, "same synset cellular_telephone.n.01"),
    ("notebook computer", "merge", "synset_merge", "laptop", None, None, "same synset laptop.n.01"),
    ("手机", "merge", "chinese_table", "mobile phone", None, None, "zh->en table: 手机 -> mobile phone"),
    ("椅子", "merge", "chinese_table", "chair", None, None, "zh->en table: 椅子 -> chair"),
    ("landline", "merge", "cooccurrence_merge", "mobile phone", 0.82, 0.8, "P(a|b)=0.82, P(b|a)=0.85 >= 0.8"),
    ("<script>", "drop", "rare_images", None, 2.0, 5.0, "2 images < 5"),
    ("blorp", "drop", "rare_share", None, 0.003, 0.004, "3 images = 0.3% of 1,000 < 0.4%"),
    ("lonely lamp", "drop", "isolated", None, 0.0, 0.05, "max P(other|lamp) 0.00 < 0.05"),
    ("sofa", "child", "implied_by", "chair", 0.9, 0.8, "P(chair|sofa)=0.90 >= 0.8, P(sofa|chair)=0.36"),
]

TAXONOMY = [  # class_id, name, kind, synset, aliases, parent_id, domain, depth, support, path
    (0, "electronics", "node", None, [], None, "electronics", 0, 805, []),
    (1, "telephone", "node", "telephone.n.01", [], 0, "electronics", 1, 540, ["electronics"]),
    (2, "mobile phone", "class", "cellular_telephone.n.01", ["cell phone", "mobile phone", "手机"], 1,
     "electronics", 2, 500, ["electronics", "telephone"]),
    (3, "landline", "class", "landline.n.01", ["landline"], 1, "electronics", 2, 40, ["electronics", "telephone"]),
    (4, "computer", "node", "computer.n.01", [], 0, "electronics", 1, 230, ["electronics"]),
    (5, "laptop", "class", "laptop.n.01", ["laptop", "notebook computer"], 4, "electronics", 2, 230,
     ["electronics", "computer"]),
    (6, "furniture", "node", "furniture.n.01", [], None, "furniture", 0, 235, []),
    (7, "seat", "node", "seat.n.03", [], 6, "furniture", 1, 235, ["furniture"]),
    (8, "chair", "class", "chair.n.01", ["chair", "椅子"], 7, "furniture", 2, 175, ["furniture", "seat"]),
    (9, "sofa", "class", "sofa.n.01", ["sofa"], 7, "furniture", 2, 60, ["furniture", "seat"]),
    (10, "iphone case", "class", None, ["iphone case"], 0, "electronics", 1, 35, ["electronics"]),
]

CO_PAIRS = {("cell phone", "mobile phone"): 90, ("mobile phone", "手机"): 60, ("iphone case", "mobile phone"): 30,
            ("chair", "sofa"): 54, ("laptop", "mobile phone"): 20, ("chair", "椅子"): 20, ("laptop", "sofa"): 5}

SUMMARY = {"stage": "taxonomy", "run_date": RUN_DATE,
           "tags": {"in": 13, "out": 10, "quarantined": {"rare_images": 1, "rare_share": 1, "isolated": 1}},
           "classes": 6, "nodes": 5, "domains": {"electronics": 4, "furniture": 2},
           "coverage": {"before": 0.97, "after": 0.95}, "images": IMAGES,
           "previous_run_date": "2024-05-01",
           "config": {"min_share": 0.004, "min_images": 5, "isolated_max_conditional": 0.05,
                      "merge_min_conditional": 0.8, "child_min_conditional": 0.7}}


def _cooccurrence_rows() -> list[tuple]:
    rows = []
    for (a, b), ab in CO_PAIRS.items():
        a, b = sorted((a, b))
        na, nb = IMAGES_PER_TAG[a], IMAGES_PER_TAG[b]
        rows.append((a, b, ab, na, nb, ab / nb, ab / na, math.log(ab * IMAGES / (na * nb)), ab / (na + nb - ab)))
    return rows


def synthetic_tables() -> dict[str, list[tuple]]:
    tag_stats = [(t, n, n - n // 10, n / IMAGES, n - n // 4, n // 4, 0) for t, n in IMAGES_PER_TAG.items()]
    by_source = []
    for t, n in IMAGES_PER_TAG.items():
        by_source += [(t, "search_log", "click", n - n // 4, n - n // 3), (t, "teacher", None, n // 4, n // 5)]
    return {"tag_stats": tag_stats, "tag_stats_by_source": by_source, "cooccurrence": _cooccurrence_rows(),
            "decisions": DECISIONS, "tag_map": TAG_MAP, "taxonomy": TAXONOMY,
            "diff": [("added", "iphone case", None, "new class: 35 images")]}


def write_outputs(root: Path, tables: dict[str, list[tuple]], summary: dict | None = SUMMARY) -> None:
    """The stage's layout as Spark leaves it: part files plus _SUCCESS, summary written last."""
    for name, rows in tables.items():
        schema = pa.schema(SCHEMAS[name])
        folder = root / "taxonomy" / name / f"run_date={RUN_DATE}"
        folder.mkdir(parents=True)
        columns = list(zip(*rows)) if rows else [[] for _ in schema]
        table = pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, schema)],
                                     schema=schema)
        pq.write_table(table, folder / "part-00000-synthetic.snappy.parquet")
        (folder / "_SUCCESS").write_bytes(b"")
    if summary is not None:
        runs = root / "taxonomy" / "_runs" / f"run_date={RUN_DATE}"
        runs.mkdir(parents=True)
        (runs / "summary.json").write_text(json.dumps(summary, ensure_ascii=False), encoding="utf-8")


@pytest.fixture
def outputs(tmp_path) -> Path:
    root = tmp_path / "out"
    write_outputs(root, synthetic_tables())
    return root


def _plain(value):
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _records(frame: pd.DataFrame) -> list[tuple]:
    return sorted((tuple(_plain(v) for v in row) for row in frame.itertuples(index=False)), key=repr)


class PageParser(HTMLParser):
    """Counts tags, checks that every element closes in order, collects <img> sources, table rows and text."""

    VOID = {"img", "meta", "br", "hr", "link", "input", "col", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.counts: dict[str, int] = {}
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.rows: list[list[str]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    return parser


def test_load_tables_round_trips(outputs):
    tables, summary = load_tables(str(outputs), RUN_DATE)

    assert summary == SUMMARY
    assert set(tables) == set(TABLES)
    written = synthetic_tables()
    for name in TABLES:
        assert list(tables[name].columns) == list(COLUMNS[name]), name
        assert _records(tables[name]) == sorted((tuple(_plain(v) for v in row) for row in written[name]), key=repr)
    assert str(tables["tag_map"]["class_id"].dtype) == "Int64"  # nulls do not turn ids into floats


def test_empty_table_folder_gives_contract_columns(tmp_path):
    tables = synthetic_tables()
    tables["cooccurrence"], tables["diff"] = [], []
    write_outputs(tmp_path, tables)
    folder = tmp_path / "taxonomy" / "diff" / f"run_date={RUN_DATE}"
    for part in folder.glob("*.parquet"):  # a folder with only Spark's _SUCCESS marker
        part.unlink()

    loaded, _ = load_tables(str(tmp_path), RUN_DATE)

    for name in ("cooccurrence", "diff"):
        assert loaded[name].empty and list(loaded[name].columns) == list(COLUMNS[name])


def test_missing_summary_names_the_path(tmp_path):
    write_outputs(tmp_path, synthetic_tables(), summary=None)
    expected = tmp_path / "taxonomy" / "_runs" / f"run_date={RUN_DATE}" / "summary.json"

    with pytest.raises(FileNotFoundError) as raised:
        load_tables(str(tmp_path), RUN_DATE)

    assert str(expected) in str(raised.value)
    assert f"tagmill taxonomy --date {RUN_DATE}" in str(raised.value)


def test_report_renders_with_embedded_pngs(outputs):
    tables, summary = load_tables(str(outputs), RUN_DATE)

    page = parse(render_report(tables, summary))

    assert page.counts.get("html") == 1 and page.counts.get("style") == 1
    assert page.counts.get("script", 0) == 0 and page.counts.get("link", 0) == 0
    assert len(page.images) >= 2  # long tail + heatmap
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:40]
        assert base64.b64decode(src[len(prefix):], validate=True).startswith(b"\x89PNG\r\n\x1a\n")


def test_report_lists_every_decision_and_unmapped_tag(outputs):
    tables, summary = load_tables(str(outputs), RUN_DATE)

    page = parse(render_report(tables, summary))

    rows = page.rows
    for tag, action, rule, other, *_ in DECISIONS:
        assert any(row[:3] == [rule, tag, other or ""] for row in rows), (tag, rule, other)
    unmapped = {row[0] for row in rows if len(row) == 5 and row[2] in ("kept", "dropped")}
    assert unmapped == {"iphone case", "<script>", "blorp"}
    text = "".join(page.text)
    for name in ("electronics", "furniture", "telephone", "mobile phone", "sofa", "手机"):
        assert name in text
    assert "new class: 35 images" in text  # the diff row
    assert "97.00%" in text and "95.00%" in text  # coverage before / after


def test_report_escapes_data(outputs):
    tables, summary = load_tables(str(outputs), RUN_DATE)

    html_page = render_report(tables, summary, title="<b>x</b>")

    assert "<script>" not in html_page and "&lt;script&gt;" in html_page
    assert "<b>x</b>" not in html_page and "&lt;b&gt;x&lt;/b&gt;" in html_page
    page = parse(html_page)
    assert page.counts.get("script", 0) == 0
    assert "<script>" in "".join(page.text)  # shown to the reader as text


def test_report_without_cooccurrence_or_diff(tmp_path):
    tables = synthetic_tables()
    tables["cooccurrence"], tables["diff"] = [], []
    write_outputs(tmp_path, tables)
    loaded, summary = load_tables(str(tmp_path), RUN_DATE)

    page = parse(render_report(loaded, summary))

    text = " ".join(page.text)
    assert "No co-occurrence between classes" in text
    assert "No change" in text
    assert len(page.images) == 1  # the long tail only


def test_report_of_empty_tables_renders():
    tables = {name: pd.DataFrame({c: pd.Series([], dtype=t) for c, t in COLUMNS[name].items()}) for name in TABLES}

    page = parse(render_report(tables, {"run_date": RUN_DATE, "previous_run_date": None}))

    assert page.images == []
    assert "this is the first taxonomy run" in "".join(page.text)


def test_thresholds_from_decisions_else_config(outputs):
    tables, summary = load_tables(str(outputs), RUN_DATE)

    assert rule_thresholds(tables["decisions"], summary["config"]) == {
        "rare_images": [5.0], "rare_share": [0.004], "isolated": [0.05], "cooccurrence_merge": [0.8],
        "implied_by": [0.8]}  # the decisions' 0.8, not the config's 0.7
    assert rule_thresholds(tables["decisions"].iloc[0:0], summary["config"])["implied_by"] == [0.7]


def test_write_report_default_path(outputs):
    path = write_report(str(outputs), RUN_DATE)

    assert Path(path) == outputs / "taxonomy" / "_reports" / f"run_date={RUN_DATE}" / "taxonomy.html"
    assert len(parse(Path(path).read_text(encoding="utf-8")).images) >= 2


@pytest.mark.slow
def test_notebook_executes(outputs, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from tagmill.taxonomy.notebook import NOTEBOOK, execute_notebook

    assert NOTEBOOK == Path(__file__).resolve().parents[1] / "notebooks" / "taxonomy.ipynb"
    stored = nbformat.read(NOTEBOOK, as_version=4)
    assert all(cell.get("outputs", []) == [] and cell.get("execution_count") is None
               for cell in stored.cells if cell.cell_type == "code"), "store the notebook without outputs"

    executed = tmp_path / "executed" / "taxonomy.ipynb"
    nb = execute_notebook(str(outputs), RUN_DATE, executed)
    assert nbformat.read(executed, as_version=4) == nb
    # the kernel ran this very interpreter (the first cell imports tagmill, which only this venv has)
    outputs_text = json.dumps([cell.get("outputs", []) for cell in nb.cells], ensure_ascii=False)
    assert '"output_type": "error"' not in outputs_text
    assert "mobile phone" in outputs_text and "image/png" in outputs_text


def test_query_clusters_of_the_side_info_stage_join_the_report(outputs):
    tables, summary = load_tables(str(outputs), RUN_DATE)
    assert "query_clusters" not in tables  # no side-info stage in these outputs
    assert "No query clusters" in render_report(tables, summary)
    folder = outputs / "side-info" / "query_clusters" / f"run_date={RUN_DATE}"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"query": ["sofa", "couch", "phone", "zzz"], "events": [50, 20, 40, 1],
                             "cluster": [0, 0, 1, -1], "similarity": [0.99, 0.97, 1.0, 0.0],
                             "example": [True, True, True, False]}), folder / "part-0.parquet")
    tables, summary = load_tables(str(outputs), RUN_DATE)
    page = render_report(tables, summary)
    assert "2 clusters of 3 queries" in page and "sofa, couch" in page and "1 queries without" in page


EVIL = "<script>alert('x')</script>"
EVIL_IMG = '"><img src=x onerror="alert(1)">'


def test_report_escapes_every_name_from_the_data(outputs):
    """Class names, aliases, synsets, tags, rules, diff rows, queries and summary values come from users or
    upstream data: the template's autoescape keeps all of them text, only the PNG data: URIs are markup."""
    tables, summary = load_tables(str(outputs), RUN_DATE)
    taxonomy = tables["taxonomy"]
    sofa = taxonomy.index[taxonomy["name"] == "sofa"][0]
    taxonomy.at[sofa, "name"] = EVIL
    taxonomy.at[sofa, "synset"] = EVIL_IMG
    taxonomy.at[sofa, "aliases"] = [EVIL_IMG, "sofa"]
    taxonomy.loc[taxonomy["kind"] == "node", "kind"] = '"node'  # lands in a class attribute
    tables["decisions"].loc[0, ["other", "detail"]] = [EVIL, EVIL_IMG]
    tables["diff"].loc[0, ["name", "detail"]] = [EVIL, EVIL_IMG]
    tables["query_clusters"] = pd.DataFrame({"query": [EVIL, EVIL_IMG], "events": [3, 2], "cluster": [0, 0],
                                             "similarity": [0.9, 0.8], "example": [True, True]})
    summary = {**summary, "previous_run_date": EVIL, "config": {**summary["config"], "note": EVIL_IMG}}

    html_page = render_report(tables, summary, title=EVIL_IMG)

    assert "<script" not in html_page and "<img src=x" not in html_page
    page = parse(html_page)
    assert page.counts.get("script", 0) == 0
    assert len(page.images) == 2 and all(src.startswith("data:image/png;base64,") for src in page.images)
    text = "".join(page.text)
    assert text.count(EVIL) >= 5 and text.count(EVIL_IMG) >= 5  # shown to the reader as text


def test_report_is_self_contained(outputs):
    tables, summary = load_tables(str(outputs), RUN_DATE)

    html_page = render_report(tables, summary)

    assert "http://" not in html_page and "https://" not in html_page and "@import" not in html_page
    assert all(href.startswith("#") for href in _attribute_values(html_page, "href"))
    assert all(src.startswith("data:image/png;base64,") for src in _attribute_values(html_page, "src"))


def _attribute_values(html_page: str, name: str) -> list[str]:
    values: list[str] = []

    class Attributes(HTMLParser):
        def handle_starttag(self, tag, attrs):
            values.extend(v or "" for k, v in attrs if k == name)

    Attributes().feed(html_page)
    return values


def test_report_template_ships_as_package_data():
    from importlib.resources import files

    assert files("tagmill.taxonomy").joinpath("templates", "taxonomy.html.j2").is_file()


def test_report_data_is_plain_and_shared_with_the_report(outputs):
    from tagmill.taxonomy import report, report_data

    assert report.load_tables is report_data.load_tables and report.COLUMNS is report_data.COLUMNS
    tables, summary = report_data.load_tables(str(outputs), RUN_DATE)
    data = report_data.page_data(tables, summary, max_rows=2)

    assert data["run_date"] == RUN_DATE
    assert data["decisions"]["drops"]["total"] == 3 and data["decisions"]["drops"]["table"].left == 1
    assert [domain["name"] for domain in data["tree"]] == ["electronics", "furniture"]
    assert data["decisions"]["drops"]["table"].rows[1][:2] == ["rare_images", "<script>"]  # escaped by the template


def test_teacher_thresholds_show_refused_classes_first_with_their_checks():
    from tagmill.taxonomy.report_data import teacher_thresholds_data

    frame = pd.DataFrame([("mug", "calibrated", 0.85, 0.9, 10, 9), ("vase", "refused", None, 0.1, 20, 2),
                          ("kite", "pooled", 0.7, 0.92, 0, 0), ("lamp", "refused", None, 0.3, 30, 9)],
                         columns=["name", "status", "threshold", "precision", "checked", "right"])
    shown = teacher_thresholds_data(frame, 10)
    assert shown["per_status"] == [("calibrated", 1), ("pooled", 1), ("refused", 2)]
    assert [row[0] for row in shown["table"].rows] == ["lamp", "vase", "kite", "mug"]
    assert teacher_thresholds_data(None, 10) is None


def test_page_and_plots_name_cjk_font_fallbacks(outputs):
    import matplotlib

    from tagmill.taxonomy.report import CJK_FONTS, plot_fonts

    tables, summary = load_tables(str(outputs), RUN_DATE)
    page = render_report(tables, summary)
    css = page[page.index("<style>"):page.index("</style>")]
    family = css[css.index("font-family:") + len("font-family:"):].split(";")[0]
    names = [f.strip().strip('"') for f in family.split(",")]
    assert names[-1] == "sans-serif" and all(f in names[:-1] for f in ("Noto Sans CJK SC", "WenQuanYi Micro Hei",
                                                                          "Source Han Sans SC"))
    assert "&#34;" not in family and "&quot;" not in family
    before = list(matplotlib.rcParams["font.sans-serif"])
    with plot_fonts():
        chosen = list(matplotlib.rcParams["font.sans-serif"])
        assert matplotlib.rcParams["font.family"] == ["sans-serif"]
    assert chosen[:len(before)] == before and set(chosen[len(before):]) <= set(CJK_FONTS)
    assert list(matplotlib.rcParams["font.sans-serif"]) == before


def test_first_run_diff_is_one_line(tmp_path):
    tables = synthetic_tables()
    tables["diff"] = [("added", f"class {i}", None, "a new class") for i in range(300)]
    write_outputs(tmp_path, tables)
    loaded, summary = load_tables(str(tmp_path), RUN_DATE)

    page = render_report(loaded, {**summary, "previous_run_date": None})

    section = page[page.index('<section id="diff">'):]
    section = section[:section.index("</section>") + len("</section>")]
    text = [line for line in " ".join(parse(section).text).split("\n") if line.strip()]
    assert [line.strip() for line in text[1:]] == [
        "No previous run to compare with: this is the first taxonomy run (300 classes, all new; the rows are in "
        f"the diff table, taxonomy/diff/run_date={RUN_DATE}/ under the outputs root)."], text
    assert "<table" not in section and "class 7" not in section


def test_label_issues_are_shown_per_class_and_least_confident_first():
    from tagmill.taxonomy.report_data import label_issues_data

    frame = pd.DataFrame({"image_key": ["i1", "i2", "i3"], "label": ["sofa", "lamp", "sofa"],
                          "score": [0.30, 0.02, 0.05], "class_labels": [40, 12, 40], "class_issues": [2, 1, 2]})
    shown = label_issues_data(frame, 10)
    assert shown["flagged"] == 3
    assert shown["classes"].rows == [["sofa", 40, 2], ["lamp", 12, 1]]
    assert [row[:2] for row in shown["table"].rows] == [["lamp", "i2"], ["sofa", "i3"], ["sofa", "i1"]]
    assert label_issues_data(None, 10) is None
