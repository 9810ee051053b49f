"""WordNet 3.0 from the operating system's database folder, read through NLTK without downloading anything.

Debian's `wordnet-base` and `wordnet-sense-index` packages install the WordNet 3.0 database in
/usr/share/wordnet (data.noun, index.noun, noun.exc, index.sense, ...). NLTK's `WordNetCorpusReader` reads
that format but also wants WordNet's `lexnames` file, which Debian does not ship; tagmill packages it
(`tagmill/lexnames.txt`) and the reader here takes that one file from the package, so nothing is copied into
or written under the WordNet folder. `nltk.download` is never called.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing nltk takes ~2 s, so it waits for the first load_wordnet
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

DEFAULT_WORDNET_DIR = "/usr/share/wordnet"

INSTALL_HINT = ("install WordNet 3.0 with `apt-get install wordnet-base wordnet-sense-index` "
                "(Debian/Ubuntu), or set text.wordnet_dir in the config to a folder that holds the WordNet 3.0 "
                "database files")

REQUIRED_FILES = ("cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb", "data.adj",
                  "data.adv", "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc")
"""Database files NLTK's reader opens (its `_FILES` less `lexnames`, which comes from this package): index.sense
from wordnet-sense-index, the others from wordnet-base."""


def load_wordnet(wordnet_dir: str = DEFAULT_WORDNET_DIR) -> WordNetCorpusReader:
    """An NLTK WordNet reader over the WordNet 3.0 database in `wordnet_dir`.

    Inputs: `wordnet_dir`, a folder with the WordNet 3.0 database files (default /usr/share/wordnet, where
    Debian's wordnet-base and wordnet-sense-index install them; `TextConfig.wordnet_dir` in the config).
    Output: a `nltk.corpus.reader.wordnet.WordNetCorpusReader` (English only: no Open Multilingual Wordnet).
    One reader per folder and process: later calls with the same folder return the same object.

    NLTK 3.10 only opens corpus files under folders listed in `nltk.data.path`, so the folder is appended
    there (once) when missing. Raises `FileNotFoundError`, naming every missing path and how to install it,
    when the folder or one of its database files is missing.
    """
    return _load_wordnet(os.path.abspath(wordnet_dir))


@functools.cache
def _load_wordnet(wordnet_dir: str) -> WordNetCorpusReader:
    _check_files(wordnet_dir)
    import nltk

    if wordnet_dir not in nltk.data.path:
        nltk.data.path.append(wordnet_dir)
    with warnings.catch_warnings():
        # Without an OMW reader NLTK warns that multilingual functions are unavailable; that is intended.
        warnings.filterwarnings("ignore", message="The multilingual functions are not available")
        return _reader_class()(wordnet_dir, None)


def _check_files(wordnet_dir: str) -> None:
    if not os.path.isdir(wordnet_dir):
        raise FileNotFoundError(f"WordNet folder not found: {wordnet_dir}. Fix: {INSTALL_HINT}.")
    missing = [os.path.join(wordnet_dir, name) for name in REQUIRED_FILES
               if not os.path.isfile(os.path.join(wordnet_dir, name))]
    if missing:
        raise FileNotFoundError(f"WordNet file(s) not found: {', '.join(missing)}. Fix: {INSTALL_HINT}.")


@functools.cache
def _lexnames_text() -> str:
    return resources.files("tagmill").joinpath("lexnames.txt").read_text(encoding="utf-8")


@functools.cache
def _reader_class() -> type[WordNetCorpusReader]:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class PackagedLexnamesReader(WordNetCorpusReader):
        """NLTK's reader with `lexnames` read from tagmill's package data and no mapping to NLTK's own copy."""

        def open(self, file):
            if file == "lexnames":
                return io.StringIO(_lexnames_text())
            return super().open(file)

        def map_wn(self, version="wordnet"):
            # NLTK maps the loaded WordNet onto its downloaded "wordnet" corpus (3.0) for OMW lookups. There is
            # no OMW reader here and the mapping would look for that download, so the default version maps to
            # nothing (the data already is WordNet 3.0); another version is left to NLTK.
            if version == "wordnet":
                return None
            return super().map_wn(version)

    return PackagedLexnamesReader
