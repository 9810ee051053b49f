"""The taxonomy stage's output tables: each one's columns and types, spelled once, as a Spark DDL schema.

The job checks every table against its schema before writing it (jobs/taxonomy.py), taxonomy.classes and
taxonomy.cooccurrence build their frames with these columns, and the report reads every table back with
matching pandas dtypes (taxonomy/report.py). Storage: ROOT/taxonomy/<table>/run_date=D/ (tagmill.jobs.io).
"""

from __future__ import annotations

SCHEMAS: dict[str, str] = {
    "tag_stats": "tag string, images long, products long, share double, search_log_images long, "
                 "teacher_images long, seller_category_images long",
    "tag_stats_by_source": "tag string, source string, tier string, images long, products long",
    "cooccurrence": "tag_a string, tag_b string, images_ab long, images_a long, images_b long, p_a_given_b double, "
                    "p_b_given_a double, pmi double, jaccard double",
    "decisions": "tag string, action string, rule string, other string, value double, threshold double, "
                 "detail string",
    "tag_map": "tag string, class_id int, class_name string, status string, reason string, synset string, "
               "mapped_by string",
    "taxonomy": "class_id int, name string, kind string, synset string, aliases array<string>, parent_id int, "
                "domain string, depth int, support long, path array<string>",
    "diff": "change string, name string, previous string, detail string",
}
"""Table -> its schema. decisions: one row per dropped, merged or re-parented tag, with the rule's number and
threshold; tag_map: every raw tag -> its class or the reason it has none; taxonomy: classes and hierarchy
nodes; diff: changes against the previous finished run."""

TABLES = tuple(SCHEMAS)

_PANDAS_DTYPES = {"string": "object", "int": "Int64", "long": "Int64", "double": "float64",
                  "array<string>": "object"}
"""Integers are nullable Int64, so a column reads the same whether or not it holds nulls; arrays are object
columns of sequences. The schemas use only these types."""


def _fields(table: str) -> list[tuple[str, str]]:
    """(column, Spark type) of each of the table's columns, in order."""
    return [tuple(field.split(" ", 1)) for field in SCHEMAS[table].split(", ")]


def columns(table: str) -> tuple[str, ...]:
    """The table's column names, in order."""
    return tuple(name for name, _ in _fields(table))


def pandas_dtypes(table: str) -> dict[str, str]:
    """Column -> the pandas dtype its values load as."""
    return {name: _PANDAS_DTYPES[kind] for name, kind in _fields(table)}
