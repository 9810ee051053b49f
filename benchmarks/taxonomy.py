"""Benchmark: tagmill's co-occurrence table and merge rules in local Spark vs a single-process scipy.sparse
reference (X^T X of the binary image x tag matrix) on the same generated image-tag pairs.

Generates about N distinct (image_key, tag) pairs over T tags as Parquet, in chunks (seeded): Zipf-like tag
frequencies with tag names in random order, 1-5 tags per image, planted always-together pairs (merge
candidates), planted children that only ever appear with their parent (implied_by candidates) and a few
crowded images above the 64-tag cap. Then, each in its own process so each peak is its own:
  - Spark (local[2]): cooccurrence -> Parquet, then cooccurrence_rules over that table -> Parquet, the way the
    taxonomy job runs them; peak memory is the largest RSS sum over the process tree (Python driver + JVM,
    which in local mode also runs the tasks), sampled every 0.1 s with psutil;
  - reference: read the same Parquet, CSR X (images x tags, binary), drop images over the cap, C = X^T X,
    the same conditionals / PMI / Jaccard on the upper triangle and the same merge and child candidates,
    written to Parquet; peak memory is the process's ru_maxrss.
Both must find the same number of pairs and the same merge and child candidates.

    .venv/bin/python benchmarks/taxonomy.py [--pairs 10000000] [--tags 20000] [--seed 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

RULES = {"isolated_max_conditional": 0.0, "isolated_min_images": 10, "merge_min_conditional": 0.9,
         "child_min_conditional": 0.95}
MAX_TAGS = 64
TAGS_PER_IMAGE = (np.arange(1, 6), np.array([0.3, 0.25, 0.2, 0.15, 0.1]))
CHUNK_IMAGES = 500_000


def generate(folder: Path, pairs: int, n_tags: int, seed: int) -> tuple[int, int]:
    """Write `pairs` distinct image-tag rows (a fraction of a percent more) (image_key, tag) as Parquet files under `folder`;
    returns (rows, images). Memory stays at one chunk of CHUNK_IMAGES images."""
    rng = np.random.default_rng(seed)
    names = pa.array([f"tag{i:05d}" for i in rng.permutation(n_tags)])  # name order unrelated to frequency
    weight = 1.0 / np.arange(1, n_tags + 1) ** 1.05
    planted = rng.choice(np.arange(50, min(n_tags, 4000)), size=min(300, n_tags // 4), replace=False)
    twin_of = dict(zip(planted[:100].tolist(), planted[100:200].tolist()))  # x -> y: y only ever with x
    child_of = dict(zip(planted[200:].tolist(), planted[:100].tolist()))  # child -> parent (a twin's x)
    weight[planted[100:]] = 0.0  # twins and children never appear on their own
    cumulative = np.cumsum(weight / weight.sum())
    mean_tags = float((TAGS_PER_IMAGE[0] * TAGS_PER_IMAGE[1]).sum())
    rows = images = part = 0
    while rows < pairs:  # rows per image as measured so far (duplicates drop, planted tags add)
        n = min(CHUNK_IMAGES, max(1, int((pairs - rows) / (rows / images if images else mean_tags))))
        k = rng.choice(TAGS_PER_IMAGE[0], size=n, p=TAGS_PER_IMAGE[1])
        image = np.repeat(np.arange(images, images + n), k)
        tag = np.minimum(np.searchsorted(cumulative, rng.random(len(image))), n_tags - 1)
        extra_image, extra_tag = [image], [tag]
        for x, y in twin_of.items():
            hit = image[tag == x]
            extra_image.append(hit)
            extra_tag.append(np.full(len(hit), y))
        for child, parent in child_of.items():  # a third of the parent's images also carry the child
            hit = image[tag == parent]
            hit = hit[rng.random(len(hit)) < 0.3]
            extra_image.append(hit)
            extra_tag.append(np.full(len(hit), child))
        if part == 0:  # crowded images: 100 tags each, over the 64-tag cap
            crowd = np.repeat(np.arange(images, images + 20), 100)
            extra_image.append(crowd)
            extra_tag.append(rng.integers(0, n_tags, len(crowd)))
        key = np.unique(np.concatenate(extra_image).astype(np.int64) * n_tags + np.concatenate(extra_tag))
        table = pa.table({"image_key": pc.cast(pa.array(key // n_tags), pa.string()),
                          "tag": pc.take(names, pa.array(key % n_tags))})
        pq.write_table(table, folder / f"part-{part:05d}.parquet")
        rows, images, part = rows + len(key), images + n, part + 1
    return rows, images


class PeakRss:
    """Largest RSS sum over this process and its descendants, sampled every `every` seconds."""

    def __init__(self, every: float = 0.1):
        import psutil

        self._root, self._every, self.peak, self._stop = psutil.Process(), every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for proc in [self._root, *self._root.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:  # a Python worker that just ended
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self._every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def spark_worker(src: str, out: str, labeled: int, partitions: int) -> None:
    """Runs in its own process (its own JVM); prints one JSON line."""
    from pyspark.sql import functions as F

    from tagmill.config import SparkConfig
    from tagmill.jobs.spark import spark_session
    from tagmill.taxonomy.cooccurrence import cooccurrence, cooccurrence_rules, crowded_images

    with PeakRss() as peak, spark_session(SparkConfig(master="local[2]", log_level="ERROR",
                                                      shuffle_partitions=partitions)) as spark:
        started = time.perf_counter()
        image_tags = spark.read.parquet(src)
        cooccurrence(image_tags, labeled, MAX_TAGS).write.mode("overwrite").parquet(f"{out}/pairs")
        pairs_s = time.perf_counter() - started
        pairs = spark.read.parquet(f"{out}/pairs")
        stats = image_tags.groupBy("tag").agg(F.count("image_key").alias("images"))  # read only by "isolated"
        cooccurrence_rules(pairs, stats, **RULES).write.mode("overwrite").parquet(f"{out}/decisions")
        seconds = time.perf_counter() - started
        crowded = crowded_images(image_tags, MAX_TAGS).count()  # untimed: the summary's count
    print(json.dumps({"seconds": seconds, "pairs_seconds": pairs_s, "peak_rss_mib": peak.peak / 2**20,
                      "crowded": crowded}))


def reference_worker(src: str, out: str, labeled: int) -> None:
    """The same table and candidates with scipy.sparse in this one process; prints one JSON line."""
    import resource

    import scipy.sparse as sp

    started = time.perf_counter()
    table = pq.read_table(src, columns=["image_key", "tag"])
    image = pc.dictionary_encode(table["image_key"].combine_chunks())
    tag = pc.dictionary_encode(table["tag"].combine_chunks())
    del table
    names = tag.dictionary.to_numpy(zero_copy_only=False)
    order = np.argsort(names)  # tag index in name order, so the upper triangle is tag_a < tag_b
    rank = np.empty(len(names), dtype=np.int32)
    rank[order] = np.arange(len(names), dtype=np.int32)
    rows = image.indices.to_numpy()
    cols = rank[tag.indices.to_numpy()]
    x = sp.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(len(image.dictionary), len(names)))
    del rows, cols, image, tag
    x.sum_duplicates()
    x.data[:] = 1
    per_image = np.diff(x.indptr)
    crowded = int((per_image > MAX_TAGS).sum())
    x = x[per_image <= MAX_TAGS]
    n = float(labeled - crowded)
    images = np.asarray(x.sum(axis=0)).ravel().astype(np.float64)
    upper = sp.triu(x.T.tocsr() @ x, k=1).tocoo()
    del x
    a, b = upper.row, upper.col
    ab, na, nb = upper.data.astype(np.float64), images[a], images[b]
    p_a_given_b, p_b_given_a = ab / nb, ab / na
    sorted_names = pa.array(names[order])
    pq.write_table(pa.table({
        "tag_a": pc.take(sorted_names, pa.array(a)), "tag_b": pc.take(sorted_names, pa.array(b)),
        "images_ab": upper.data.astype(np.int64), "images_a": na.astype(np.int64), "images_b": nb.astype(np.int64),
        "p_a_given_b": p_a_given_b, "p_b_given_a": p_b_given_a, "pmi": np.log(ab * n / (na * nb)),
        "jaccard": ab / (na + nb - ab)}), f"{out}/pairs.parquet")
    merge_min, child_min = RULES["merge_min_conditional"], RULES["child_min_conditional"]
    merge = (p_a_given_b >= merge_min) & (p_b_given_a >= merge_min)
    a_smaller = na < nb  # ties: the larger name (b) merges into a
    merge_tag, merge_other = np.where(a_smaller, a, b)[merge], np.where(a_smaller, b, a)[merge]
    a_child = (p_b_given_a >= child_min) & (p_a_given_b < merge_min)
    b_child = (p_a_given_b >= child_min) & (p_b_given_a < merge_min)
    tag_idx = np.concatenate([merge_tag, a[a_child], b[b_child]])
    other_idx = np.concatenate([merge_other, b[a_child], a[b_child]])
    rule = ["cooccurrence_merge"] * int(merge.sum()) + ["implied_by"] * int(a_child.sum() + b_child.sum())
    pq.write_table(pa.table({"tag": pc.take(sorted_names, pa.array(tag_idx)), "rule": pa.array(rule, pa.string()),
                             "other": pc.take(sorted_names, pa.array(other_idx))}), f"{out}/decisions.parquet")
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_kib / 1024, "crowded": crowded,
                      "pairs": int(len(ab))}))


def _worker(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _candidates(path: Path) -> dict[str, set[tuple[str, str]]]:
    table = pq.read_table(path, columns=["tag", "rule", "other"]).to_pylist()
    found: dict[str, set[tuple[str, str]]] = {"cooccurrence_merge": set(), "implied_by": set()}
    for row in table:
        found[row["rule"]].add((row["tag"], row["other"]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000_000)
    parser.add_argument("--tags", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=0, help="spark.sql.shuffle.partitions; 0 fits the machine")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, src, out, labeled, *rest = args.worker
        if kind == "spark":
            spark_worker(src, out, int(labeled), int(rest[0]))
        else:
            reference_worker(src, out, int(labeled))
        return 0
    with tempfile.TemporaryDirectory(prefix="tagmill-bench-taxonomy-") as tmp:
        folder = Path(tmp)
        (folder / "pairs").mkdir()
        started = time.perf_counter()
        rows, images = generate(folder / "pairs", args.pairs, args.tags, args.seed)
        print(f"generated {rows:,} image-tag pairs on {images:,} images over {args.tags:,} tags "
              f"in {time.perf_counter() - started:.1f} s (seed {args.seed}); {os.cpu_count()} cores visible")
        ref = _worker("reference", str(folder / "pairs"), str(folder), str(images))
        spark = _worker("spark", str(folder / "pairs"), str(folder / "spark"), str(images), str(args.partitions))
        spark_pairs = pq.ParquetDataset(folder / "spark" / "pairs").read(columns=["tag_a"]).num_rows
        mine, theirs = _candidates(folder / "spark" / "decisions"), _candidates(folder / "decisions.parquet")
    print(f"{'engine':<34}{'seconds':>9}{'peak_rss_MiB':>14}{'pairs':>13}{'merges':>8}{'children':>10}{'crowded':>9}")
    print(f"{'tagmill (Spark local[2])':<34}{spark['seconds']:>9.1f}{spark['peak_rss_mib']:>14.0f}"
          f"{spark_pairs:>13,}{len(mine['cooccurrence_merge']):>8,}{len(mine['implied_by']):>10,}"
          f"{spark['crowded']:>9}")
    print(f"{'reference (scipy.sparse X^T X)':<34}{ref['seconds']:>9.1f}{ref['peak_rss_mib']:>14.0f}"
          f"{ref['pairs']:>13,}{len(theirs['cooccurrence_merge']):>8,}{len(theirs['implied_by']):>10,}"
          f"{ref['crowded']:>9}")
    print(f"ratio tagmill / reference: {spark['seconds'] / ref['seconds']:.1f}x time "
          f"(co-occurrence table alone {spark['pairs_seconds']:.1f} s), "
          f"{spark['peak_rss_mib'] / ref['peak_rss_mib']:.1f}x peak memory")
    same = spark_pairs == ref["pairs"] and mine == theirs and spark["crowded"] == ref["crowded"]
    print(f"same pairs, merge and child candidates: {same}")
    print("(Spark's peak is the Python driver plus the JVM, which in local mode also runs the tasks; its heap is "
          "sized to a third of physical memory and the JVM keeps what it takes)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
