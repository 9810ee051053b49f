"""The taxonomy stage end to end on the small generated marketplace: every raw tag mapped or dropped with a
reason, the demo's synonyms and Chinese names merged, a tree without cycles, the diff, the report and the
notebook over the real tables, and assemble's classes coming from the taxonomy."""

from __future__ import annotations

import datetime as dt
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pyspark.sql.types import StructType

from tagmill.jobs import assemble, io, mine_logs, side_info, taxonomy
from tagmill.jobs.build import run_stages
from tagmill.jobs.cli import main
from tagmill.taxonomy.canonical import RULES as FOLD_RULES
from tagmill.taxonomy.tables import SCHEMAS

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def built(side_info_market, tmp_path_factory):
    """(cfg, summaries) of taxonomy + assemble in an outputs root of their own (mine-logs' and side-info's outputs copied in)."""
    cfg, _ = side_info_market
    root = tmp_path_factory.mktemp("taxonomy-out")
    for stage in (mine_logs.STAGE, side_info.STAGE):
        shutil.copytree(Path(cfg.outputs.root) / stage, root / stage)
    cfg = cfg.replace("outputs", root=str(root))
    return cfg, run_stages(cfg, [taxonomy.STAGE, assemble.STAGE])


def _pandas(spark, cfg, table):
    return io.read_table(spark, cfg.outputs.root, taxonomy.STAGE, table, cfg.run.run_date()).toPandas()


def test_every_raw_tag_is_mapped_or_dropped_with_a_reason_and_counts_add_up(spark, built):
    cfg, summaries = built
    s = summaries[taxonomy.STAGE]
    tag_map = _pandas(spark, cfg, "tag_map")
    stats = _pandas(spark, cfg, "tag_stats")
    assert set(tag_map["tag"]) == set(stats["tag"]) and len(tag_map) == s["tags"]["in"] > 50
    assert s["tags"]["in"] == s["tags"]["out"] + sum(s["tags"]["quarantined"].values())
    dropped = tag_map[tag_map["status"] == "dropped"]
    assert dropped["class_id"].isna().all() and dropped["reason"].str.len().gt(0).all()
    decisions = _pandas(spark, cfg, "decisions")
    assert set(dropped["tag"]) <= set(decisions.loc[decisions["action"] == "drop", "tag"])
    assert tag_map.loc[tag_map["status"] != "dropped", "class_id"].notna().all()


def test_every_table_is_written_with_its_schema(spark, built):
    cfg, _ = built
    for table, schema in SCHEMAS.items():
        written = io.read_table(spark, cfg.outputs.root, taxonomy.STAGE, table, cfg.run.run_date()).schema
        assert written.simpleString() == StructType.fromDDL(schema).simpleString(), table


def test_demo_synonyms_and_glossary_names_merge_and_unrelated_tags_do_not(spark, built):
    cfg, _ = built
    tag_map = _pandas(spark, cfg, "tag_map").set_index("tag")
    class_of = tag_map["class_name"].to_dict()
    for a, b in (("couch", "sofa"), ("cellphone", "mobile phone"), ("沙发", "sofa"), ("手机", "mobile phone")):
        if a in class_of and b in class_of:  # the small market may not have mined every form
            assert class_of[a] == class_of[b], (a, b, class_of[a], class_of[b])
    assert class_of.get("sofa") != class_of.get("mobile phone")
    merged = tag_map[tag_map["status"] == "merged"]
    assert len(merged) >= 3
    assert set(merged["reason"]) <= {"synset_merge", "chinese_table", "cooccurrence_merge", *FOLD_RULES}
    assert (tag_map["mapped_by"] == "chinese_table").any()


def test_the_hierarchy_has_no_cycle_and_paths_follow_parents(spark, built):
    cfg, summaries = built
    tax = _pandas(spark, cfg, "taxonomy")
    parent = {int(k): (None if p != p or p is None else int(p)) for k, p in zip(tax["class_id"], tax["parent_id"])}
    name = dict(zip(tax["class_id"].astype(int), tax["name"]))
    for k, path in zip(tax["class_id"].astype(int), tax["path"]):
        seen, node, chain = {k}, parent[k], []
        while node is not None:
            assert node not in seen, f"cycle through {name[node]}"
            seen.add(node)
            chain.append(name[node])
            node = parent[node]
        assert list(path) == chain[::-1]
    classes = tax[tax["kind"] == "class"]
    assert summaries[taxonomy.STAGE]["classes"] == len(classes)
    assert len(set(classes["domain"])) >= 3


def test_assemble_uses_the_taxonomy_classes(spark, built):
    cfg, summaries = built
    tax = _pandas(spark, cfg, "taxonomy")
    index = io.read_table(spark, cfg.outputs.root, assemble.STAGE, "class_index", cfg.run.run_date()).toPandas()
    assert set(index["name"]) <= set(tax.loc[tax["kind"] == "class", "name"])
    paths = dict(zip(tax["name"], tax["path"]))
    assert all(list(p) == list(paths[n]) for n, p in zip(index["name"], index["path"]))
    ids = dict(zip(tax["name"], tax["class_id"]))  # taxonomy_id: the class's id in the taxonomy's tables
    assert list(index["taxonomy_id"]) == [ids[n] for n in index["name"]]
    a = summaries[assemble.STAGE]["images"]
    assert a["in"] == a["out"] + sum(a["quarantined"].values())


def test_a_rerun_against_an_identical_previous_run_has_an_empty_diff(spark, built):
    cfg, summaries = built
    assert summaries[taxonomy.STAGE]["previous_run_date"] is None
    diff = _pandas(spark, cfg, "diff")
    assert set(diff["change"]) == {"added"}  # the first run: every class is new
    root, run_date = Path(cfg.outputs.root), cfg.run.run_date()
    earlier = (run_date - dt.timedelta(days=1)).isoformat()
    for folder in ("taxonomy", "_runs"):  # the same taxonomy, as if built the day before
        shutil.copytree(root / taxonomy.STAGE / folder / f"run_date={run_date}",
                        root / taxonomy.STAGE / folder / f"run_date={earlier}")
    again = run_stages(cfg, [taxonomy.STAGE])[taxonomy.STAGE]
    assert again["previous_run_date"] == earlier and again["diff"] == {}
    assert _pandas(spark, cfg, "diff").empty


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))


def test_the_report_command_writes_a_page_with_embedded_plots(built, tmp_path, capsys):
    cfg, _ = built
    config_file = tmp_path / "tagmill.toml"
    from tagmill.config import to_toml

    config_file.write_text(to_toml(cfg), encoding="utf-8")
    out = tmp_path / "report.html"
    assert main(["report", "taxonomy", "--config", str(config_file), "--out", str(out)]) == 0
    page = _Page()
    html = out.read_text(encoding="utf-8")
    page.feed(html)
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    # the long tail always; the heatmap when two top classes share images (after the canonical folds the small
    # market's classes hardly do: each product is one category), else the page says why it has none
    from tagmill.taxonomy.report import class_cooccurrence, load_tables

    shared = not class_cooccurrence(load_tables(cfg.outputs.root, cfg.run.run_date().isoformat())[0]).empty
    assert len(page.images) == (2 if shared else 1)
    assert shared or "No co-occurrence between classes in this run" in html
    assert str(out) in capsys.readouterr().out
    missing = ["report", "taxonomy", "--config", str(config_file), "--date", "2001-01-01"]
    assert main(missing) == 2


def test_labels_map_to_their_class_and_optionally_to_every_ancestor(spark):
    from tagmill.dataset.assemble import LABEL_COLUMNS, map_to_classes

    row = {c: None for c in LABEL_COLUMNS}
    labels = spark.createDataFrame(
        [{**row, "image_key": "i1", "label": "Couch", "source": "teacher", "confidence": 0.9},
         {**row, "image_key": "i2", "label": "gone", "source": "search_log", "confidence": 1.0}],
        "image_key string, product_id string, label string, confidence double, source string, tier string, "
        "clicks long, contacts long, in_conversations long, sessions long, teacher string")
    tag_map = spark.createDataFrame([("couch", "sofa"), ("gone", None)], "tag string, class_name string")
    tax = spark.createDataFrame([("sofa", ["furniture", "seat"]), ("seat", ["furniture"]), ("furniture", [])],
                                "name string, path array<string>")
    plain = map_to_classes(labels, tag_map, tax, ancestors=False).collect()
    assert [(r.image_key, r.label, r.source, r.confidence) for r in plain] == [("i1", "sofa", "teacher", 0.9)]
    lifted = sorted((r.label, r.confidence) for r in map_to_classes(labels, tag_map, tax, ancestors=True).collect())
    assert lifted == [("furniture", 0.9), ("seat", 0.9), ("sofa", 0.9)]
