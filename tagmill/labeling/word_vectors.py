"""Word vectors of titles and queries: gensim Word2Vec, reproducible for a seed, saved with the dataset version
(the files and their format: tagmill.word_vector_files).

Reproducibility: gensim 4 draws the initial vectors from numpy generators seeded with `seed` (it no longer hashes
words with Python's salted `hash`), and with one worker thread the training order is fixed, so equal sentences
and parameters give byte-identical vectors under any PYTHONHASHSEED. A stable `hashfxn` is passed anyway, so
older code paths that still hash (`seeded_vector`) do not depend on the salt either.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from tagmill.word_vector_files import PAD, UNK, WordVectors


def train_word_vectors(sentences: Iterable[list[str]], dim: int = 64, window: int = 5, min_count: int = 2,
                       epochs: int = 5, seed: int = 0) -> WordVectors:
    """Train Word2Vec on token lists (gensim defaults otherwise: CBOW, 5 negative samples, downsampling 1e-3).

    Inputs: `sentences`, token lists (`title_tokens` of titles, `normalize_query(...).split()` of queries):
    a list, or a restartable iterable (an object whose every `iter()` starts over, e.g. `SentenceFile`) so
    a large corpus streams from disk (gensim passes over it 1 + `epochs` times); `dim`, vector size; `window`, context
    words each side; `min_count`, fewer occurrences than this and a word is left out (its id is 1, "<unk>");
    `epochs`, passes; `seed`, the random seed.
    Output: `WordVectors`, byte-identical for equal sentences (in the same order) and parameters.
    Raises `ValueError` when a token is "<pad>"/"<unk>" or holds a line break (the vocabulary file is one token per
    line), when a sentence is not a list of str, or when no word reaches `min_count`.
    """
    from gensim.models import Word2Vec

    for name, value, low in (("dim", dim, 1), ("window", window, 1), ("min_count", min_count, 1),
                             ("epochs", epochs, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"train_word_vectors: {name} must be an integer >= {low}, got {value!r}")
    if iter(sentences) is sentences:  # a one-pass iterator: keep it, gensim passes 1 + epochs times
        sentences = list(sentences)
    corpus = _Checked(sentences)
    model = Word2Vec(vector_size=dim, window=window, min_count=min_count, epochs=epochs, seed=seed, workers=1,
                     hashfxn=_stable_hash)
    model.build_vocab(corpus)
    if model.corpus_total_words == 0:
        raise ValueError("train_word_vectors: no tokens in the sentences; pass title and query token lists")
    if len(model.wv) == 0:
        raise ValueError(f"train_word_vectors: no word occurs {min_count} times or more in {model.corpus_count} "
                         f"sentences; lower min_count or pass more sentences")
    model.train(corpus, total_examples=model.corpus_count, epochs=model.epochs)
    words = sorted(model.wv.index_to_key, key=lambda word: (-model.wv.get_vecattr(word, "count"), word))
    vectors = np.zeros((len(words) + 2, dim), dtype=np.float32)
    vectors[2:] = model.wv.vectors[[model.wv.key_to_index[word] for word in words]]
    return WordVectors([PAD, UNK, *words], vectors, seed, window, min_count, epochs)


class SentenceFile:
    """A restartable corpus on disk: one sentence per line, tokens separated by tabs (UTF-8)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __iter__(self) -> Iterator[list[str]]:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                yield line.split("\t") if line else []


class _Checked:
    """Each pass over `sentences`, every sentence checked (a restartable list stays restartable)."""

    def __init__(self, sentences: Iterable[list[str]]):
        self.sentences = sentences

    def __iter__(self) -> Iterator[list[str]]:
        for position, sentence in enumerate(self.sentences):
            yield _checked_sentence(sentence, position)


def _checked_sentence(sentence, position: int) -> list[str]:
    if not isinstance(sentence, list):
        raise ValueError(f"train_word_vectors: sentence {position} is a {type(sentence).__name__}, expected a list "
                         f"of tokens (title_tokens(title) or normalize_query(query).split())")
    for token in sentence:
        if not isinstance(token, str) or not token or token in (PAD, UNK) or "\n" in token or "\r" in token:
            raise ValueError(f"train_word_vectors: sentence {position} holds the token {token!r}; tokens are "
                             f"non-empty str without line breaks and not {PAD!r} or {UNK!r}")
    return sentence


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))
