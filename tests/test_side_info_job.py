"""The side-info stage on the small generated marketplace: title tokens for every product, word vectors
saved with their checksums, query clusters with examples, and query clusters as a label space."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagmill import stages
from tagmill.jobs import io, mine_logs, side_info
from tagmill.word_vector_files import load_word_vectors

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_word_vectors_are_written_with_their_checksums(side_info_market):
    cfg, summary = side_info_market
    folder = Path(stages.word_vectors_path(cfg.outputs.root, cfg.run.run_date()))
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert names == ["vectors.npy", "vocabulary.txt", "word_vectors.json"]
    wv = load_word_vectors(folder)  # verifies each file's sha256
    assert wv.seed == cfg.run.seed and wv.dim == cfg.side_info.vector_dim
    assert summary["word_vectors"]["words"] == len(wv.vocabulary) - 2 > 50
    # byte-identical vectors for a seed are checked on the library (tests/test_titles_and_word_vectors.py)


def test_every_product_title_is_tokenized_and_queries_are_clustered(spark, side_info_market):
    cfg, summary = side_info_market
    run_date = cfg.run.run_date()
    tokens = io.read_table(spark, cfg.outputs.root, side_info.STAGE, "title_tokens", run_date)
    products = io.read_table(spark, cfg.outputs.root, mine_logs.STAGE, "images", run_date).select("product_id")
    assert tokens.count() == products.distinct().count() == summary["titles"]
    clusters = io.read_table(spark, cfg.outputs.root, side_info.STAGE, "query_clusters", run_date).toPandas()
    assert len(clusters) == summary["queries"] and clusters["query"].is_unique
    clustered = clusters[clusters["cluster"] >= 0]
    assert clustered["cluster"].nunique() == summary["query_clusters"]["k"] == 8
    assert clustered.groupby("cluster")["example"].any().all()  # every cluster shows examples
    assert clustered["similarity"].between(-1.0001, 1.0001).all()


def test_query_clusters_as_a_label_space(spark):
    from tagmill.dataset.assemble import LABEL_COLUMNS, map_to_query_clusters

    row = {c: None for c in LABEL_COLUMNS}
    schema = ("image_key string, product_id string, label string, confidence double, source string, tier string, "
              "clicks long, contacts long, in_conversations long, sessions long, teacher string")
    labels = spark.createDataFrame(
        [{**row, "image_key": "i1", "label": "sofa", "source": "search_log", "confidence": 0.9},
         {**row, "image_key": "i2", "label": "couch", "source": "search_log", "confidence": 0.8},
         {**row, "image_key": "i3", "label": "zzz", "source": "search_log", "confidence": 0.7},
         {**row, "image_key": "i4", "label": "sofa", "source": "teacher", "confidence": 0.6}], schema)
    clusters = spark.createDataFrame([("sofa", 3), ("couch", 3), ("zzz", -1)], "query string, cluster int")
    mapped = sorted((r.image_key, r.label) for r in map_to_query_clusters(labels, clusters).collect())
    assert mapped == [("i1", "query cluster 3"), ("i2", "query cluster 3")]
