"""`tagmill report taxonomy`: the taxonomy stage's tables as one self-contained HTML page for analysts.

The page shows what the stage did to the raw tags and why: before/after counts and coverage, the long tail
of images per tag with the rare-tag threshold, a co-occurrence heatmap of the top classes, every merge,
drop and child candidate with its rule, number and threshold, the tags WordNet and the zh->en table did not
map, the domain tree, and the diff against the previous run. Plots are PNGs embedded as data: URIs, styles
are inline; the file opens offline and can be mailed around.

Reading uses pyarrow, not Spark, so the report and `notebooks/taxonomy.ipynb` run on an analyst's laptop;
it follows the storage layout of `tagmill.jobs.io` (ROOT/taxonomy/<table>/run_date=D/, summary at
ROOT/taxonomy/_runs/run_date=D/summary.json) and reads local paths only (copy outputs from HDFS or an
object store first). Table columns and types: taxonomy.tables.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io as bytes_io
import json
import math
import os
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from tagmill import __version__, stages
from tagmill.taxonomy.tables import TABLES, pandas_dtypes

STAGE = stages.TAXONOMY
SIDE_INFO_STAGE = stages.SIDE_INFO
"""Its optional query_clusters table (query, events, cluster, similarity, example) joins the report."""

COLUMNS: dict[str, dict[str, str]] = {table: pandas_dtypes(table) for table in TABLES}
"""Each table's contract columns (taxonomy.tables) with the pandas dtype load_tables gives them."""

MERGE_RULES = ("synset_merge", "chinese_table", "cooccurrence_merge")
DROP_RULES = ("rare_share", "rare_images", "isolated")
CHILD_RULES = ("implied_by",)

RULES: dict[str, str] = {
    "rare_share": "dropped: the tag is on too small a share of all labeled images (share < threshold).",
    "rare_images": "dropped: the tag is on too few images to learn a class from (images < threshold).",
    "isolated": "dropped: the tag co-occurs with no other tag consistently, so nothing supports it.",
    "synset_merge": "merged: the tag names the same WordNet synset as the class it merges into.",
    "chinese_table": "merged: the zh->en table translates the Chinese tag to the class it merges into.",
    "cooccurrence_merge": "merge candidate: the two tags label nearly the same images, "
                          "P(a|b) and P(b|a) both >= threshold.",
    "implied_by": "child candidate: images with this tag nearly always carry the other one, "
                  "P(parent|child) >= threshold, but not the other way round.",
}
"""One sentence per decision rule, shown next to its threshold."""

DEFAULT_TITLE = "tagmill taxonomy report"
TOP_CLASSES = 25
"""Classes in the co-occurrence heatmap: the most supported ones; more would make labels unreadable."""


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
    day = _parse_date(run_date)
    root = _local_root(outputs_root)
    summary_file = stages.summary_path(root, STAGE, day)
    if not os.path.isfile(summary_file):
        raise FileNotFoundError(
            f"missing {summary_file}: the taxonomy stage has not finished for {run_date}; run "
            f"`tagmill taxonomy --date {run_date}` or `tagmill build` first")
    with open(summary_file, encoding="utf-8") as f:
        summary = json.load(f)
    tables = {name: _read_table(stages.table_path(root, STAGE, name, day), name, run_date) for name in TABLES}
    clusters = stages.table_path(root, SIDE_INFO_STAGE, "query_clusters", day)
    if os.path.isdir(clusters):  # the side-info stage ran: its query clusters are shown with the taxonomy
        tables["query_clusters"] = pads.dataset(clusters, format="parquet").to_table().to_pandas()
    return tables, summary


def _parse_date(run_date: str) -> dt.date:
    try:
        return dt.date.fromisoformat(run_date)
    except (TypeError, ValueError):
        raise ValueError(f"run_date must be YYYY-MM-DD, got {run_date!r}") from None


def _local_root(outputs_root: str) -> str:
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


# ---------------------------------------------------------------------------------------------------- numbers

CONFIG_KEYS = {"rare_share": "min_share", "rare_images": "min_images", "isolated": "isolated_max_conditional",
               "cooccurrence_merge": "merge_min_conditional", "implied_by": "child_min_conditional"}
"""The summary's "config" key holding each rule's threshold (the taxonomy section of the config)."""


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
    taxonomy = _get(tables, "taxonomy")
    classes = taxonomy[taxonomy["kind"] == "class"].copy()
    classes["support"] = classes["support"].fillna(0).astype("int64")
    classes = classes.sort_values(["support", "name"], ascending=[False, True]).head(top)
    co = _get(tables, "cooccurrence")
    if len(classes) < 2 or co.empty:
        return pd.DataFrame()
    names = list(classes["name"])
    tag_map = _get(tables, "tag_map").dropna(subset=["class_name"])
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


def _flatten(data, prefix: str = "") -> dict:
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    flat = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _get(tables: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    frame = tables.get(name)
    return empty_table(name) if frame is None else frame


def _total_images(summary: dict, tag_stats: pd.DataFrame) -> float | None:
    """All labeled images: the summary's count, else recovered from images / share of tag_stats."""
    if isinstance(summary.get("images"), (int, float)) and summary["images"] > 0:
        return float(summary["images"])
    rows = tag_stats[(tag_stats["share"] > 0) & tag_stats["images"].notna()]
    if rows.empty:
        return None
    return float((rows["images"].astype("float64") / rows["share"]).median())


# ---------------------------------------------------------------------------------------------------- plots

def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # Figure + its Agg canvas: no pyplot, no global backend switch

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = bytes_io.BytesIO()
    with warnings.catch_warnings():
        # Tags may be Chinese and the default font may lack the glyphs; the HTML tables carry the names.
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def long_tail_figure(tag_stats: pd.DataFrame, tag_map: pd.DataFrame, thresholds: dict[str, list[float]],
                     total_images: float | None):
    """Images per raw tag by rank (log y), coloured by what the taxonomy did to the tag, with the rare-tag
    thresholds as horizontal lines. Returns a matplotlib Figure."""
    fig = _figure(9, 4.2)
    ax = fig.add_subplot()
    stats = tag_stats[tag_stats["images"].notna()].copy()
    stats["images"] = stats["images"].astype("int64")
    stats = stats.sort_values(["images", "tag"], ascending=[False, True]).reset_index(drop=True)
    stats["rank"] = stats.index + 1
    status = dict(zip(tag_map["tag"], tag_map["status"]))
    stats["status"] = stats["tag"].map(status).fillna("unknown")
    colours = {"kept": "#1f77b4", "merged": "#2ca02c", "dropped": "#d62728", "unknown": "#7f7f7f"}
    for name, colour in colours.items():
        part = stats[(stats["status"] == name) & (stats["images"] > 0)]
        if not part.empty:
            ax.scatter(part["rank"], part["images"], s=6, color=colour, label=f"{name} ({len(part):,})",
                       rasterized=True)
    if "rare_images" in thresholds:
        limit = max(thresholds["rare_images"])
        ax.axhline(limit, color="#ff7f0e", linestyle="--", label=f"rare_images threshold: {_num(limit)} images")
    if "rare_share" in thresholds and total_images:
        share = max(thresholds["rare_share"])
        ax.axhline(share * total_images, color="#9467bd", linestyle=":",
                   label=f"rare_share threshold: {share:.4%} = {share * total_images:,.1f} images")
    ax.set_yscale("log")
    ax.set_xlabel("tag rank (most images first)")
    ax.set_ylabel("images carrying the tag (log)")
    ax.set_title(f"Long tail of {len(stats):,} raw tags")
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8)
    return fig


def heatmap_figure(matrix: pd.DataFrame):
    """The class co-occurrence matrix of class_cooccurrence as a heatmap. Returns a matplotlib Figure."""
    n = len(matrix)
    side = max(5.0, 0.32 * n + 2.5)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    image = ax.imshow(matrix.to_numpy(dtype="float64"), cmap="viridis", vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    labels = [_short(str(name), 28) for name in matrix.index]
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    if n <= TOP_CLASSES:  # small enough to print the numbers in the cells
        for (i, j), value in pd.DataFrame(matrix.to_numpy()).stack().items():
            if value >= 0.05:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if value > 0.6 else "white")
    ax.set_xlabel("column class")
    ax.set_ylabel("row class")
    ax.set_title("P(column | row): share of the row class's images that also carry the column class", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="P(column | row)")
    return fig


# ---------------------------------------------------------------------------------------------------- html

def render_report(tables: dict[str, pd.DataFrame], summary: dict, title: str = DEFAULT_TITLE, *,
                  max_rows: int = 200) -> str:
    """One self-contained HTML page (str) for the taxonomy run described by `tables` and `summary`.

    Inputs: `tables`, {name: DataFrame} as load_tables returns (a name absent from the dict renders as an
    empty table); `summary`, the run summary (run_date, tags, classes, nodes, domains, coverage, images and
    optionally config); `title`; `max_rows`, the most rows any HTML table shows (the page says how many more
    there are and where the full table lives). Everything taken from the data is HTML-escaped.
    """
    run_date = str(summary.get("run_date", "unknown date"))
    tag_stats, tag_map, decisions = _get(tables, "tag_stats"), _get(tables, "tag_map"), _get(tables, "decisions")
    config = summary.get("config")
    thresholds = rule_thresholds(decisions, config if isinstance(config, dict) else {})
    where = f"{STAGE}/{{table}}/run_date={run_date}/ under the outputs root"
    sections = [
        _counts_section(tables, summary),
        _rules_section(thresholds, decisions),
        _long_tail_section(tag_stats, tag_map, thresholds, _total_images(summary, tag_stats)),
        _heatmap_section(tables, max_rows),
        _decisions_section(decisions, max_rows, where.format(table="decisions")),
        _unmapped_section(tag_map, tag_stats, max_rows, where.format(table="tag_map")),
        _tree_section(_get(tables, "taxonomy")),
        _diff_section(_get(tables, "diff"), summary, max_rows, where.format(table="diff")),
        _query_clusters_section(tables.get("query_clusters"), max_rows),
        _sources_section(_get(tables, "tag_stats_by_source")),
        _config_section(summary),
    ]
    nav = "".join(f'<a href="#{anchor}">{_e(label)}</a>' for anchor, label in _NAV)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(title)} - {_e(run_date)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{_e(title)}</h1><p class=\"meta\">run date <b>{_e(run_date)}</b> &middot; "
        f"tagmill {_e(__version__)} &middot; tables: {_e(STAGE)}/&lt;table&gt;/run_date={_e(run_date)}/</p>"
        f"<nav>{nav}</nav></header>\n<main>\n" + "\n".join(sections) + "\n</main>\n</body>\n</html>\n")


def write_report(outputs_root: str, run_date: str, out_path: str | None = None) -> str:
    """load_tables + render_report, written (UTF-8) to `out_path`, by default
    ROOT/taxonomy/_reports/run_date=D/taxonomy.html; returns the path written."""
    tables, summary = load_tables(outputs_root, run_date)
    summary = {"run_date": run_date, **summary}
    if out_path is None:
        out_path = f"{stages.table_path(_local_root(outputs_root), STAGE, '_reports', _parse_date(run_date))}/taxonomy.html"
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    page = render_report(tables, summary)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(page)
    return out_path


_NAV = (("counts", "Counts"), ("rules", "Rules"), ("long-tail", "Long tail"), ("cooccurrence", "Co-occurrence"),
        ("merges", "Merges"), ("drops", "Drops"), ("children", "Child candidates"), ("unmapped", "Unmapped"),
        ("tree", "Domain tree"), ("diff", "Diff"), ("query-clusters", "Query clusters"), ("sources", "Sources"),
        ("config", "Config"))

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;margin:0;color:#1d2330;
background:#f6f7f9;line-height:1.45}
header{background:#1d2330;color:#fff;padding:14px 28px}header h1{margin:0 0 4px;font-size:1.5em}
.meta{margin:0;color:#c9d1e0;font-size:.9em}nav{margin-top:8px}nav a{color:#9cc3ff;margin-right:14px;
font-size:.9em;text-decoration:none}main{padding:8px 28px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:6px;padding:6px 20px 16px;margin:16px 0}
h2{font-size:1.2em;border-bottom:1px solid #e1e4ea;padding-bottom:4px}h3{font-size:1em;margin-bottom:4px}
table{border-collapse:collapse;font-size:.86em;margin:6px 0}th,td{border:1px solid #e1e4ea;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#eef1f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#5b6578;font-size:.88em}.warn{color:#a33;font-weight:600}img{max-width:100%;height:auto}
code{background:#eef1f6;padding:0 3px;border-radius:3px}.tree,.tree ul{list-style:none;padding-left:18px}
.tree li{margin:2px 0}.tree .class{font-weight:600}.tree .node{font-style:italic}.kind{color:#5b6578;
font-size:.8em}.support{color:#1f6f3f}.aliases{color:#5b6578;font-size:.85em}summary{cursor:pointer}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #e1e4ea;border-radius:6px;padding:6px 12px;
min-width:120px}.card b{display:block;font-size:1.3em}.card span{color:#5b6578;font-size:.8em}
"""


def _e(value) -> str:
    """HTML-escaped text of a value from the data; None and NaN become ""."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return html.escape(str(value), quote=True)


def _num(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:.4g}"


def _pct(share) -> str:
    return f"{float(share):.2%}" if isinstance(share, (int, float)) and not isinstance(share, bool) else "n/a"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_e(heading)}</h2>\n{body}\n</section>'


def _html_table(frame: pd.DataFrame, max_rows: int, where: str | None = None,
                numeric: tuple[str, ...] = ()) -> str:
    """An escaped HTML table of `frame`'s first `max_rows` rows, with a note on the rows left out."""
    if frame.empty:
        return '<p class="note">No rows.</p>'
    shown = frame.head(max_rows)
    head = "".join(f"<th>{_e(c)}</th>" for c in shown.columns)
    rows = []
    for record in shown.itertuples(index=False):
        cells = []
        for column, value in zip(shown.columns, record):
            if column in numeric:
                cells.append(f'<td class="n">{_num(value)}</td>')
            else:
                cells.append(f"<td>{_e(_seq_text(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if len(frame) > max_rows:
        place = f": the full table is {where}" if where else ""
        left = len(frame) - max_rows
        more = (f'<p class="note">{left:,} more {"row" if left == 1 else "rows"} not shown{_e(place)} (load it with '
                '<code>tagmill.taxonomy.report.load_tables</code> or <code>notebooks/taxonomy.ipynb</code>).</p>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _seq_text(value):
    if isinstance(value, (list, tuple, np.ndarray)):  # array columns (aliases, path) arrive as ndarrays
        return ", ".join(str(v) for v in list(value))
    return value


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{value}</b><span>{_e(label)}</span></div>'


def _counts_section(tables: dict[str, pd.DataFrame], summary: dict) -> str:
    tag_map, decisions, taxonomy = _get(tables, "tag_map"), _get(tables, "decisions"), _get(tables, "taxonomy")
    tags = summary.get("tags") or {}
    status = tag_map["status"].value_counts()
    tags_in = tags.get("in", len(tag_map) or len(_get(tables, "tag_stats")))
    tags_out = tags.get("out", int(status.get("kept", 0) + status.get("merged", 0)))
    dropped = tags.get("quarantined")
    if not isinstance(dropped, dict):
        drops = decisions[decisions["action"] == "drop"]
        dropped = {str(k): int(v) for k, v in drops["rule"].value_counts().items()}
    classes = summary.get("classes", int((taxonomy["kind"] == "class").sum()))
    nodes = summary.get("nodes", int((taxonomy["kind"] == "node").sum()))
    domains = summary.get("domains")
    if not isinstance(domains, dict):
        domains = {str(k): int(v) for k, v in
                   taxonomy[taxonomy["kind"] == "class"]["domain"].value_counts().items()}
    coverage = summary.get("coverage") or {}
    cards = "".join([
        _card(_num(tags_in), "raw tags in"), _card(_num(tags_out), "tags out (kept + merged)"),
        _card(_num(status.get("kept", 0)), "kept as their own class"),
        _card(_num(status.get("merged", 0)), "merged into a class"),
        _card(_num(sum(dropped.values())), "dropped"), _card(_num(classes), "classes"),
        _card(_num(nodes), "ancestor nodes"), _card(_num(len(domains)), "domains"),
        _card(_e(_pct(coverage.get("before"))), "coverage before"),
        _card(_e(_pct(coverage.get("after"))), "coverage after"),
    ])
    if isinstance(summary.get("images"), (int, float)):
        cards += _card(_num(summary["images"]), "labeled images")
    check = ""
    if all(isinstance(x, (int, float)) for x in (tags_in, tags_out)) and tags_in != tags_out + sum(dropped.values()):
        check = (f'<p class="warn">Tags in ({_num(tags_in)}) != tags out ({_num(tags_out)}) + dropped '
                 f'({_num(sum(dropped.values()))}): the run summary does not add up.</p>')
    drop_rows = pd.DataFrame(sorted(dropped.items()), columns=["rule", "tags dropped"])
    domain_rows = pd.DataFrame(sorted(domains.items(), key=lambda kv: (-kv[1], kv[0])),
                               columns=["domain", "classes"])
    body = (f'<div class="cards">{cards}</div>{check}'
            '<p class="note">Coverage: the share of labeled images that carry at least one tag, before the '
            'taxonomy (all raw tags) and after it (tags that map to a class).</p>'
            '<h3>Dropped by rule</h3>' + _html_table(drop_rows, 50, numeric=("tags dropped",))
            + '<h3>Classes per domain</h3>' + _html_table(domain_rows, 100, numeric=("classes",)))
    return _section("counts", "Before / after", body)


def _rules_section(thresholds: dict[str, list[float]], decisions: pd.DataFrame) -> str:
    counts = decisions["rule"].value_counts()
    rows = pd.DataFrame([{"rule": rule, "decisions": int(counts.get(rule, 0)),
                          "threshold": ", ".join(_num(t) for t in thresholds.get(rule, [])) or "n/a",
                          "what it means": text} for rule, text in RULES.items()])
    return _section("rules", "Rules and thresholds", _html_table(rows, 50, numeric=("decisions",))
                    + '<p class="note">Thresholds come from the decisions table (the value each rule compared '
                      'against), else from the run configuration. Merge and child candidates from '
                      'co-occurrence are proposals for review; synset and Chinese-table merges are applied.</p>')


def _long_tail_section(tag_stats, tag_map, thresholds, total_images) -> str:
    if tag_stats.empty:
        return _section("long-tail", "Long tail of images per tag", '<p class="note">No tag statistics.</p>')
    png = _png(long_tail_figure(tag_stats, tag_map, thresholds, total_images))
    body = (f'<img alt="images per tag by rank, log scale" src="data:image/png;base64,{png}">'
            '<p class="note">Each point is one raw tag; red ones were dropped, green ones merged into another '
            'class. Dashed lines: the rare-tag thresholds; tags below them are dropped as rare.</p>')
    return _section("long-tail", "Long tail of images per tag", body)


def _heatmap_section(tables: dict[str, pd.DataFrame], max_rows: int) -> str:
    heading = "Co-occurrence of the top classes"
    matrix = class_cooccurrence(tables)
    if matrix.empty or not matrix.notna().to_numpy().any():
        return _section("cooccurrence", heading,
                        '<p class="note">No co-occurrence between classes in this run: the cooccurrence table '
                        'is empty or holds no pair of two different top classes (common for a marketplace '
                        'without a teacher model, where most images carry one tag).</p>')
    png = _png(heatmap_figure(matrix))
    pairs = matrix.stack().rename("p").reset_index()
    pairs.columns = ["row class", "column class", "P(column | row)"]
    pairs = pairs[pairs["P(column | row)"] > 0].sort_values(
        ["P(column | row)", "row class", "column class"], ascending=[False, True, True])
    body = (f'<img alt="co-occurrence heatmap of the top classes" src="data:image/png;base64,{png}">'
            f'<p class="note">The {len(matrix)} classes with the most images. Cell = conditional probability '
            'P(column | row): of the images carrying the row class, the share that also carry the column class '
            '(tag pairs mapped to classes through tag_map and summed; pairs inside one class left out; an upper '
            'bound when a class has several raw tags on one image). A bright row-column pair in both directions '
            'suggests the classes are the same thing; bright in one direction only, a parent-child relation.</p>'
            '<h3>Strongest pairs</h3>' + _html_table(pairs, min(max_rows, 30), numeric=("P(column | row)",)))
    return _section("cooccurrence", heading, body)


_DECISION_COLUMNS = ["rule", "tag", "other", "value", "threshold", "detail"]


def _decision_table(decisions: pd.DataFrame, rules: tuple[str, ...], action: str, order: list[str],
                    ascending: list[bool], max_rows: int, where: str) -> str:
    rows = decisions[(decisions["action"] == action) | decisions["rule"].isin(rules)]
    rows = rows.sort_values(order, ascending=ascending, na_position="last")[_DECISION_COLUMNS]
    counts = rows["rule"].value_counts()
    summary = ", ".join(f"{_e(rule)}: {int(counts.get(rule, 0)):,}" for rule in
                        [*rules, *sorted(set(counts.index) - set(rules))])
    return (f'<p class="note">{_rows(len(rows))} ({summary}).</p>'
            + _html_table(rows, max_rows, where, numeric=("value", "threshold")))


def _decisions_section(decisions: pd.DataFrame, max_rows: int, where: str) -> str:
    merges = _decision_table(decisions, MERGE_RULES, "merge", ["rule", "other", "tag"], [True, True, True],
                             max_rows, where)
    drops = _decision_table(decisions, DROP_RULES, "drop", ["rule", "value", "tag"], [True, False, True],
                            max_rows, where)
    children = _decision_table(decisions, CHILD_RULES, "child", ["rule", "other", "value", "tag"],
                               [True, True, False, True], max_rows, where)
    return "\n".join([
        _section("merges", "Merges", '<p class="note">Tag merged (or proposed to merge) into <i>other</i>. '
                 'Sorted by rule, then target.</p>' + merges),
        _section("drops", "Drops", '<p class="note">Tags removed from the vocabulary; <i>value</i> is the '
                 'measured number the rule compared with <i>threshold</i>. Sorted by rule, then value (closest '
                 'to the threshold first for the rare rules).</p>' + drops),
        _section("children", "Child candidates", '<p class="note">Tag proposed as a child of <i>other</i>: '
                 '<i>value</i> = P(other | tag).</p>' + children),
    ])


def _unmapped_section(tag_map: pd.DataFrame, tag_stats: pd.DataFrame, max_rows: int, where: str) -> str:
    rows = tag_map[tag_map["mapped_by"] == "unmapped"][["tag", "status", "class_name", "reason"]]
    images = dict(zip(tag_stats["tag"], tag_stats["images"]))
    rows = rows.assign(images=rows["tag"].map(images).astype("Float64"))
    rows = rows.sort_values(["images", "tag"], ascending=[False, True], na_position="last")
    rows = rows[["tag", "images", "status", "class_name", "reason"]]
    body = (f'<p class="note">{len(rows):,} raw tags that neither WordNet nor the zh-&gt;en table mapped to a '
            'synset. They keep their own name when kept; add them to the zh-&gt;en table or a synonym list if '
            'they should join a class. Most images first.</p>' + _html_table(rows, max_rows, where,
                                                                             numeric=("images",)))
    return _section("unmapped", "Unmapped tags", body)


def _tree_section(taxonomy: pd.DataFrame) -> str:
    if taxonomy.empty:
        return _section("tree", "Domain tree", '<p class="note">The taxonomy is empty.</p>')
    nodes = {int(r["class_id"]): r for r in taxonomy.to_dict("records") if not pd.isna(r["class_id"])}
    children: dict[int | None, list[int]] = {}
    for cid, row in nodes.items():
        parent = row["parent_id"]
        parent = None if pd.isna(parent) or int(parent) not in nodes else int(parent)
        children.setdefault(parent, []).append(cid)

    def order(ids: list[int]) -> list[int]:
        return sorted(ids, key=lambda i: (-_int(nodes[i]["support"]), str(nodes[i]["name"])))

    seen: set[int] = set()

    def render(cid: int) -> str:
        seen.add(cid)
        row = nodes[cid]
        kids = [k for k in order(children.get(cid, [])) if k not in seen]
        inner = "".join(render(k) for k in kids)
        sub = f"<ul>{inner}</ul>" if inner else ""
        return f"<li>{_node_label(row)}{sub}</li>"

    domains = []
    for root in order(children.get(None, [])):
        row = nodes[root]
        kids = "".join(render(k) for k in order(children.get(root, [])) if k not in seen)
        seen.add(root)
        domains.append(f'<li><details open><summary>{_node_label(row)}</summary><ul>{kids}</ul></details></li>')
    body = ('<p class="note">Domains at the top, then ancestor nodes (italic) from the WordNet hierarchy, then '
            'classes (bold: what images are labeled with). Support = images carrying the class, or for a node '
            'the images of its descendants. Aliases = raw tags merged into the class.</p>'
            f'<ul class="tree">{"".join(domains)}</ul>')
    return _section("tree", "Domain tree", body)


def _int(value) -> int:
    return 0 if value is None or pd.isna(value) else int(value)


def _node_label(row: dict) -> str:
    kind = str(row["kind"]) if not pd.isna(row["kind"]) else ""
    parts = [f'<span class="{_e(kind)}">{_e(row["name"])}</span> <span class="kind">#{_e(row["class_id"])} '
             f'{_e(kind)}</span>']
    if row["synset"] is not None and not pd.isna(row["synset"]):
        parts.append(f"<code>{_e(row['synset'])}</code>")
    parts.append(f'<span class="support">{_num(_int(row["support"]))} images</span>')
    aliases = row["aliases"]
    aliases = [] if aliases is None or (isinstance(aliases, float) and math.isnan(aliases)) else list(aliases)
    if aliases:
        listed = ", ".join(_e(a) for a in aliases[:12])
        more = f" +{len(aliases) - 12} more" if len(aliases) > 12 else ""
        parts.append(f'<span class="aliases">aliases: {listed}{more}</span>')
    return " ".join(parts)


def _query_clusters_section(clusters: pd.DataFrame | None, max_rows: int) -> str:
    """MSURU 5.5: queries grouped by K-means over their embeddings, an alternative label space; each cluster
    with its size, its searches and the queries nearest its centroid."""
    heading = "Query clusters"
    if clusters is None or clusters.empty or not (clusters["cluster"] >= 0).any():
        return _section("query-clusters", heading, '<p class="note">No query clusters (the side-info stage did '
                                                   'not run, or side_info.query_clusters is 0).</p>')
    clustered = clusters[clusters["cluster"] >= 0]
    rows = []
    for cluster, group in clustered.groupby("cluster"):
        examples = group[group["example"]].sort_values(["similarity", "query"], ascending=[False, True])
        rows.append({"cluster": int(cluster), "queries": len(group), "searches": int(group["events"].sum()),
                     "nearest the centroid": ", ".join(examples["query"])})
    table = pd.DataFrame(rows).sort_values(["searches", "cluster"], ascending=[False, True])
    unclustered = int((clusters["cluster"] < 0).sum())
    note = (f'<p class="note">{len(rows):,} clusters of {len(clustered):,} queries (K-means over query '
            f'embeddings, MSURU 5.5); {unclustered:,} queries without an embedding are left out. Full table: '
            f'side-info/query_clusters.</p>')
    return _section("query-clusters", heading, note + _html_table(table, max_rows, numeric=("queries", "searches")))


def _diff_section(diff: pd.DataFrame, summary: dict, max_rows: int, where: str) -> str:
    previous = summary.get("previous_run_date", "unknown")
    if diff.empty and previous is None:
        body = '<p>No previous run to compare with: this is the first taxonomy run.</p>'
    elif diff.empty:
        body = f'<p>No change: the taxonomy is the same as the one of the previous run ({_e(previous)}).</p>'
    else:
        counts = diff["change"].value_counts()
        note = ", ".join(f"{_e(k)}: {int(v):,}" for k, v in sorted(counts.items()))
        rows = diff.sort_values(["change", "name"])[["change", "name", "previous", "detail"]]
        changes = f'{len(diff):,} change{"" if len(diff) == 1 else "s"}'
        against = f" against the run of {_e(previous)}" if previous else ""
        body = f'<p class="note">{changes}{against} ({note}).</p>' + _html_table(rows, max_rows, where)
    return _section("diff", "Diff against the previous run", body)


def _sources_section(by_source: pd.DataFrame) -> str:
    if by_source.empty:
        return _section("sources", "Labels by source", '<p class="note">No per-source statistics.</p>')
    frame = by_source.assign(tier=by_source["tier"].fillna("-"))
    rows = (frame.groupby(["source", "tier"]).agg(tags=("tag", "nunique"), tag_images=("images", "sum"))
            .reset_index().sort_values(["source", "tier"]))
    rows["tag_images"] = rows["tag_images"].astype("int64")
    body = ('<p class="note">Raw tags per label source and tier; <i>tag_images</i> counts (tag, image) pairs, '
            'so an image with two tags counts twice.</p>' + _html_table(rows, 50, numeric=("tags", "tag_images")))
    return _section("sources", "Labels by source", body)


def _config_section(summary: dict) -> str:
    config = _flatten(summary.get("config") or {})
    table = _html_table(pd.DataFrame(sorted((k, json.dumps(v, ensure_ascii=False)) for k, v in config.items()),
                                     columns=["setting", "value"]), 500) if config else \
        '<p class="note">The run summary carries no configuration.</p>'
    raw = json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    body = table + f"<details><summary>Run summary (JSON)</summary><pre>{_e(raw)}</pre></details>"
    return _section("config", "Configuration and run summary", body)
