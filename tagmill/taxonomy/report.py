"""`tagmill report taxonomy`: the taxonomy stage's tables as one self-contained HTML page for analysts.

The page shows what the stage did to the raw tags and why: before/after counts and coverage, the long tail
of images per tag with the rare-tag threshold, a co-occurrence heatmap of the top classes, every merge,
drop and child candidate with its rule, number and threshold, the tags WordNet and the zh->en table did not
map, the domain tree, and the diff against the previous run. Plots are PNGs embedded as data: URIs, styles
are inline; the file opens offline and can be mailed around.

Who owns what: taxonomy.report_data loads the tables (pyarrow, no Spark; local paths only) and computes what
the page shows as plain values; this module draws the plots (matplotlib) and renders the page through the
Jinja2 template templates/taxonomy.html.j2, shipped as package data. The template autoescapes: every tag,
class name, query and summary value is HTML-escaped; only the base64 PNG data: URIs built here are marked
safe. The data names other code imports (load_tables, COLUMNS, TABLES, rule_thresholds, class_cooccurrence,
...) are re-exported here.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io as bytes_io
import os
import re
import warnings

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from tagmill import __version__, stages
from tagmill.taxonomy.report_data import (
    CHILD_RULES, COLUMNS, CONFIG_KEYS, DROP_RULES, MERGE_RULES, RULES, SIDE_INFO_STAGE, STAGE, TABLES, TOP_CLASSES,
    class_cooccurrence, empty_table, fmt_num, is_missing, load_tables, local_root, page_data, parse_date,
    rule_thresholds,
)

__all__ = [  # the page's functions, and the data names re-exported from report_data for existing callers
    "DEFAULT_TITLE", "render_report", "write_report", "long_tail_figure", "heatmap_figure", "png_base64",
    "STAGE", "SIDE_INFO_STAGE", "COLUMNS", "TABLES", "RULES", "MERGE_RULES", "DROP_RULES", "CHILD_RULES",
    "CONFIG_KEYS", "TOP_CLASSES", "load_tables", "empty_table", "rule_thresholds", "class_cooccurrence",
    "CJK_FONTS", "FONT_FAMILY", "plot_fonts",
]

DEFAULT_TITLE = "tagmill taxonomy report"
TEMPLATE = "taxonomy.html.j2"
"""The page template, in the templates folder of the tagmill.taxonomy package."""
CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "Microsoft YaHei", "PingFang SC",
             "Noto Sans SC")
"""Fonts with Chinese glyphs, tried in order after the Latin ones, in the page's CSS and in the plots
(matplotlib falls back glyph by glyph through its font list), so Chinese tags are not boxes where one of
them is installed (Debian: fonts-noto-cjk or fonts-wqy-microhei)."""
LATIN_FONTS = ("system-ui", "-apple-system", "Segoe UI", "Roboto", "Noto Sans")
FONT_FAMILY = ", ".join([*(f if f.startswith(("system-ui", "-")) else f'"{f}"' for f in LATIN_FONTS),
                         *(f'"{f}"' for f in CJK_FONTS), "sans-serif"])
"""The page's CSS font-family: the Latin fonts, then the CJK fallbacks, then the generic sans-serif (a constant
of this module, the one other value the template does not escape)."""


# ---------------------------------------------------------------------------------------------------- plots

@contextlib.contextmanager
def plot_fonts():
    """matplotlib settings for the report's plots: sans-serif with CJK_FONTS after the default fonts (those
    installed take part; the others are skipped without a warning). Restores the caller's settings after."""
    import matplotlib
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    fallbacks = [f for f in CJK_FONTS if f in installed]
    families = [*matplotlib.rcParams["font.sans-serif"], *fallbacks]
    with matplotlib.rc_context({"font.family": "sans-serif", "font.sans-serif": families}):
        yield


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # Figure + its Agg canvas: no pyplot, no global backend switch

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png_base64(fig) -> str:
    """The matplotlib Figure as a PNG, base64-encoded (ASCII letters, digits, "+", "/" and "=" only)."""
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
        ax.axhline(limit, color="#ff7f0e", linestyle="--", label=f"rare_images threshold: {fmt_num(limit)} images")
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


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# ---------------------------------------------------------------------------------------------------- html

def render_report(tables: dict[str, pd.DataFrame], summary: dict, title: str = DEFAULT_TITLE, *,
                  max_rows: int = 200) -> str:
    """One self-contained HTML page (str) for the taxonomy run described by `tables` and `summary`.

    Inputs: `tables`, {name: DataFrame} as load_tables returns (a name absent from the dict renders as an
    empty table); `summary`, the run summary (run_date, tags, classes, nodes, domains, coverage, images and
    optionally config); `title`; `max_rows`, the most rows any HTML table shows (the page says how many more
    there are and where the full table lives). Everything taken from the data is HTML-escaped.
    """
    data = page_data(tables, summary, max_rows)
    long_tail = data["long_tail"]
    heatmap = data["heatmap"]
    with plot_fonts():  # text is laid out when drawn: the figures are built and saved inside
        images = {"long_tail": None if long_tail is None else _png_uri(png_base64(long_tail_figure(**long_tail))),
                  "heatmap": None if heatmap is None else _png_uri(png_base64(heatmap_figure(heatmap["matrix"])))}
    return _environment().get_template(TEMPLATE).render(title=title, version=__version__, images=images,
                                                        font_family=Markup(FONT_FAMILY), **data)


def write_report(outputs_root: str, run_date: str, out_path: str | None = None) -> str:
    """load_tables + render_report, written (UTF-8) to `out_path`, by default
    ROOT/taxonomy/_reports/run_date=D/taxonomy.html; returns the path written."""
    tables, summary = load_tables(outputs_root, run_date)
    summary = {"run_date": run_date, **summary}
    if out_path is None:
        folder = stages.table_path(local_root(outputs_root), STAGE, "_reports", parse_date(run_date))
        out_path = f"{folder}/taxonomy.html"
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    page = render_report(tables, summary)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(page)
    return out_path


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _png_uri(png: str) -> Markup:
    """The data: URI of a base64 PNG built by png_base64, the one value the template does not escape: it is
    checked to hold base64 characters only, so it cannot break out of the src attribute."""
    if not _BASE64.fullmatch(png):
        raise ValueError("not a base64 string")
    return Markup(f"data:image/png;base64,{png}")


def _text(value) -> str:
    """A table cell or label from the data as text (the template escapes it); None, NaN and NA give ""."""
    return "" if is_missing(value) else str(value)


@functools.cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("tagmill.taxonomy", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(num=fmt_num, text=_text)
    return env
