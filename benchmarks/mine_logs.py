"""Benchmark: mine-logs' tuple aggregation in local Spark vs the same aggregation as DuckDB SQL.

Generates N search-log events as Parquet (Zipf queries and products, sessions of ~10 events, a few bot
sessions), then times, on the same file and the same 2 cores:
  - Spark: tagmill's own library functions (bot rule + two-level distinct-session aggregation), read
    Parquet -> write Parquet, in a fresh local[2] JVM per size, whose peak resident memory is read from
    /proc (the driver; in local mode it is also the executor);
  - DuckDB: the same aggregation written as SQL, read Parquet -> write Parquet, 2 threads.
Both outputs are compared row for row. Prints wall times, their ratio and the driver's peak memory for
each size (default 1M and 10M events): the driver's memory must not grow with the input.

    python benchmarks/mine_logs.py [--sizes 1000000 10000000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
WORK = HERE.parent / ".bench" / "mine_logs"
ACTIONS = np.array(["impression", "click", "contact", "in_conversation"])
CFG = {"bot_max_events": 500, "bot_max_actions": 100}


def generate(path: Path, events: int, seed: int = 11) -> None:
    """Write `events` events to a Parquet file (deterministic). Sessions of 1-20 events on one query."""
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    sessions = events // 10
    queries, products = 20_000, 500_000
    session_of = np.sort(rng.integers(0, sessions, events))
    query_of_session = np.minimum(rng.zipf(1.2, sessions), queries) - 1
    product = np.minimum(rng.zipf(1.1, events), products) - 1
    product = (product * 7919 + query_of_session[session_of] * 104729) % products  # products vary by query
    action = rng.choice(4, size=events, p=[0.72, 0.2, 0.06, 0.02])
    # bots: 0.1% of sessions get 800 extra click events each
    bots = rng.choice(sessions, size=max(1, sessions // 1000), replace=False)
    session_of = np.concatenate([session_of, np.repeat(bots, 800)])
    product = np.concatenate([product, rng.integers(0, products, len(bots) * 800)])
    action = np.concatenate([action, np.ones(len(bots) * 800, dtype=int)])
    n = len(session_of)
    t0 = np.datetime64("2026-11-01T00:00:00", "s")
    times = t0 + (session_of.astype(np.int64) * 1_000_000 // sessions) + rng.integers(0, 600, n)
    table = pa.table({
        "time": pa.array(times.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
        "session_id": pa.array(np.char.add("s", session_of.astype(str))),
        "query": pa.array(np.char.add("q", query_of_session[session_of].astype(str))),
        "product_id": pa.array(np.char.add("p", product.astype(str))),
        "action": pa.array(ACTIONS[action]),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=1_000_000)


DUCKDB_SQL = """
COPY (
  WITH ev AS (
    SELECT query AS query_norm, product_id, session_id, "time" AS event_time,
           CASE action WHEN 'click' THEN 1 WHEN 'contact' THEN 2 WHEN 'in_conversation' THEN 3 ELSE 0 END AS tier
    FROM read_parquet('{src}')),
  bots AS (
    SELECT session_id FROM ev GROUP BY session_id
    HAVING count(*) > {bot_max_events} OR sum((tier > 0)::INT) > {bot_max_actions}),
  per_session AS (
    SELECT query_norm, product_id, session_id, max(tier) AS tier, count(*) AS events,
           min(event_time) AS first_seen, max(event_time) AS last_seen
    FROM ev ANTI JOIN bots USING (session_id)
    GROUP BY query_norm, product_id, session_id)
  SELECT query_norm, product_id,
         sum((tier >= 1)::BIGINT) AS clicks, sum((tier >= 2)::BIGINT) AS contacts,
         sum((tier >= 3)::BIGINT) AS in_conversations, count(*) AS sessions, sum(events) AS events,
         min(first_seen) AS first_seen, max(last_seen) AS last_seen
  FROM per_session GROUP BY query_norm, product_id
) TO '{dst}' (FORMAT parquet)
"""


def run_duckdb(src: Path, dst: Path) -> float:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    started = time.perf_counter()
    con.execute(DUCKDB_SQL.format(src=src, dst=dst, **CFG))
    return time.perf_counter() - started


def spark_worker(src: str, dst: str, repeats: int) -> None:
    """Runs in its own process (its own JVM), prints one JSON line with times and peak memory."""
    from pyspark.sql import functions as F

    from tagmill.config import MiningConfig, SparkConfig
    from tagmill.jobs.spark import spark_session
    from tagmill.labeling.events import ACTION_TIERS
    from tagmill.labeling.mining import aggregate_tuples, find_bot_sessions

    cfg = MiningConfig(**CFG)
    with spark_session(SparkConfig(master="local[2]", log_level="ERROR")) as spark:
        pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            raw = spark.read.parquet(src)
            tier = F.coalesce(*[F.when(F.col("action") == a, F.lit(t)) for a, t in ACTION_TIERS.items()])
            events = raw.select(F.col("query").alias("query_norm"), "product_id", "session_id",
                                F.col("time").alias("event_time"), tier.alias("tier"))
            used = events.join(find_bot_sessions(events, cfg), "session_id", "left_anti")
            aggregate_tuples(used).write.mode("overwrite").parquet(f"{dst}")
            times.append(time.perf_counter() - started)
        status = Path(f"/proc/{pid}/status").read_text()
        peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
        # What the driver still holds after a full GC: data collected to it would show up here.
        spark.sparkContext._jvm.java.lang.System.gc()
        heap = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getMemoryMXBean()
        print(json.dumps({"times": times, "peak_rss_mib": peak_kib / 1024,
                          "retained_heap_mib": heap.getHeapMemoryUsage().getUsed() / 2**20}))


def same_output(spark_dir: Path, duck_file: Path) -> bool:
    import duckdb

    con = duckdb.connect()
    query = ("SELECT count(*) FROM (SELECT * FROM read_parquet('{a}') EXCEPT ALL SELECT * FROM read_parquet('{b}'))")
    cols = "query_norm, product_id, clicks, contacts, in_conversations, sessions, events, first_seen, last_seen"
    a = f"{spark_dir}/*.parquet"
    diff1 = con.execute(query.format(a=a, b=duck_file).replace("SELECT *", f"SELECT {cols}")).fetchone()[0]
    diff2 = con.execute(query.format(a=duck_file, b=a).replace("SELECT *", f"SELECT {cols}")).fetchone()[0]
    return diff1 == 0 and diff2 == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per engine; the best is reported")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spark_worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    print(f"mine-logs aggregation benchmark: {os.cpu_count()} cores visible, Spark local[2] vs DuckDB threads=2")
    rows = []
    for size in args.sizes:
        src = WORK / f"events_{size}.parquet"
        started = time.perf_counter()
        generate(src, size)
        n_rows = pq.ParquetFile(src).metadata.num_rows
        print(f"  events: {n_rows:,} rows in {src} (generated/cached in {time.perf_counter() - started:.1f}s)")
        duck_out = WORK / f"duck_{size}.parquet"
        duck = min(run_duckdb(src, duck_out) for _ in range(args.repeats))
        spark_out = WORK / f"spark_{size}"
        proc = subprocess.run([sys.executable, __file__, "--worker", str(src), str(spark_out), str(args.repeats)],
                              capture_output=True, text=True, check=True)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        spark = min(result["times"])
        rows.append((n_rows, spark, result["times"][0], duck, result["peak_rss_mib"], result["retained_heap_mib"],
                     same_output(spark_out, duck_out)))
    print()
    print(f"{'events':>12} {'spark_s':>9} {'spark_cold_s':>13} {'duckdb_s':>9} {'ratio':>7} "
          f"{'driver_peak_rss_MiB':>20} {'driver_heap_after_gc_MiB':>25} {'same_rows':>10}")
    for n_rows, spark, cold, duck, rss, heap, same in rows:
        print(f"{n_rows:>12,} {spark:>9.2f} {cold:>13.2f} {duck:>9.2f} {spark / duck:>6.1f}x {rss:>20.0f} "
              f"{heap:>25.0f} {str(same):>10}")
    if len(rows) > 1:
        print(f"driver memory, largest vs smallest input ({rows[-1][0] / rows[0][0]:.0f}x the events): "
              f"peak RSS {rows[-1][4] / rows[0][4]:.2f}x, heap retained after GC {rows[-1][5] / rows[0][5]:.2f}x")
    print("(local mode: the driver JVM also runs the executor's tasks, so its peak RSS includes their "
          "working memory, bounded by spark.driver.memory)")


if __name__ == "__main__":
    main()
