"""Search-log events and listings: their schemas, the row checks, and the reason codes of quarantined rows.

Score first, decide second: `check_events` and `check_listings` add a `reason` column (null for a good
row) and never drop anything; the job splits good rows from quarantine on that column, so every input row
is accounted for.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from tagmill.config import MiningConfig

EVENT_FIELDS = ("time", "session_id", "user_id", "query", "product_id", "position", "action")
REQUIRED_EVENT_FIELDS = ("time", "session_id", "query", "product_id", "action")
LISTING_FIELDS = ("product_id", "title", "image_paths", "category_path")
REQUIRED_LISTING_FIELDS = ("product_id", "title", "image_paths")
"""The columns an input must have (once its names are mapped to ours): a row may still leave one empty."""
CORRUPT = "_corrupt_record"
DATE_PARTITION = "date_partition"
"""The value of the date=... folder an event file sits in (text, null outside one), added by the reader."""

# Raw string schemas: every field is read as text and typed here, so a bad value becomes a reason code
# instead of a reader error or a silent null.
EVENT_SCHEMA = T.StructType(
    [T.StructField(name, T.StringType()) for name in EVENT_FIELDS] + [T.StructField(CORRUPT, T.StringType())]
)
LISTING_SCHEMA = T.StructType([
    T.StructField("product_id", T.StringType()),
    T.StructField("title", T.StringType()),
    T.StructField("image_paths", T.ArrayType(T.StringType())),
    T.StructField("category_path", T.StringType()),
    T.StructField(CORRUPT, T.StringType()),
])

ACTION_TIERS = {"impression": 0, "no_click": 0, "click": 1, "contact": 2, "in_conversation": 3}
"""Tier of each action. Tiers nest: a stronger action implies the weaker ones (MSURU 5.2); a no-click is
never a negative label, only a shown result."""

# Reason codes, in the order rows are checked: a row gets the first that applies.
EVENT_REASONS = (
    "bad_partition",      # the file sits in a date=... folder whose value is not a date (YYYY-MM-DD)
    "malformed_row",      # not parseable in the input format
    "invalid_utf8",       # bytes that are not UTF-8
    "non_string_field",   # a JSON object or array where text belongs (query, ids, action)
    "missing_field",      # time, session_id, query, product_id or action empty
    "oversized_field",    # query or an id longer than the configured maximum
    "unknown_action",     # action not in ACTION_TIERS
    "bad_timestamp",      # time not parseable as ISO 8601
    "bad_position",       # position present but not a whole number >= 1
    "expired",            # older than the retention window before the run date
    "future_event",       # after the end of the run date
    "empty_query",        # nothing left after normalization (only punctuation or stop words)
    "bot_session",        # the session breaks the bot rule
    "unknown_product",    # product id not in the catalog
)
RULE_REASONS = ("expired", "bot_session")
"""Reasons of rows a rule leaves out by design (outside the retention window, a bot's session), not broken:
they count neither way in the quarantine limit (inputs.max_quarantined_share)."""
LISTING_REASONS = (
    "malformed_row", "invalid_utf8", "missing_field", "oversized_field", "no_images", "bad_image_path",
    "duplicate_product",
)
REPLACEMENT_CHAR = "\ufffd"


def _bad_text(col: Column) -> Column:
    """True when a string holds bytes that are not UTF-8 (Spark keeps such bytes as they are), or the
    replacement character a decoder left in their place."""
    return F.coalesce(~F.is_valid_utf8(col) | col.contains(REPLACEMENT_CHAR), F.lit(False))


def _first_reason(checks: list[tuple[str, Column]]) -> Column:
    """The reason of the first check whose condition holds, else null."""
    expr = F.lit(None).cast("string")
    for reason, condition in reversed(checks):
        expr = F.when(condition, F.lit(reason)).otherwise(expr)
    return expr


def _blank(column: str) -> Column:
    return F.col(column).isNull() | (F.trim(F.col(column)) == "")


def _typed(df: DataFrame, column: str, kind: str, parse) -> Column:
    """`column` as `kind`: taken as is when the reader already typed it (Parquet), else parsed from text."""
    if df.schema[column].dataType.simpleString() == kind:
        return F.col(column)
    return parse(F.col(column).cast("string"))


def check_events(raw: DataFrame, run_date: dt.date, cfg: MiningConfig) -> DataFrame:
    """Type and check raw events.

    Needs the columns of EVENT_FIELDS (strings, or typed as Parquet keeps them; `user_id` and `position`
    may be absent) and optionally `_corrupt_record` and `source_file`. Adds `event_time` (timestamp),
    `event_position` (int), `tier` (0-3) and `reason` (null for a good row, else one of EVENT_REASONS up
    to `future_event`). `date_partition` (optional): the text of the file's date=... folder. The window is (run_date - retention_days, end of run_date], in UTC.
    """
    df = raw
    for name in EVENT_FIELDS + (CORRUPT, DATE_PARTITION):
        if name not in df.columns:
            df = df.withColumn(name, F.lit(None).cast("string"))
    window_end = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time())
    window_start = window_end - dt.timedelta(days=cfg.retention_days + 1)
    event_time = _typed(df, "time", "timestamp", F.try_to_timestamp)
    position = _typed(df, "position", "int", lambda c: c.try_cast("int"))
    action = F.lower(F.trim(F.col("action")))
    tier = F.coalesce(*[F.when(action == name, F.lit(t)) for name, t in ACTION_TIERS.items()])
    has_bad_bytes = F.lit(False)
    for name in ("session_id", "user_id", "query", "product_id", "action"):
        has_bad_bytes = has_bad_bytes | _bad_text(F.col(name))
    oversized = F.coalesce(F.length("query") > cfg.max_query_chars, F.lit(False))
    for name in ("session_id", "user_id", "product_id"):
        oversized = oversized | F.coalesce(F.length(name) > cfg.max_id_chars, F.lit(False))
    corrupt = F.col(CORRUPT).isNotNull()
    partition = F.col(DATE_PARTITION).cast("string")
    structured = F.lit(False)
    for name in ("session_id", "user_id", "query", "product_id", "action"):
        structured = structured | _json_structure(F.col(name))
    reason = _first_reason([
        ("bad_partition", partition.isNotNull() & F.try_to_date(partition, "yyyy-MM-dd").isNull()),
        ("invalid_utf8", corrupt & _bad_text(F.col(CORRUPT))),
        ("malformed_row", corrupt),
        ("invalid_utf8", has_bad_bytes),
        ("non_string_field", structured),
        ("missing_field", _any_blank(REQUIRED_EVENT_FIELDS)),
        ("oversized_field", oversized),
        ("unknown_action", tier.isNull()),
        ("bad_timestamp", event_time.isNull()),
        ("bad_position", F.col("position").isNotNull() & (position.isNull() | (position < 1))),
        ("expired", event_time <= F.lit(window_start)),
        ("future_event", event_time >= F.lit(window_end)),
    ])
    return df.select(
        "*",
        event_time.alias("event_time"),
        position.alias("event_position"),
        tier.alias("tier"),
        reason.alias("reason"),
    )


def _json_structure(col: Column) -> Column:
    """True when a text field holds a JSON object or array. Spark's JSON reader hands a field typed as text
    the JSON of whatever value it finds, so {"query": {"a": 1}} would arrive as the query '{"a":1}'."""
    text = F.trim(col.cast("string"))
    return F.coalesce(text.rlike(r"^(\{.*\}|\[.*\])$") & F.try_parse_json(text).isNotNull(), F.lit(False))


def _any_blank(columns) -> Column:
    condition = F.lit(False)
    for name in columns:
        condition = condition | _blank(name)
    return condition


def check_listings(raw: DataFrame, max_title_chars: int, max_id_chars: int) -> DataFrame:
    """Check raw listings; adds `reason` (null for a good row, else one of LISTING_REASONS).

    Needs `product_id`, `title`, `image_paths` (array of strings), optional `category_path`,
    `_corrupt_record` and `row_order` (a number that increases with the row's place in the input: of two
    rows with one product id, the later one is the duplicate). An image path must be a non-empty relative
    path without NUL bytes that stays inside the image root (symlinks are checked when the image is read).
    """
    df = raw
    for name in LISTING_FIELDS + (CORRUPT,):
        if name not in df.columns:
            df = df.withColumn(name, F.lit(None).cast(LISTING_SCHEMA[name].dataType))
    corrupt = F.col(CORRUPT).isNotNull()
    bad_bytes = F.lit(False)
    for name in ("product_id", "title", "category_path"):
        bad_bytes = bad_bytes | _bad_text(F.col(name))
    bad_bytes = bad_bytes | F.coalesce(
        F.exists("image_paths", _bad_text), F.lit(False))
    escapes = F.exists("image_paths", lambda p: p.isNull() | (F.trim(p) == "") | p.contains("\x00")
                       | p.startswith("/") | p.rlike(r"(^|/)\.\.(/|$)") | p.rlike(r"^[A-Za-z][A-Za-z0-9+.-]*:"))
    reason = _first_reason([
        ("invalid_utf8", corrupt & _bad_text(F.col(CORRUPT))),
        ("malformed_row", corrupt),
        ("invalid_utf8", bad_bytes),
        ("missing_field", _blank("product_id")),
        ("oversized_field", F.coalesce((F.length("title") > max_title_chars)
                                       | (F.length("product_id") > max_id_chars), F.lit(False))),
        ("no_images", F.coalesce(F.size("image_paths") < 1, F.lit(True))),
        ("bad_image_path", F.coalesce(escapes, F.lit(False))),
    ])
    # Duplicates are judged among otherwise good rows, so a broken first copy does not evict a good one.
    first_good = F.min(F.when(reason.isNull(), F.col("row_order"))).over(Window.partitionBy("product_id"))
    duplicate = F.when(reason.isNull() & (F.col("row_order") > first_good), F.lit("duplicate_product"))
    return df.select("*", F.coalesce(reason, duplicate).alias("reason"))
