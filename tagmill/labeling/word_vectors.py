"""Word vectors of titles and queries: gensim Word2Vec, reproducible for a seed, saved with the dataset version.

The vocabulary has two special tokens first, "<pad>" (id 0, a zero vector) and "<unk>" (id 1, a zero vector),
then every word seen at least `min_count` times, by decreasing count and then by the word, so ids depend only on
the counts. Samples store `token_ids` of their title, so the trainer needs the vectors but no tokenizer.

Reproducibility: gensim 4 draws the initial vectors from numpy generators seeded with `seed` (it no longer hashes
words with Python's salted `hash`), and with one worker thread the training order is fixed, so equal sentences
and parameters give byte-identical vectors under any PYTHONHASHSEED. A stable `hashfxn` is passed anyway, so
older code paths that still hash (`seeded_vector`) do not depend on the salt either.
"""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
VOCABULARY_FILE = "vocabulary.txt"
VECTORS_FILE = "vectors.npy"
META_FILE = "word_vectors.json"
FILES = (VOCABULARY_FILE, VECTORS_FILE, META_FILE)
"""The files of one set of word vectors (`word_vector_files`' names)."""
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class WordVectors:
    """Vocabulary and vectors; row i of `vectors` belongs to `vocabulary[i]`."""

    vocabulary: list[str]
    """vocabulary[0] = "<pad>", vocabulary[1] = "<unk>", then words by (-count, word)."""
    vectors: np.ndarray
    """float32 (V, D); rows 0 and 1 are zeros."""
    seed: int
    window: int = 5
    min_count: int = 2
    epochs: int = 5

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def index(self) -> dict[str, int]:
        """token -> id, for `token_ids`."""
        return {token: i for i, token in enumerate(self.vocabulary)}


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


def token_ids(tokens: list[str], index: Mapping[str, int], max_len: int) -> list[int]:
    """The ids of `tokens` (`WordVectors.index()`): an unknown token is 1; the first `max_len`; no padding.

    token_ids(["red", "sofa", "zzz"], {"<pad>": 0, "<unk>": 1, "sofa": 2, "red": 3}, 2) -> [3, 2].
    """
    if not isinstance(max_len, int) or max_len < 0:
        raise ValueError(f"token_ids: max_len must be an integer >= 0, got {max_len!r}")
    return [index.get(token, UNK_ID) for token in tokens[:max_len]]


def word_vector_files(wv: WordVectors) -> dict[str, bytes]:
    """The files of `wv` as name -> bytes: vocabulary.txt (UTF-8, one token per line), vectors.npy (float32)
    and word_vectors.json (format, dim, size, training parameters and the sha256 of the other two). Equal
    `WordVectors` give byte-identical files. A dataset publish takes them as they are (finish_publish)."""
    _check(wv, "word_vector_files")
    vocabulary = "".join(token + "\n" for token in wv.vocabulary).encode("utf-8")
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(wv.vectors, dtype=np.float32), allow_pickle=False)
    vectors = buffer.getvalue()
    meta = {"format": FORMAT_VERSION, "dim": wv.dim, "size": len(wv.vocabulary), "seed": wv.seed,
            "window": wv.window, "min_count": wv.min_count, "epochs": wv.epochs,
            "sha256": {VOCABULARY_FILE: hashlib.sha256(vocabulary).hexdigest(),
                       VECTORS_FILE: hashlib.sha256(vectors).hexdigest()}}
    return {VOCABULARY_FILE: vocabulary, VECTORS_FILE: vectors,
            META_FILE: (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8")}


def save_word_vectors(wv: WordVectors, folder: str | Path) -> list[str]:
    """Write `word_vector_files(wv)` into `folder`, created when missing. Output: the three written paths."""
    folder = Path(folder)
    files = word_vector_files(wv)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [str(folder / name) for name in files]


def load_word_vectors(folder: str | Path, verify: bool = True) -> WordVectors:
    """Read what `save_word_vectors` wrote, after checking each file against its sha256 in word_vectors.json
    (verify=False skips that check, for a caller that has just checked the same files another way).

    Raises `FileNotFoundError` naming a missing file, `ValueError` naming the file that does not match its
    checksum or is inconsistent (vocabulary size, special tokens, dtype, shape).
    """
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: missing; write the word vectors with save_word_vectors")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        expected = {name: meta["sha256"][name] for name in (VOCABULARY_FILE, VECTORS_FILE)}
        params = {key: int(meta[key]) for key in ("dim", "size", "seed", "window", "min_count", "epochs")}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{meta_path}: not a word-vectors description ({error!r}); write it again with "
                         f"save_word_vectors") from error
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; {meta_path} lists it")
        if not verify:
            continue
        found = file_sha256(path)
        if found != digest:
            raise ValueError(f"{path}: sha256 is {found}, {meta_path} expects {digest}; the file was changed or "
                             f"truncated, write the word vectors again")
    vocabulary = (folder / VOCABULARY_FILE).read_bytes().decode("utf-8").split("\n")[:-1]
    vectors = np.load(folder / VECTORS_FILE, allow_pickle=False)
    if vectors.dtype != np.float32 or vectors.shape != (params["size"], params["dim"]):
        raise ValueError(f"{folder / VECTORS_FILE}: expected float32 ({params['size']}, {params['dim']}), found "
                         f"{vectors.dtype} {vectors.shape}")
    wv = WordVectors(vocabulary, vectors, params["seed"], params["window"], params["min_count"], params["epochs"])
    _check(wv, f"load_word_vectors({folder / VOCABULARY_FILE})")
    return wv


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


def _check(wv: WordVectors, where: str) -> None:
    if wv.vocabulary[:2] != [PAD, UNK]:
        raise ValueError(f"{where}: the vocabulary must start with {PAD!r}, {UNK!r}; found {wv.vocabulary[:2]}")
    if wv.vectors.ndim != 2 or wv.vectors.shape[0] != len(wv.vocabulary):
        raise ValueError(f"{where}: {len(wv.vocabulary)} tokens but vectors of shape {wv.vectors.shape}")
    if len(set(wv.vocabulary)) != len(wv.vocabulary):
        raise ValueError(f"{where}: the vocabulary holds a token twice")
    if any("\n" in token or "\r" in token for token in wv.vocabulary):
        raise ValueError(f"{where}: a token holds a line break")


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
