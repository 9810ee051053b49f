"""Normalization of search queries (and later titles): pure per-string functions, no Spark.

A query becomes a space-separated string of tokens:

1. Unicode NFKC, case folding, NFKC again (full-width "ＳＯＦＡ" is "sofa", "ß" is "ss").
2. An English possessive "'s" after a letter is dropped ("men's" is "men", later lemmatized to "man"); then every
   character that is not a letter, mark or number (Unicode categories L*, M*, N*) is a separator:
   punctuation and symbols (P*, S*), whitespace (Z*) and control, format, private-use and unassigned
   characters (C*). So "cell-phone" is "cell phone" and "1.5" is "1 5".
3. Each piece is split into runs of Han characters and runs of anything else; Han runs are segmented with jieba
   (precise mode without the HMM for unknown words, see `_segment_han`), other runs are one token each.
4. `normalize_query` only: ASCII-letter tokens are lemmatized as English nouns with WordNet (`noun_lemma`).
5. Tokens in `stopwords`, as typed or as lemmatized, are dropped; numbers and unknown words are kept.

Results are cached per process (per query, per Han run and per token), so a Zipf-distributed batch of millions
of queries costs little more than its distinct strings. The WordNet reader and jieba's dictionary load lazily,
once per process, on first use.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections.abc import Iterable

from tagmill.wordnet import DEFAULT_WORDNET_DIR, load_wordnet

SCRIPTS = ("zh", "en", "mixed", "other")
"""Values of `script_of`."""

HAN_CLASS = ("\u3005\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
              "\U00020000-\U0003ffff")
"""Letters and numbers of Unicode's Han script (its radicals and strokes are symbols, separators here), as
the inside of a regex character class; the one definition of "Chinese" for queries, titles and tags."""
HAN = re.compile(f"[{HAN_CLASS}]")
"""One Han character: HAN.match(word) says it starts with one, HAN.search(text) that it holds one."""
_RUNS = re.compile(f"[{HAN_CLASS}]+|[^{HAN_CLASS}]+")

_USUALLY_PLURAL = re.compile(r"\((?:usually |often |frequently )?(?:used )?(?:in the )?plural\)")
"""How WordNet glosses a noun that is mostly used in the plural: "jean: (usually plural) close-fitting trousers"."""

_QUERY_CACHE = 1 << 16
_TOKEN_CACHE = 1 << 18


def normalize_query(text: str, stopwords: frozenset[str] = frozenset(),
                    wordnet_dir: str = DEFAULT_WORDNET_DIR) -> str:
    """The normalized form of one search query: lemmatized tokens joined by one space.

    Inputs: `text`, the raw query; `stopwords`, tokens to drop, compared with the tokens as typed (after case
    folding) and with their lemmas, so give them lower-case (as `TextConfig.stopwords` are); `wordnet_dir`,
    the WordNet 3.0 folder (`TextConfig.wordnet_dir`).
    Output: e.g. "  Sofas!! " -> "sofa", "Mobile Phones" -> "mobile phone", "二手 iPhone 手机" with stopword
    "二手" -> "iphone 手机"; "" when nothing is left ("!!!"). Idempotent: normalizing the output again gives
    the output. Raises `FileNotFoundError` (with the install command) when WordNet is missing.
    """
    return _normalize_cached(text, frozenset(stopwords), wordnet_dir)


def normalize_queries(texts: Iterable[str | None], stopwords: frozenset[str] = frozenset(),
                      wordnet_dir: str = DEFAULT_WORDNET_DIR) -> list[str | None]:
    """`normalize_query` over a batch (a list, a pandas Series inside mapInPandas, ...); None stays None.

    Any other value that is not a string is refused with a `TypeError` naming its position.
    """
    stopwords = frozenset(stopwords)
    out: list[str | None] = []
    for position, text in enumerate(texts):
        if text is None:
            out.append(None)
        elif isinstance(text, str):
            out.append(_normalize_cached(text, stopwords, wordnet_dir))
        else:
            raise TypeError(f"normalize_queries: expected str or None at position {position}, got "
                            f"{type(text).__name__} {text!r}; fill missing values with None")
    return out


def tokenize(text: str, stopwords: frozenset[str] = frozenset()) -> list[str]:
    """The tokens of `text` before lemmatization: steps 1-3 of the module docstring, minus `stopwords`.

    "Red SOFA, 2 seats" -> ["red", "sofa", "2", "seats"]; "红色沙发" -> ["红色", "沙发"].
    """
    return [token for token in _tokens(text) if token not in stopwords]


def noun_lemma(token: str, wordnet_dir: str = DEFAULT_WORDNET_DIR) -> str:
    """The English noun lemma of one token; a token that is not ASCII letters only is returned unchanged.

    WordNet lists some plurals as nouns of their own, so a plain "keep a noun lemma, else take morphy's"
    keeps "shoes" (a noun.state sense: "in his shoes") and "men" while it turns "jeans", which WordNet does not
    list, into "jean". The rule, repeated until the token no longer changes:

    - no noun reading at all (morphy finds nothing): unchanged ("iphone", "iphones", "bought");
    - a noun lemma without another candidate: unchanged ("clothes", "news", "series");
    - not a noun lemma: morphy's first lemma ("sofas" -> "sofa", "phones" -> "phone", "women" -> "woman"),
      unless that lemma's garment-like meaning is glossed "(usually plural)": "jeans", "trousers",
      "pajamas", "overalls" stay;
    - a noun lemma that morphy can also reduce ("glasses" -> "glass", "shoes" -> "shoe", "pass" -> "pas"):
      unchanged when it names an artifact of its own (noun.artifact: "glasses", "pants", "shorts", and also
      "rings", "bars") or when it is at least as frequent in WordNet's sense-tagged corpus as the reduced form
      ("pass", "gas", "species"); otherwise reduced ("shoes" -> "shoe", "men" -> "man", "sales" -> "sale").
    """
    if not (token.isascii() and token.isalpha()):
        return token
    return _noun_lemma(token.lower(), wordnet_dir)


def script_of(text: str) -> str:
    """The script of the letters of `text`: "zh" (Han only), "en" (Latin only), "mixed" (Han and Latin) or
    "other" (no letters, or any letter of another script such as kana, Hangul or Cyrillic).

    Digits, punctuation and symbols are ignored: "iPhone 15" -> "en", "红色沙发 2" -> "zh",
    "二手 iPhone" -> "mixed", "123" -> "other", "スマホ" -> "other".
    """
    han = latin = other = False
    for char in unicodedata.normalize("NFKC", text):
        if not char.isalpha():
            continue
        if HAN.match(char):
            han = True
        elif _is_latin(char):
            latin = True
        else:
            other = True
    if other or not (han or latin):
        return "other"
    if han and latin:
        return "mixed"
    return "zh" if han else "en"


@functools.lru_cache(maxsize=_QUERY_CACHE)
def _normalize_cached(text: str, stopwords: frozenset[str], wordnet_dir: str) -> str:
    lemmas = (noun_lemma(token, wordnet_dir) for token in tokenize(text, stopwords))
    return " ".join(lemma for lemma in lemmas if lemma not in stopwords)


def fold(text: str) -> str:
    """Step 1 of the normalization: NFKC, case folding, NFKC again ("ＳＯＦＡ" -> "sofa", "Straße" -> "strasse").
    Anything compared with the tokens (noise phrases in labeling.titles) is folded the same way."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


@functools.lru_cache(maxsize=_QUERY_CACHE)
def _tokens(text: str) -> tuple[str, ...]:
    spaced = fold(text).translate(_SEPARATORS)
    if "'" in spaced or "\u2019" in spaced:
        spaced = _POSSESSIVE.sub("", spaced).translate(_APOSTROPHES)
    tokens: list[str] = []
    for piece in spaced.split():
        for run in _RUNS.findall(piece):
            if HAN.match(run):
                tokens.extend(_segment_han(run))
            else:
                tokens.append(run)
    return tuple(tokens)


class _SeparatorTable(dict):
    """A `str.translate` table that turns every character outside the categories L*, M* and N* into a space,
    except the apostrophes (handled after the possessive "'s"); filled per character on first sight."""

    def __missing__(self, code: int) -> int:
        char = chr(code)
        keep = unicodedata.category(char)[0] in "LMN" or char in "'\u2019"
        self[code] = code if keep else 0x20
        return self[code]


_SEPARATORS = _SeparatorTable()
_APOSTROPHES = {ord("'"): " ", ord("\u2019"): " "}
_POSSESSIVE = re.compile("(?<=[^\\W\\d_])['\u2019]s(?=[ '\u2019]|$)")
"""An apostrophe (straight or typographic) and "s" after a letter, ending a word: "men's", "kid’s"."""


@functools.lru_cache(maxsize=_TOKEN_CACHE)
def _segment_han(run: str) -> tuple[str, ...]:
    """jieba's precise mode without its HMM: a word jieba's dictionary does not know becomes single characters.

    The HMM guesses new words from their neighbours, so the same characters would be cut differently in
    different queries, and a guessed word cut again on its own can come out different (normalization would
    not be idempotent). Dictionary words are cut the same wherever they appear.
    """
    return tuple(_jieba().cut(run, cut_all=False, HMM=False))


@functools.cache
def _jieba():
    import jieba

    # jieba logs "Building prefix dict ..." at DEBUG to stderr when its dictionary loads.
    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


@functools.lru_cache(maxsize=_TOKEN_CACHE)
def _noun_lemma(token: str, wordnet_dir: str) -> str:
    reader = load_wordnet(wordnet_dir)
    for _ in range(8):  # each step reaches a more frequent lemma, so this ends after one or two
        reduced = _reduce_once(reader, token)
        if reduced == token:
            break
        token = reduced
    return token


def _reduce_once(reader, token: str) -> str:
    # `_morphy` (NLTK's analysis behind the public `morphy`) lists the token itself first when it is a noun
    # lemma, then the lemmas that WordNet's exception list and plural rules give; `morphy` returns only the first.
    candidates = reader._morphy(token, "n")
    if not candidates:
        return token
    if candidates[0] != token:
        reduced = candidates[0]
        return token if _usually_plural(reader, reduced) else reduced
    if len(candidates) == 1:
        return token
    reduced = candidates[1]
    own = reader.lemmas(token, "n")
    if any(lemma.synset().lexname() == "noun.artifact" for lemma in own):
        return token
    if sum(lemma.count() for lemma in own) >= sum(lemma.count() for lemma in reader.lemmas(reduced, "n")):
        return token
    return reduced


def _usually_plural(reader, lemma_name: str) -> bool:
    return any(lemma.synset().lexname() == "noun.artifact" and _USUALLY_PLURAL.match(lemma.synset().definition())
               for lemma in reader.lemmas(lemma_name, "n"))


@functools.lru_cache(maxsize=4096)
def _is_latin(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN ")
