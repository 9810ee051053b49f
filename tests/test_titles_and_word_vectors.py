"""Title tokens, word vectors and query clusters: exact outputs on known inputs, reproducibility for a seed."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tagmill.config import TextConfig
from tagmill.demo.catalog import NOISE_EN, NOISE_ZH, make_title
from tagmill.demo.vocabulary import build_leaves
from tagmill.labeling.query_clusters import (centroid_cosine, cluster_examples, cluster_queries,
                                             lookup_embeddings, query_embeddings, read_embedding_table)
from tagmill.labeling.text import normalize_query
from tagmill.labeling.titles import DEFAULT_NOISE_PHRASES, remove_noise_phrases, title_tokens
from tagmill.labeling.word_vectors import train_word_vectors
from tagmill.word_vector_files import WordVectors, load_word_vectors, save_word_vectors, token_ids

STOPWORDS = frozenset(TextConfig().stopwords)

needs_wordnet = pytest.mark.skipif(
    not os.path.isdir("/usr/share/wordnet"),
    reason="/usr/share/wordnet is absent: apt-get install wordnet-base wordnet-sense-index")


def demo_titles(n: int, seed: int = 0) -> list[str]:
    leaves = build_leaves()
    rnd = random.Random(seed)
    return [make_title(rnd.choice(leaves), rnd, rnd.random() < 0.3) for _ in range(n)]


@pytest.fixture(scope="module")
def title_sentences():
    return [title_tokens(title, stopwords=STOPWORDS) for title in demo_titles(3000)]


# ---- titles ---------------------------------------------------------------------------------------------------

@needs_wordnet
@pytest.mark.parametrize(("title", "expected"), [
    ("Midea Modern Silver Electric Fan - free shipping", ["midea", "modern", "silver", "electric", "fan"]),
    ("全新 沙发 包邮", ["沙发"]),
    ("Sofas", ["sofa"]),
    ("FREE SHIPPING Red Robot OBO", ["red", "robot"]),
    ("Ｆｒｅｅ-Ｓｈｉｐｐｉｎｇ!! 2 Sofas", ["2", "sofa"]),
    ("包邮美的银色电风扇急售", ["美的", "银色", "电风扇"]),
    ("沙发new arrival", ["沙发"]),
    ("Men's Shoes, LIKE NEW!!!", ["man", "shoe"]),
    ("Xiaomi 红色 Mobile Phones 1.5L", ["xiaomi", "红色", "mobile", "phone", "1", "5l"]),
    ("free shipping", []),
])
def test_title_tokens_exact(title, expected):
    assert title_tokens(title) == expected


@needs_wordnet
def test_noise_phrases_only_match_whole_words_and_are_configurable():
    assert title_tokens("Robot oboe") == ["robot", "oboe"]
    assert title_tokens("Sofa - free shipping", noise_phrases=()) == ["sofa", "free", "shipping"]
    assert title_tokens("Sofa - call me", noise_phrases=("Call Me",)) == ["sofa"]
    assert remove_noise_phrases("Midea Fan - FREE SHIPPING") == "midea fan -  "


@needs_wordnet
def test_title_words_and_query_words_get_the_same_token():
    assert title_tokens("IKEA Grey Sofas - new arrival") == normalize_query("ikea grey sofa").split()
    assert title_tokens("Men's Jeans 包邮") == normalize_query("men jeans").split()
    for title in demo_titles(200, seed=3):
        assert title_tokens(title, noise_phrases=(), stopwords=STOPWORDS) == \
            normalize_query(title, STOPWORDS).split()


def test_default_noise_phrases_cover_the_demo_generator():
    words = {phrase.casefold() for phrase in DEFAULT_NOISE_PHRASES}
    missing = [phrase for phrase in NOISE_EN + NOISE_ZH if phrase.casefold() not in words and phrase != "!!!"]
    assert missing == []


@needs_wordnet
def test_demo_titles_lose_their_noise_phrases(title_sentences):
    tokens = {token for sentence in title_sentences for token in sentence}
    assert tokens.isdisjoint({"包邮", "急售", "转让", "自提", "obo", "shipping", "arrival", "negotiable", "pickup"})


# ---- word vectors --------------------------------------------------------------------------------------------

def _digest(wv: WordVectors) -> str:
    return hashlib.sha256("\n".join(wv.vocabulary).encode() + wv.vectors.tobytes()).hexdigest()


@needs_wordnet
def test_word_vectors_are_reproducible_for_a_seed(title_sentences):
    first = train_word_vectors(title_sentences, dim=16, epochs=2, seed=7)
    second = train_word_vectors(title_sentences, dim=16, epochs=2, seed=7)
    other = train_word_vectors(title_sentences, dim=16, epochs=2, seed=8)
    assert first.vectors.dtype == np.float32
    assert first.vocabulary == second.vocabulary == other.vocabulary
    assert first.vectors.tobytes() == second.vectors.tobytes()
    assert first.vectors.tobytes() != other.vectors.tobytes()
    assert first.vocabulary[:2] == ["<pad>", "<unk>"]
    assert not first.vectors[:2].any()
    assert np.all(np.linalg.norm(first.vectors[2:], axis=1) > 0)


def test_word_vectors_do_not_depend_on_the_python_hash_seed():
    script = ("import hashlib\n"
              "from tagmill.labeling.word_vectors import train_word_vectors\n"
              "s = [[f'w{(i * 7 + j) % 23}' for j in range(6)] for i in range(300)]\n"
              "wv = train_word_vectors(s, dim=8, epochs=2, seed=3)\n"
              "print(hashlib.sha256('|'.join(wv.vocabulary).encode() + wv.vectors.tobytes()).hexdigest())\n")
    sentences = [[f"w{(i * 7 + j) % 23}" for j in range(6)] for i in range(300)]
    wv = train_word_vectors(sentences, dim=8, epochs=2, seed=3)
    here = hashlib.sha256("|".join(wv.vocabulary).encode() + wv.vectors.tobytes()).hexdigest()
    hash_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": hash_seed},
                            capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == here


def test_vocabulary_is_sorted_by_count_then_word_and_min_count_applies():
    sentences = [["b", "a", "c"], ["a", "b", "d"], ["c", "a", "b"], ["e"]]
    wv = train_word_vectors(sentences, dim=4, min_count=2, epochs=1, seed=0)
    assert wv.vocabulary == ["<pad>", "<unk>", "a", "b", "c"]
    assert wv.vectors.shape == (5, 4)


def test_train_word_vectors_refuses_bad_input():
    with pytest.raises(ValueError, match="sentence 1 holds the token '<unk>'"):
        train_word_vectors([["a"], ["<unk>"]])
    with pytest.raises(ValueError, match="sentence 0 is a str"):
        train_word_vectors(["red sofa"])
    with pytest.raises(ValueError, match="no word occurs 5 times"):
        train_word_vectors([["a", "b"]], min_count=5)


def test_token_ids():
    index = {"<pad>": 0, "<unk>": 1, "sofa": 2, "red": 3}
    assert token_ids(["red", "sofa", "zzz"], index, 8) == [3, 2, 1]
    assert token_ids(["red", "sofa", "zzz"], index, 2) == [3, 2]
    assert token_ids([], index, 4) == []
    with pytest.raises(ValueError, match="max_len"):
        token_ids(["red"], index, -1)


def _small_vectors(seed: int = 0) -> WordVectors:
    sentences = [["red", "sofa", "沙发"], ["blue", "sofa"], ["red", "phone"], ["phone", "case", "手机"]] * 5
    return train_word_vectors(sentences, dim=8, epochs=2, seed=seed)


def test_save_and_load_round_trip_byte_identical(tmp_path):
    wv = _small_vectors()
    paths = save_word_vectors(wv, tmp_path / "a")
    assert [Path(p).name for p in paths] == ["vocabulary.txt", "vectors.npy", "word_vectors.json"]
    loaded = load_word_vectors(tmp_path / "a")
    assert loaded.vocabulary == wv.vocabulary
    assert loaded.vectors.tobytes() == wv.vectors.tobytes()
    assert (loaded.seed, loaded.dim, loaded.min_count) == (wv.seed, wv.dim, wv.min_count)
    save_word_vectors(loaded, tmp_path / "b")
    save_word_vectors(_small_vectors(), tmp_path / "c")
    for name in ("vocabulary.txt", "vectors.npy", "word_vectors.json"):
        first = (tmp_path / "a" / name).read_bytes()
        assert (tmp_path / "b" / name).read_bytes() == first
        assert (tmp_path / "c" / name).read_bytes() == first
    assert (tmp_path / "a" / "vocabulary.txt").read_text(encoding="utf-8").split("\n")[:2] == ["<pad>", "<unk>"]


def test_load_names_the_changed_or_missing_file(tmp_path):
    save_word_vectors(_small_vectors(), tmp_path)
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_bytes(vocabulary.read_bytes().replace(b"sofa", b"sofx"))
    with pytest.raises(ValueError, match="vocabulary.txt: sha256 is"):
        load_word_vectors(tmp_path)
    save_word_vectors(_small_vectors(), tmp_path)
    (tmp_path / "vectors.npy").unlink()
    with pytest.raises(FileNotFoundError, match="vectors.npy: missing"):
        load_word_vectors(tmp_path)


# ---- query embeddings and clusters ---------------------------------------------------------------------------

def test_query_embeddings_are_the_mean_of_known_word_vectors():
    vectors = np.array([[0, 0], [0, 0], [1, 0], [0, 3], [2, 2]], dtype=np.float32)
    wv = WordVectors(["<pad>", "<unk>", "red", "sofa", "phone"], vectors, seed=0)
    embeddings, known = query_embeddings([["red", "sofa"], ["red", "zzz", "phone"], ["zzz"], []], wv)
    assert embeddings.dtype == np.float32
    np.testing.assert_array_equal(embeddings, [[0.5, 1.5], [1.5, 1.0], [0, 0], [0, 0]])
    assert known.tolist() == [True, True, False, False]


def _two_groups(n: int = 40):
    rng = np.random.default_rng(0)
    furniture = np.array([1.0, 0.1, 0.0, 0.0]) + rng.normal(0, 0.05, (n, 4))
    phones = np.array([0.0, 0.0, 1.0, 0.2]) + rng.normal(0, 0.05, (n, 4))
    queries = [f"sofa {i}" for i in range(n)] + [f"phone {i}" for i in range(n)]
    order = rng.permutation(2 * n)
    return [queries[i] for i in order], np.vstack([furniture, phones])[order].astype(np.float32)


def test_kmeans_separates_two_groups_and_is_deterministic_for_a_seed():
    import faiss

    queries, embeddings = _two_groups()
    embeddings[5] = 0  # a query without known words
    labels, centroids = cluster_queries(embeddings, k=2, seed=1)
    assert labels[5] == -1
    groups = {query.split()[0]: set() for query in queries}
    for i, (query, label) in enumerate(zip(queries, labels)):
        if i != 5:
            groups[query.split()[0]].add(int(label))
    assert len(groups["sofa"]) == len(groups["phone"]) == 1 and groups["sofa"] != groups["phone"]
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)

    threads = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(1)
        labels_1, centroids_1 = cluster_queries(embeddings, k=2, seed=1)
    finally:
        faiss.omp_set_num_threads(threads)
    labels_2, centroids_2 = cluster_queries(embeddings, k=2, seed=1)
    assert labels_1.tolist() == labels_2.tolist() == labels.tolist()
    assert centroids_1.tobytes() == centroids_2.tobytes() == centroids.tobytes()

    examples = cluster_examples(queries, labels, centroid_cosine(labels, embeddings, centroids), per_cluster=3)
    assert sorted(examples) == [0, 1]
    for label, members in examples.items():
        assert len(members) == 3
        assert {query.split()[0] for query in members} == ({"sofa"} if label in groups["sofa"] else {"phone"})


def test_cluster_queries_refuses_too_large_k():
    with pytest.raises(ValueError, match="k must be an integer from 1 to 2"):
        cluster_queries(np.array([[1, 0], [0, 1], [0, 0]], dtype=np.float32), k=3, seed=0)


def test_embedding_table_csv_tsv_and_npy(tmp_path):
    csv_path = tmp_path / "table.csv"
    csv_path.write_text('query,v1,v2\nsofa,1,0\n"sofa, red",0.5,0.5\n', encoding="utf-8")
    table = read_embedding_table(csv_path)
    assert sorted(table) == ["sofa", "sofa, red"]
    np.testing.assert_array_equal(table["sofa, red"], np.array([0.5, 0.5], dtype=np.float32))
    tsv_path = tmp_path / "table.tsv"
    tsv_path.write_text("沙发\t1\t2\n手机\t3\t4\n", encoding="utf-8")
    assert read_embedding_table(tsv_path)["手机"].tolist() == [3.0, 4.0]
    np.save(tmp_path / "emb.npy", np.array([[1, 2], [3, 4]], dtype=np.float64))
    (tmp_path / "emb.txt").write_text("sofa\nphone\n", encoding="utf-8")
    table = read_embedding_table(tmp_path / "emb.npy")
    assert table["phone"].dtype == np.float32 and table["phone"].tolist() == [3.0, 4.0]
    embeddings, known = lookup_embeddings(["phone", "tv"], table)
    assert embeddings.tolist() == [[3.0, 4.0], [0.0, 0.0]] and known.tolist() == [True, False]


@pytest.mark.parametrize(("text", "message"), [
    ("sofa,1,0\nphone,1\n", r"table.csv: row 2: 1 values, expected 2"),
    ("sofa,1,0\nphone,1,x\n", r"table.csv: row 2, column 3: 'x' is not a number"),
    ("sofa,1,0\nphone,1,nan\n", r"table.csv: row 2, column 3: 'nan' is not a finite number"),
    ("sofa,1,0\nsofa,1,1\n", r"table.csv: row 2: the query 'sofa' appears a second time"),
    ("query,v1\n", r"table.csv: the embedding table has no rows"),
])
def test_embedding_table_errors_name_file_and_row(tmp_path, text, message):
    path = tmp_path / "table.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_embedding_table(path)


def test_npy_embedding_table_errors(tmp_path):
    np.save(tmp_path / "emb.npy", np.array([[1, 2], [3, np.inf]]))
    with pytest.raises(FileNotFoundError, match="emb.txt: missing"):
        read_embedding_table(tmp_path / "emb.npy")
    (tmp_path / "emb.txt").write_text("sofa\n", encoding="utf-8")
    with pytest.raises(ValueError, match="emb.txt: 1 queries but .*emb.npy has 2 rows"):
        read_embedding_table(tmp_path / "emb.npy")
    (tmp_path / "emb.txt").write_text("sofa\nphone\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"emb.npy: row 2 \('phone'\) holds NaN or infinite values"):
        read_embedding_table(tmp_path / "emb.txt")
    with pytest.raises(ValueError, match="unknown embedding table format"):
        read_embedding_table(tmp_path / "emb.parquet")
