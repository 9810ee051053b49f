"""Word-vector files: the vocabulary and vectors a build trains (labeling.word_vectors) and ships with its
dataset, as the trainer reads them. No gensim, no Spark.

The vocabulary has two special tokens first, "<pad>" (id 0, a zero vector) and "<unk>" (id 1, a zero vector),
then every word seen at least `min_count` times, by decreasing count and then by the word, so ids depend only on
the counts. Samples store `token_ids` of their title, so the trainer needs the vectors but no tokenizer.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagmill.checksums import file_sha256

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


def _check(wv: WordVectors, where: str) -> None:
    if wv.vocabulary[:2] != [PAD, UNK]:
        raise ValueError(f"{where}: the vocabulary must start with {PAD!r}, {UNK!r}; found {wv.vocabulary[:2]}")
    if wv.vectors.ndim != 2 or wv.vectors.shape[0] != len(wv.vocabulary):
        raise ValueError(f"{where}: {len(wv.vocabulary)} tokens but vectors of shape {wv.vectors.shape}")
    if len(set(wv.vocabulary)) != len(wv.vocabulary):
        raise ValueError(f"{where}: the vocabulary holds a token twice")
    if any("\n" in token or "\r" in token for token in wv.vocabulary):
        raise ValueError(f"{where}: a token holds a line break")
