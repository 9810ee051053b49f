"""Query clusters (MSURU 5.5): K-means over query embeddings, cluster ids as an alternative label space.

Many queries name one product type ("sofa", "couch", "3 seat sofa", "沙发"); clustering their embeddings gives
a coarser label set than the queries themselves. An embedding is the mean of the query's word vectors
(`query_embeddings`) or comes from a user-provided table (`read_embedding_table`, `lookup_embeddings`).
Clustering is spherical K-means with faiss on L2-normalised vectors (cosine similarity), seeded, so a seed
gives the same clusters on any number of threads.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tagmill.word_vector_files import WordVectors


def query_embeddings(queries: Sequence[list[str]], wv: WordVectors) -> tuple[np.ndarray, np.ndarray]:
    """The mean word vector of each query.

    Inputs: `queries`, token lists (`normalize_query(query).split()`); `wv`, the build's word vectors.
    Output: (embeddings float32 (N, D), known bool (N,)); a query with no token in the vocabulary (or no token
    at all) has a zero row and known False; `cluster_queries` gives such rows the label -1. Unknown tokens are
    left out of the mean, not counted as zeros.
    """
    index = wv.index()
    embeddings = np.zeros((len(queries), wv.dim), dtype=np.float32)
    known = np.zeros(len(queries), dtype=bool)
    for row, tokens in enumerate(queries):
        if isinstance(tokens, str):
            raise TypeError(f"query_embeddings: query {row} is the str {tokens!r}; pass token lists "
                            f"(normalize_query(query).split())")
        ids = [index[token] for token in tokens if index.get(token, 1) > 1]
        if ids:
            embeddings[row] = wv.vectors[ids].mean(axis=0, dtype=np.float64)
            known[row] = True
    return embeddings, known


def read_embedding_table(path: str | Path) -> dict[str, np.ndarray]:
    """A user-provided query embedding table: query -> float32 vector.

    Formats, by file name: ".csv" (comma) or ".tsv" (tab), one row per query, "query,v1,v2,...", csv quoting
    for queries holding the delimiter, an optional header row whose first field is "query"; or ".npy" with a
    ".txt" beside it (same stem), a float (N, D) array and N queries one per line (either file may be given).
    Queries are used as written: normalize them with `normalize_query` first if the queries to look up are
    normalized. Raises `FileNotFoundError` or `ValueError` naming the file and the 1-based row (or line) of the
    first problem: a row of another width, a value that is not a finite number, an empty or repeated query,
    an empty table.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, "," if suffix == ".csv" else "\t")
    if suffix in (".npy", ".txt"):
        return _read_npy_pair(path.with_suffix(".npy"), path.with_suffix(".txt"))
    raise ValueError(f"{path}: unknown embedding table format {path.suffix!r}; expected .csv, .tsv or .npy with "
                     f"a .txt of queries beside it")


def lookup_embeddings(queries: Sequence[str], table: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`table`'s vector of each query, as `query_embeddings` returns them: (float32 (N, D), known bool (N,)),
    a zero row and known False for a query the table lacks. `table` must not be empty."""
    if not table:
        raise ValueError("lookup_embeddings: the embedding table is empty")
    dim = len(next(iter(table.values())))
    embeddings = np.zeros((len(queries), dim), dtype=np.float32)
    known = np.zeros(len(queries), dtype=bool)
    for row, query in enumerate(queries):
        vector = table.get(query)
        if vector is not None:
            embeddings[row] = vector
            known[row] = bool(np.any(vector))
    return embeddings, known


def cluster_queries(embeddings: np.ndarray, k: int, seed: int, niter: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Spherical K-means (faiss) of the L2-normalised rows of `embeddings`.

    Inputs: `embeddings`, float (N, D) (from `query_embeddings` or `lookup_embeddings`); `k`, clusters, at most
    the number of non-zero rows; `seed`, faiss's seed (one initialisation, nredo=1); `niter`, iterations.
    Output: (labels int64 (N,), the cluster of each row, -1 for a zero row; centroids float32 (k, D), unit
    length). The same input and seed give the same output on any number of threads.
    """
    import faiss

    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[1] < 1:
        raise ValueError(f"cluster_queries: expected embeddings of shape (N, D), found {embeddings.shape}")
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("cluster_queries: the embeddings hold NaN or infinite values")
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1)
    usable = norms > 0
    n_usable = int(usable.sum())
    if not isinstance(k, int) or not 1 <= k <= n_usable:
        raise ValueError(f"cluster_queries: k must be an integer from 1 to {n_usable} (the non-zero rows), got "
                         f"{k!r}; lower k or pass more queries")
    points = np.ascontiguousarray(x[usable] / norms[usable, None])
    # min_points_per_centroid=1: faiss would warn below 39 points per centroid, a normal size for query sets.
    kmeans = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, nredo=1, spherical=True, verbose=False,
                          min_points_per_centroid=1)
    kmeans.train(points)
    _, nearest = kmeans.index.search(points, 1)
    labels = np.full(len(x), -1, dtype=np.int64)
    labels[usable] = nearest[:, 0]
    return labels, np.asarray(kmeans.centroids, dtype=np.float32).copy()


def centroid_cosine(labels: np.ndarray, embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """float (N,): each row's cosine to its cluster's centroid (`cluster_queries`' unit centroids); -inf for
    a row without a cluster (label -1) or with a zero embedding."""
    labels = np.asarray(labels)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(embeddings, axis=1)
    cosine = np.einsum("nd,nd->n", embeddings, np.asarray(centroids, dtype=np.float32)[np.maximum(labels, 0)])
    return np.where((norms > 0) & (labels >= 0), cosine / np.where(norms > 0, norms, 1), -np.inf)


def cluster_examples(queries: Sequence[str], labels: np.ndarray, cosine: np.ndarray,
                     per_cluster: int = 5) -> dict[int, list[str]]:
    """For the report: the `per_cluster` queries of each cluster nearest its centroid (highest cosine; ties by
    query text). Inputs line up row by row: `queries` as given to `cluster_queries`, its `labels`, and each
    row's `centroid_cosine`. Output: cluster id -> queries, for every cluster with at least one query; -1 is
    left out.
    """
    labels = np.asarray(labels)
    if not len(queries) == len(labels) == len(cosine):
        raise ValueError(f"cluster_examples: {len(queries)} queries, {len(labels)} labels and {len(cosine)} "
                         f"cosines; pass them row for row")
    members: dict[int, list[tuple[float, str]]] = {}
    for query, label, score in zip(queries, labels.tolist(), np.asarray(cosine).tolist()):
        if label >= 0:
            members.setdefault(label, []).append((-score, query))
    return {label: [query for _, query in sorted(rows)[:per_cluster]] for label, rows in sorted(members.items())}


def _read_delimited(path: Path, delimiter: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such embedding table")
    table: dict[str, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8", newline="") as f:
        for row_number, row in enumerate(csv.reader(f, delimiter=delimiter), start=1):
            if not row:
                continue
            if row_number == 1 and row[0].strip().lower() == "query" and not _all_numbers(row[1:]):
                continue
            query, values = row[0], row[1:]
            where = f"{path}: row {row_number}"
            if not query:
                raise ValueError(f"{where}: empty query; each row is query{delimiter}v1{delimiter}v2...")
            if dim is None:
                dim = len(values)
                if dim == 0:
                    raise ValueError(f"{where}: no values after the query; each row is query{delimiter}v1...")
            if len(values) != dim:
                raise ValueError(f"{where}: {len(values)} values, expected {dim} as in the first row")
            table[_new_query(table, query, where)] = _vector(values, where)
    if not table:
        raise ValueError(f"{path}: the embedding table has no rows")
    return table


def _read_npy_pair(npy: Path, txt: Path) -> dict[str, np.ndarray]:
    for path in (npy, txt):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; an .npy embedding table needs its queries in {txt.name} "
                                    f"(one per line) beside {npy.name}")
    try:
        matrix = np.load(npy, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{npy}: not a numeric .npy array ({error})") from error
    if matrix.ndim != 2 or matrix.shape[1] < 1 or matrix.dtype.kind not in "fiu":
        raise ValueError(f"{npy}: expected a numeric (N, D) array, found {matrix.dtype} {matrix.shape}")
    queries = txt.read_bytes().decode("utf-8").split("\n")
    if queries and queries[-1] == "":
        queries.pop()
    if len(queries) != len(matrix):
        raise ValueError(f"{txt}: {len(queries)} queries but {npy} has {len(matrix)} rows; one query per row")
    if not queries:
        raise ValueError(f"{npy}: the embedding table has no rows")
    bad = np.flatnonzero(~np.all(np.isfinite(matrix), axis=1))
    if len(bad):
        raise ValueError(f"{npy}: row {bad[0] + 1} ({queries[bad[0]]!r}) holds NaN or infinite values")
    table: dict[str, np.ndarray] = {}
    vectors = matrix.astype(np.float32)
    for line, (query, vector) in enumerate(zip(queries, vectors), start=1):
        where = f"{txt}: line {line}"
        if not query.strip():
            raise ValueError(f"{where}: empty query")
        table[_new_query(table, query.rstrip("\r"), where)] = vector
    return table


def _new_query(table: Mapping[str, np.ndarray], query: str, where: str) -> str:
    if query in table:
        raise ValueError(f"{where}: the query {query!r} appears a second time; keep one vector per query")
    return query


def _vector(values: list[str], where: str) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float32)
    for column, value in enumerate(values, start=2):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{where}, column {column}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{where}, column {column}: {value!r} is not a finite number")
        out[column - 2] = number
    return out


def _all_numbers(values: list[str]) -> bool:
    try:
        [float(value) for value in values]
    except ValueError:
        return False
    return True
