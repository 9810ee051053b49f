"""`tagmill side-info`: titles and queries -> title tokens, word vectors and query clusters (SICoT 3.2,
MSURU 5.5).

Read, call the library, write. Titles are tokenized by the executors (labeling.titles: the same function as
query normalization, plus noise phrases). Word2Vec trains in the driver on a corpus streamed to a local
file (never collected), reproducibly for the run's seed; its vectors go to <root>/side-info/word_vectors/
and, through the shards stage, into the dataset. Query embeddings (mean word vectors, or a table the user
passes) are clustered with faiss K-means: each query's cluster is an alternative label space, and the
clusters' nearest queries are the examples the taxonomy report shows.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tagmill import stages
from tagmill.config import Config
from tagmill.jobs import io
from tagmill.jobs.frame import StageRun
from tagmill.labeling.query_clusters import (centroid_cosine, cluster_examples, cluster_queries, lookup_embeddings,
                                              query_embeddings, read_embedding_table)
from tagmill.labeling.titles import DEFAULT_NOISE_PHRASES, title_tokens
from tagmill.labeling.word_vectors import SentenceFile, train_word_vectors
from tagmill.word_vector_files import word_vector_files

STAGE = stages.SIDE_INFO
EXAMPLES_PER_CLUSTER = 5
log = logging.getLogger("tagmill.side_info")


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run side-info for cfg.run's date; returns the run summary (also written as summary.json)."""
    stage = StageRun(spark, cfg, STAGE)
    sc, run_date, root = cfg.side_info, stage.run_date, stage.root
    titles = stage.read("images", stages.MINE_LOGS).select("product_id", "title").distinct()
    noise = sc.noise_phrases or DEFAULT_NOISE_PHRASES
    tokens = stage.write(tokenize_titles(titles, noise, frozenset(cfg.text.stopwords), cfg.text.wordnet_dir),
                         "title_tokens")
    # distinct queries grow with the label space, not with the events: collected once, in a fixed order, for
    # the corpus and for K-means
    queries = (stage.read("query_forms", stages.MINE_LOGS)
               .groupBy("query_norm").agg(F.sum("events").alias("events"))
               .where(F.col("query_norm").isNotNull() & (F.col("query_norm") != ""))
               .orderBy("query_norm").collect())

    with tempfile.TemporaryDirectory(prefix="tagmill-w2v-") as tmp:
        corpus = os.path.join(tmp, "corpus.tsv")
        sentences = _write_corpus(corpus, _sentences(tokens, queries))
        wv = train_word_vectors(SentenceFile(corpus), dim=sc.vector_dim, window=sc.window,
                                min_count=sc.min_count, epochs=sc.epochs, seed=cfg.run.seed)
    target = stages.word_vectors_path(root, run_date)
    io.delete(spark, target)
    for name, data in word_vector_files(wv).items():
        io.write_bytes(spark, f"{target}/{name}", data)
    log.info("side-info %s: word vectors of %d words (dim %d) from %d sentences", run_date,
             len(wv.vocabulary) - 2, wv.dim, sentences)

    clusters, labels = _cluster_queries(spark, cfg, queries, wv)
    stage.write(clusters, "query_clusters")
    return stage.finish({
        "titles": tokens.count(),
        "queries": len(queries),
        "sentences": sentences,
        "word_vectors": {"words": len(wv.vocabulary) - 2, "dim": wv.dim, "seed": wv.seed,
                         "path": io.committed_path(target)},
        "query_clusters": {"k": len(np.unique(labels[labels >= 0])), "unclustered": int((labels < 0).sum()),
                           "embeddings": "table" if sc.query_embeddings else "mean_word_vectors"},
    })


def tokenize_titles(titles: DataFrame, noise: tuple[str, ...], stopwords: frozenset[str],
                    wordnet_dir: str) -> DataFrame:
    """product_id, title -> product_id, tokens (array<string>), tokenized by the executors."""

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            yield pd.DataFrame({"product_id": frame["product_id"],
                                "tokens": [title_tokens(t or "", noise, stopwords, wordnet_dir)
                                           for t in frame["title"]]})

    return titles.mapInPandas(run, "product_id string, tokens array<string>")


def _sentences(tokens: DataFrame, queries: list) -> Iterator[list[str]]:
    """Title token lists, streamed partition by partition in product order, then the query rows' tokens in
    their order (the vectors depend on the order)."""
    for row in tokens.orderBy("product_id").toLocalIterator():
        if row["tokens"]:
            yield list(row["tokens"])
    for row in queries:
        yield row["query_norm"].split()


def _write_corpus(path: str, sentences: Iterator[list[str]]) -> int:
    """One sentence per line, tokens tab-separated (labeling.word_vectors.SentenceFile). Returns the count."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for sentence in sentences:
            f.write("\t".join(t for t in sentence if "\t" not in t and "\n" not in t) + "\n")
            count += 1
    return count


def _cluster_queries(spark: SparkSession, cfg: Config, rows: list, wv) -> tuple[DataFrame, np.ndarray]:
    """(query, events, cluster (-1: no embedding, or clustering off), similarity to its centroid, example (one
    of the cluster's nearest queries), and the cluster of each row as an array). One row per distinct
    normalized query (rows: query_norm, events)."""
    sc = cfg.side_info
    names = [r["query_norm"] for r in rows]
    if sc.query_embeddings:
        embeddings, known = lookup_embeddings(names, read_embedding_table(sc.query_embeddings))
    else:
        embeddings, known = query_embeddings([n.split() for n in names], wv)
    labels = np.full(len(names), -1, np.int64)
    similarity = np.zeros(len(names), np.float32)
    example = np.zeros(len(names), bool)
    k = min(sc.query_clusters, int(known.sum()) // 2)
    if k >= 1:
        labels, centroids = cluster_queries(embeddings, k, cfg.run.seed)
        cosine = centroid_cosine(labels, embeddings, centroids)
        similarity = np.where(np.isfinite(cosine), cosine, 0.0).astype(np.float32)
        shown = cluster_examples(names, labels, cosine, EXAMPLES_PER_CLUSTER)
        example = np.isin(np.array(names, object), [q for qs in shown.values() for q in qs])
    data = [(n, int(r["events"]), int(c), float(s), bool(e))
            for n, r, c, s, e in zip(names, rows, labels, similarity, example)]
    return (spark.createDataFrame(data, "query string, events long, cluster int, similarity float, example boolean"),
            labels)
