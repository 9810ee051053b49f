"""The taxonomy report's data: the stage's tables loaded without Spark, and what the page shows computed from
them as plain values (numbers, strings, table rows, the inputs of the plots). No HTML and no plotting here:
taxonomy.report draws the plots and renders templates/taxonomy.html.j2, which escapes every data value.

Reading uses pyarrow, not Spark, so the report and `notebooks/taxonomy.ipynb` run on an analyst's laptop;
it follows the storage layout of `tagmill.stages` (ROOT/taxonomy/<table>/run_date=D/, summary at
ROOT/taxonomy/_runs/run_date=D/summary.json) and reads local paths only (copy outputs from HDFS or an object
store first). Table columns and types: taxonomy.tables.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from tagmill import stages
from tagmill.taxonomy.tables import TABLES, pandas_dtypes

STAGE = stages.TAXONOMY
SIDE_INFO_STAGE = stages.SIDE_INFO
"""Its optional query_clusters table (query, events, cluster, similarity, example) joins the report."""

COLUMNS: dict[str, dict[str, str]] = {table: pandas_dtypes(table) for table in TABLES}
"""Each table's contract columns (taxonomy.tables) with the pandas dtype load_tables gives them."""

MERGE_RULES = ("misspelling", "translation", "synonym", "phrase", "synset_merge", "chinese_table",
               "cooccurrence_merge")
DROP_RULES = ("rare_share", "rare_images", "isolated")
CHILD_RULES = ("implied_by",)

RULES: dict[str, str] = {
    "rare_share": "dropped: the tag is on too small a share of all labeled images (share < threshold).",
    "rare_images": "dropped: the tag is on too few images to learn a class from (images < threshold).",
    "isolated": "dropped: the tag co-occurs with no other tag consistently, so nothing supports it.",
    "misspelling": "merged: a misspelling or plural of a far more frequent tag whose products it shares "
                   "(P(other|tag) >= threshold).",
    "translation": "merged: a Chinese tag and its English translation, sharing their products "
                   "(P(other|tag) >= threshold).",
    "synonym": "merged: a lemma of the other tag's WordNet synset, sharing its products (P(other|tag) >= threshold).",
    "phrase": "merged: the other tag with a modifier and no synset of its own, sharing its products "
              "(P(other|tag) >= threshold).",
    "synset_merge": "merged: the tag names the same WordNet synset as the class it merges into.",
    "chinese_table": "merged: the zh->en table translates the Chinese tag to the class it merges into.",
    "cooccurrence_merge": "merge candidate: the two tags label nearly the same images, "
                          "P(a|b) and P(b|a) both >= threshold.",
    "implied_by": "child candidate: images with this tag nearly always carry the other one, "
                  "P(parent|child) >= threshold, but not the other way round.",
}
"""One sentence per decision rule, shown next to its threshold."""

TOP_CLASSES = 25
"""Classes in the co-occurrence heatmap: the most supported ones; more would make labels unreadable."""

CONFIG_KEYS = {"rare_share": "min_share", "rare_images": "min_images", "isolated": "isolated_max_conditional",
               "cooccurrence_merge": "merge_min_conditional", "implied_by": "child_min_conditional",
               **{rule: "fold_min_conditional" for rule in ("misspelling", "translation", "synonym", "phrase")}}
"""The summary's "config" key holding each rule's threshold (the taxonomy section of the config)."""


# ---------------------------------------------------------------------------------------------------- loading

def load_tables(outputs_root: str, run_date: str) -> tuple[dict[str, pd.DataFrame], dict]:
    """The taxonomy stage's tables of one run date as pandas DataFrames, and its run summary.

    Inputs: `outputs_root`, the local outputs folder (`[outputs] root` of the config; a `file://` prefix is
    accepted, other schemes are not: copy the folder locally first); `run_date`, "YYYY-MM-DD".
    Output: ({table name: DataFrame} for every name in TABLES, summary dict). Each DataFrame has at least the
    contract columns of COLUMNS with those dtypes; an empty table folder gives an empty DataFrame with them.
    Raises FileNotFoundError when the summary is missing (the stage has not finished for that date) or a
    table folder is missing, and ValueError when a table lacks a contract column.
    """
    day = parse_date(run_date)
    root = local_root(outputs_root)
    summary_file = stages.summary_path(root, STAGE, day)
    if not os.path.isfile(summary_file):
        raise FileNotFoundError(
            f"missing {summary_file}: the taxonomy stage has not finished for {run_date}; run "
            f"`tagmill taxonomy --date {run_date}` or `tagmill build` first")
    with open(summary_file, encoding="utf-8") as f:
        summary = json.load(f)
    tables = {name: _read_table(stages.table_path(root, STAGE, name, day), name, run_date) for name in TABLES}
    # shown when their stage wrote them: the side-info stage's query clusters; the image pass's per-class
    # teacher thresholds and the search-log labels its out-of-fold scores flag as likely wrong
    for stage, name in ((SIDE_INFO_STAGE, "query_clusters"), (stages.IMAGE_PASS, "teacher_thresholds"),
                        (stages.IMAGE_PASS, "label_issues")):
        path = stages.table_path(root, stage, name, day)
        if os.path.isdir(path):
            tables[name] = pads.dataset(path, format="parquet").to_table().to_pandas()
    return tables, summary


def parse_date(run_date: str) -> dt.date:
    try:
        return dt.date.fromisoformat(run_date)
    except (TypeError, ValueError):
        raise ValueError(f"run_date must be YYYY-MM-DD, got {run_date!r}") from None


def local_root(outputs_root: str) -> str:
    """`outputs_root` as a local path: a `file://` prefix removed; other schemes raise ValueError."""
    root = outputs_root[len("file://"):] if outputs_root.startswith("file://") else outputs_root
    if "://" in root:
        raise ValueError(f"the taxonomy report reads local folders only, got {outputs_root!r}: copy the outputs "
                         "to a local folder (e.g. `hdfs dfs -get`) and pass that")
    return root


def _pandas_type(arrow_type: pa.DataType):
    # Spark writes int and long columns; both become nullable Int64 so nulls never turn them into floats.
    return pd.Int64Dtype() if pa.types.is_integer(arrow_type) else None


def _read_table(path: str, table: str, run_date: str) -> pd.DataFrame:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"missing table folder {path}: the taxonomy run of {run_date} is incomplete; "
                                f"re-run `tagmill taxonomy --date {run_date}`")
    # pyarrow skips Spark's _SUCCESS and .crc files (names starting with "_" or ".").
    frame = pads.dataset(path, format="parquet").to_table().to_pandas(types_mapper=_pandas_type)
    if frame.empty:
        return empty_table(table)
    missing = [c for c in COLUMNS[table] if c not in frame.columns]
    if missing:
        raise ValueError(f"table {table} at {path} lacks columns {missing} (found {list(frame.columns)}): it was "
                         "written by another tagmill version; re-run the taxonomy stage")
    return frame


def empty_table(table: str) -> pd.DataFrame:
    """An empty DataFrame with the contract columns of `table`."""
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in COLUMNS[table].items()})


def get_table(tables: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    """tables[name], or an empty contract table when the dict lacks it."""
    frame = tables.get(name)
    return empty_table(name) if frame is None else frame


# ---------------------------------------------------------------------------------------------------- numbers

def rule_thresholds(decisions: pd.DataFrame, config: dict) -> dict[str, list[float]]:
    """{rule: sorted distinct thresholds}: from the decisions table (what each rule compared with), else from
    the run summary's config (CONFIG_KEYS), so rules that decided nothing still show their threshold."""
    found: dict[str, list[float]] = {}
    for rule, rows in decisions.groupby("rule"):
        values = sorted({float(v) for v in rows["threshold"].dropna()})
        if values:
            found[str(rule)] = values
    for rule, key in CONFIG_KEYS.items():
        value = config.get(key)
        if rule not in found and isinstance(value, (int, float)) and not isinstance(value, bool):
            found[rule] = [float(value)]
    return found


def class_cooccurrence(tables: dict[str, pd.DataFrame], top: int = TOP_CLASSES) -> pd.DataFrame:
    """P(column class | row class) for the `top` classes by support: a square DataFrame indexed by class name.

    Tag pairs of the cooccurrence table are mapped through tag_map to their classes; pairs inside one class
    are dropped and the images of the remaining pairs summed per class pair, then divided by the row class's
    support (taxonomy). An image with two raw tags of one class counts once per tag pair, so values are upper
    bounds, clipped to 1. The diagonal is NaN. Empty when there are fewer than two classes or no pairs.
    """
    taxonomy = get_table(tables, "taxonomy")
    classes = taxonomy[taxonomy["kind"] == "class"].copy()
    classes["support"] = classes["support"].fillna(0).astype("int64")
    classes = classes.sort_values(["support", "name"], ascending=[False, True]).head(top)
    co = get_table(tables, "cooccurrence")
    if len(classes) < 2 or co.empty:
        return pd.DataFrame()
    names = list(classes["name"])
    tag_map = get_table(tables, "tag_map").dropna(subset=["class_name"])
    to_class = dict(zip(tag_map["tag"], tag_map["class_name"]))
    pairs = pd.DataFrame({"a": co["tag_a"].map(to_class), "b": co["tag_b"].map(to_class),
                          "n": co["images_ab"].fillna(0).astype("int64")}).dropna(subset=["a", "b"])
    pairs = pairs[(pairs["a"] != pairs["b"]) & pairs["a"].isin(names) & pairs["b"].isin(names)]
    if pairs.empty:
        return pd.DataFrame()
    both = pd.concat([pairs, pairs.rename(columns={"a": "b", "b": "a"})])
    counts = both.groupby(["a", "b"])["n"].sum().unstack().reindex(index=names, columns=names).fillna(0.0)
    support = classes.set_index("name")["support"].reindex(names).astype("float64")
    matrix = counts.div(support.where(support > 0), axis=0).clip(upper=1.0)
    for name in names:
        matrix.loc[name, name] = math.nan
    return matrix


def total_images(summary: dict, tag_stats: pd.DataFrame) -> float | None:
    """All labeled images: the summary's count, else recovered from images / share of tag_stats."""
    if isinstance(summary.get("images"), (int, float)) and summary["images"] > 0:
        return float(summary["images"])
    rows = tag_stats[(tag_stats["share"] > 0) & tag_stats["images"].notna()]
    if rows.empty:
        return None
    return float((rows["images"].astype("float64") / rows["share"]).median())


def is_missing(value) -> bool:
    """None, NaN and pd.NA: shown as an empty cell."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def fmt_num(value) -> str:
    """A number as the page shows it: integers with thousands separators, others to 4 significant digits."""
    if is_missing(value):
        return ""
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:.4g}"


def fmt_pct(share) -> str:
    return f"{float(share):.2%}" if isinstance(share, (int, float)) and not isinstance(share, bool) else "n/a"


def _int(value) -> int:
    return 0 if is_missing(value) else int(value)


def _flatten(data, prefix: str = "") -> dict:
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    flat = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


# ---------------------------------------------------------------------------------------------------- page data

@dataclass
class Table:
    """One HTML table: the first rows of a frame as raw values (the template formats a column flagged in
    `numeric` as a number), the frame's row count and where the full table lives."""

    columns: list[str]
    rows: list[list]
    numeric: list[bool]
    total: int
    where: str | None = None

    @property
    def left(self) -> int:  # rows not shown
        return self.total - len(self.rows)


def table(frame: pd.DataFrame, max_rows: int, where: str | None = None, numeric: tuple[str, ...] = ()) -> Table:
    """The first `max_rows` rows of `frame` as a Table; `numeric` names the columns shown as numbers."""
    shown = frame.head(max_rows)
    columns = [str(c) for c in shown.columns]
    rows = [[_cell(v) for v in record] for record in shown.itertuples(index=False)]
    return Table(columns, rows, [c in numeric for c in columns], len(frame), where)


def _cell(value):
    if isinstance(value, (list, tuple, np.ndarray)):  # array columns (aliases, path) arrive as ndarrays
        return ", ".join(str(v) for v in list(value))
    return value


def counts_data(tables: dict[str, pd.DataFrame], summary: dict) -> dict:
    """The before/after cards, the summary's consistency check, drops per rule and classes per domain."""
    tag_map, decisions, taxonomy = (get_table(tables, n) for n in ("tag_map", "decisions", "taxonomy"))
    tags = summary.get("tags") or {}
    status = tag_map["status"].value_counts()
    tags_in = tags.get("in", len(tag_map) or len(get_table(tables, "tag_stats")))
    tags_out = tags.get("out", int(status.get("kept", 0) + status.get("merged", 0)))
    dropped = tags.get("quarantined")
    if not isinstance(dropped, dict):
        drops = decisions[decisions["action"] == "drop"]
        dropped = {str(k): int(v) for k, v in drops["rule"].value_counts().items()}
    domains = summary.get("domains")
    if not isinstance(domains, dict):
        domains = {str(k): int(v) for k, v in
                   taxonomy[taxonomy["kind"] == "class"]["domain"].value_counts().items()}
    coverage = summary.get("coverage") or {}
    n_dropped = sum(dropped.values())
    cards = [(fmt_num(tags_in), "raw tags in"), (fmt_num(tags_out), "tags out (kept + merged)"),
             (fmt_num(status.get("kept", 0)), "kept as their own class"),
             (fmt_num(status.get("merged", 0)), "merged into a class"), (fmt_num(n_dropped), "dropped"),
             (fmt_num(summary.get("classes", int((taxonomy["kind"] == "class").sum()))), "classes"),
             (fmt_num(summary.get("nodes", int((taxonomy["kind"] == "node").sum()))), "ancestor nodes"),
             (fmt_num(len(domains)), "domains"), (fmt_pct(coverage.get("before")), "coverage before"),
             (fmt_pct(coverage.get("after")), "coverage after")]
    if isinstance(summary.get("images"), (int, float)):
        cards.append((fmt_num(summary["images"]), "labeled images"))
    adds_up = not all(isinstance(x, (int, float)) for x in (tags_in, tags_out)) or tags_in == tags_out + n_dropped
    return {"cards": cards,
            "mismatch": None if adds_up else {"tags_in": tags_in, "tags_out": tags_out, "dropped": n_dropped},
            "drops": table(pd.DataFrame(sorted(dropped.items()), columns=["rule", "tags dropped"]), 50,
                           numeric=("tags dropped",)),
            "domains": table(pd.DataFrame(sorted(domains.items(), key=lambda kv: (-kv[1], kv[0])),
                                          columns=["domain", "classes"]), 100, numeric=("classes",))}


def rules_data(thresholds: dict[str, list[float]], decisions: pd.DataFrame) -> Table:
    counts = decisions["rule"].value_counts()
    rows = pd.DataFrame([{"rule": rule, "decisions": int(counts.get(rule, 0)),
                          "threshold": ", ".join(fmt_num(t) for t in thresholds.get(rule, [])) or "n/a",
                          "what it means": text} for rule, text in RULES.items()])
    return table(rows, 50, numeric=("decisions",))


def heatmap_data(tables: dict[str, pd.DataFrame], max_rows: int) -> dict | None:
    """The class_cooccurrence "matrix", its size and its strongest "pairs"; None when no two top classes
    co-occur."""
    matrix = class_cooccurrence(tables)
    if matrix.empty or not matrix.notna().to_numpy().any():
        return None
    pairs = matrix.stack().rename("p").reset_index()
    pairs.columns = ["row class", "column class", "P(column | row)"]
    pairs = pairs[pairs["P(column | row)"] > 0].sort_values(
        ["P(column | row)", "row class", "column class"], ascending=[False, True, True])
    return {"matrix": matrix, "classes": len(matrix),
            "pairs": table(pairs, min(max_rows, 30), numeric=("P(column | row)",))}


_DECISION_COLUMNS = ["rule", "tag", "other", "value", "threshold", "detail"]
_DECISION_KINDS = {  # key: (rules, action, sort columns, ascending)
    "merges": (MERGE_RULES, "merge", ["rule", "other", "tag"], [True, True, True]),
    "drops": (DROP_RULES, "drop", ["rule", "value", "tag"], [True, False, True]),
    "children": (CHILD_RULES, "child", ["rule", "other", "value", "tag"], [True, True, False, True]),
}


def decisions_data(decisions: pd.DataFrame, max_rows: int, where: str) -> dict[str, dict]:
    """{"merges" | "drops" | "children": {"total": rows, "per_rule": [(rule, rows)], "table": Table}}."""
    found = {}
    for key, (rules, action, order, ascending) in _DECISION_KINDS.items():
        rows = decisions[(decisions["action"] == action) | decisions["rule"].isin(rules)]
        rows = rows.sort_values(order, ascending=ascending, na_position="last")[_DECISION_COLUMNS]
        counts = rows["rule"].value_counts()
        per_rule = [(str(r), int(counts.get(r, 0))) for r in [*rules, *sorted(set(counts.index) - set(rules))]]
        found[key] = {"total": len(rows), "per_rule": per_rule,
                      "table": table(rows, max_rows, where, numeric=("value", "threshold"))}
    return found


def unmapped_data(tag_map: pd.DataFrame, tag_stats: pd.DataFrame, max_rows: int, where: str) -> Table:
    rows = tag_map[tag_map["mapped_by"] == "unmapped"][["tag", "status", "class_name", "reason"]]
    images = dict(zip(tag_stats["tag"], tag_stats["images"]))
    rows = rows.assign(images=rows["tag"].map(images).astype("Float64"))
    rows = rows.sort_values(["images", "tag"], ascending=[False, True], na_position="last")
    return table(rows[["tag", "images", "status", "class_name", "reason"]], max_rows, where, numeric=("images",))


def tree_data(taxonomy: pd.DataFrame) -> list[dict]:
    """The domain tree: one dict per domain (root), each node with its label fields and "children", ordered by
    support then name. Nodes whose parent is missing become roots; each node appears once."""
    nodes = {int(r["class_id"]): r for r in taxonomy.to_dict("records") if not pd.isna(r["class_id"])}
    children: dict[int | None, list[int]] = {}
    for cid, row in nodes.items():
        parent = row["parent_id"]
        parent = None if pd.isna(parent) or int(parent) not in nodes else int(parent)
        children.setdefault(parent, []).append(cid)

    def order(ids: list[int]) -> list[int]:
        return sorted(ids, key=lambda i: (-_int(nodes[i]["support"]), str(nodes[i]["name"])))

    seen: set[int] = set()

    def build(cid: int) -> dict:
        seen.add(cid)
        kids = [k for k in order(children.get(cid, [])) if k not in seen]
        return {**_node(nodes[cid]), "children": [build(k) for k in kids]}

    domains = []
    for root in order(children.get(None, [])):
        kids = [build(k) for k in order(children.get(root, [])) if k not in seen]
        seen.add(root)
        domains.append({**_node(nodes[root]), "children": kids})
    return domains


def _node(row: dict) -> dict:
    aliases = row["aliases"]
    aliases = [] if aliases is None or (isinstance(aliases, float) and math.isnan(aliases)) else list(aliases)
    return {"name": row["name"], "kind": "" if is_missing(row["kind"]) else str(row["kind"]),
            "class_id": row["class_id"], "synset": None if is_missing(row["synset"]) else row["synset"],
            "support": _int(row["support"]), "aliases": [str(a) for a in aliases[:12]],
            "more_aliases": max(len(aliases) - 12, 0)}


def query_clusters_data(clusters: pd.DataFrame | None, max_rows: int) -> dict | None:
    """MSURU 5.5: queries grouped by K-means over their embeddings, an alternative label space; each cluster
    with its size, its searches and the queries nearest its centroid. None when there are no clusters."""
    if clusters is None or clusters.empty or not (clusters["cluster"] >= 0).any():
        return None
    clustered = clusters[clusters["cluster"] >= 0]
    rows = []
    for cluster, group in clustered.groupby("cluster"):
        examples = group[group["example"]].sort_values(["similarity", "query"], ascending=[False, True])
        rows.append({"cluster": int(cluster), "queries": len(group), "searches": int(group["events"].sum()),
                     "nearest the centroid": ", ".join(examples["query"])})
    frame = pd.DataFrame(rows).sort_values(["searches", "cluster"], ascending=[False, True])
    return {"clusters": len(rows), "queries": len(clustered), "unclustered": int((clusters["cluster"] < 0).sum()),
            "table": table(frame, max_rows, numeric=("queries", "searches"))}


def teacher_thresholds_data(thresholds: pd.DataFrame | None, max_rows: int) -> dict | None:
    """The image pass's per-class teacher thresholds (labeling.calibration): classes per status and the table,
    refused classes first. None when the teacher was not calibrated."""
    if thresholds is None or thresholds.empty:
        return None
    first = {"refused": 0, "unchecked": 1, "pooled": 2, "calibrated": 3}
    frame = (thresholds.assign(order=thresholds["status"].map(first))
             .sort_values(["order", "checked", "name"], ascending=[True, False, True])
             [["name", "status", "threshold", "precision", "checked", "right"]])
    return {"per_status": [(str(k), int(v)) for k, v in sorted(thresholds["status"].value_counts().items())],
            "table": table(frame, max_rows, numeric=("threshold", "precision", "checked", "right"))}


def label_issues_data(issues: pd.DataFrame | None, max_rows: int) -> dict | None:
    """The search-log labels flagged as likely wrong (labeling.label_issues): per class (checked, flagged)
    and the flagged labels, least confident first. None when the image pass checked no label."""
    if issues is None:
        return None
    per_class = (issues.groupby("label").agg(checked=("class_labels", "first"), flagged=("class_issues", "first"))
                 .reset_index().sort_values(["flagged", "label"], ascending=[False, True]))
    flagged = issues.sort_values(["score", "label", "image_key"])[["label", "image_key", "score"]]
    return {"flagged": len(issues), "classes": table(per_class, max_rows, numeric=("checked", "flagged")),
            "table": table(flagged, max_rows, numeric=("score",))}


def diff_data(diff: pd.DataFrame, summary: dict, max_rows: int, where: str) -> dict:
    """"previous": the previous run date (None: first run); "per_change": [(change, rows)]; "table"."""
    counts = diff["change"].value_counts()
    rows = diff.sort_values(["change", "name"])[["change", "name", "previous", "detail"]]
    return {"previous": summary.get("previous_run_date", "unknown"), "total": len(diff),
            "per_change": [(str(k), int(v)) for k, v in sorted(counts.items())],
            "table": table(rows, max_rows, where)}


def sources_data(by_source: pd.DataFrame) -> Table | None:
    if by_source.empty:
        return None
    frame = by_source.assign(tier=by_source["tier"].fillna("-"))
    rows = (frame.groupby(["source", "tier"]).agg(tags=("tag", "nunique"), tag_images=("images", "sum"))
            .reset_index().sort_values(["source", "tier"]))
    rows["tag_images"] = rows["tag_images"].astype("int64")
    return table(rows, 50, numeric=("tags", "tag_images"))


def config_data(summary: dict) -> dict:
    """The run configuration flattened to (setting, JSON value) rows, and the whole summary as JSON."""
    config = _flatten(summary.get("config") or {})
    rows = pd.DataFrame(sorted((k, json.dumps(v, ensure_ascii=False)) for k, v in config.items()),
                        columns=["setting", "value"])
    return {"table": table(rows, 500) if config else None,
            "json": json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False, default=str)}


def page_data(tables: dict[str, pd.DataFrame], summary: dict, max_rows: int = 200) -> dict:
    """Everything the page shows, one entry per section (see the template): plain values and Tables, except
    "long_tail" (the long_tail_figure arguments, None without tag statistics) and "heatmap"["matrix"], from
    which taxonomy.report draws the plots."""
    run_date = str(summary.get("run_date", "unknown date"))
    tag_stats, tag_map, decisions = (get_table(tables, n) for n in ("tag_stats", "tag_map", "decisions"))
    config = summary.get("config")
    thresholds = rule_thresholds(decisions, config if isinstance(config, dict) else {})
    where = f"{STAGE}/{{table}}/run_date={run_date}/ under the outputs root"
    long_tail = None if tag_stats.empty else {"tag_stats": tag_stats, "tag_map": tag_map, "thresholds": thresholds,
                                              "total_images": total_images(summary, tag_stats)}
    taxonomy = get_table(tables, "taxonomy")
    return {
        "run_date": run_date, "stage": STAGE,
        "counts": counts_data(tables, summary),
        "rules": rules_data(thresholds, decisions),
        "long_tail": long_tail,
        "heatmap": heatmap_data(tables, max_rows),
        "decisions": decisions_data(decisions, max_rows, where.format(table="decisions")),
        "unmapped": unmapped_data(tag_map, tag_stats, max_rows, where.format(table="tag_map")),
        "tree": None if taxonomy.empty else tree_data(taxonomy),
        "diff": diff_data(get_table(tables, "diff"), summary, max_rows, where.format(table="diff")),
        "query_clusters": query_clusters_data(tables.get("query_clusters"), max_rows),
        "teacher_thresholds": teacher_thresholds_data(tables.get("teacher_thresholds"), max_rows),
        "label_issues": label_issues_data(tables.get("label_issues"), max_rows),
        "sources": sources_data(get_table(tables, "tag_stats_by_source")),
        "config": config_data(summary),
    }
