"""Titles and queries through one tokenizer: marketplace boilerplate out, then the query normalization.

A listing title is tokenized exactly as a search query is (labeling.text: NFKC, case folding, separators,
jieba for Han runs, WordNet noun lemmas through NLTK's reader, stop words), after whole noise phrases such as
"free shipping" or "包邮" are cut out. So "Sofas - free shipping" in a title and "sofa" in a query share the
token "sofa", and with no noise phrases `title_tokens(text)` is `normalize_query(text).split()`: the same
function serves mine-logs' query normalization and the titles of the dataset build.

English words are split at every character that is not a letter, mark or number, as queries are, rather than
with an NLTK word tokenizer: Treebank rules keep "cell-phone" and "1.5l" whole and split "don't" into
"do" + "n't", so a title word would no longer meet the same word typed as a query. The script of each string
(`script_of`) decides nothing else here: jieba sees only the Han runs and WordNet only ASCII-letter tokens,
whatever script the rest of the string is in.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from tagmill.labeling.text import HAN, HAN_CLASS, fold, normalize_query
from tagmill.wordnet import DEFAULT_WORDNET_DIR

DEFAULT_NOISE_PHRASES: tuple[str, ...] = (
    # English: shipping, novelty, condition and haggling boilerplate
    "free shipping", "free delivery", "fast shipping", "new arrival", "new arrivals", "hot sale", "on sale",
    "best seller", "limited offer", "brand new", "like new", "great condition", "good condition",
    "must go", "must sell", "obo", "or best offer", "negotiable", "price negotiable", "pickup only",
    "local pickup", "cash only", "no lowball", "no lowballs",
    # Chinese: 包邮 (free shipping), 全新 (brand new), 急售 (urgent sale), 可小刀 (small haggle OK), 自提 (pickup),
    # 转让 (transfer), 九五新 (95% new), 低价出 (sold cheap), 热卖 / 爆款 (hot sale), 新品 / 新款 (new arrival),
    # 特价 / 清仓 (special price / clearance), 可议价 / 价格可议 (negotiable), 同城 (same city)
    "包邮", "全国包邮", "顺丰包邮", "全新", "急售", "急出", "可小刀", "自提", "同城自提", "转让", "九五新",
    "九九新", "低价出", "低价转", "热卖", "爆款", "新品", "新款上市", "特价", "清仓", "可议价", "价格可议",
)
"""Noise phrases cut from titles by default: marketplace boilerplate that names no product. Covers every
noise phrase of the demo generator (tagmill.demo.catalog NOISE_EN, NOISE_ZH; its "!!!" is punctuation, a
separator anyway). Condition words that narrow a product ("used", "二手", "九成新") are left to stop words."""


def title_tokens(text: str, noise_phrases: Sequence[str] = DEFAULT_NOISE_PHRASES,
                 stopwords: frozenset[str] = frozenset(), wordnet_dir: str = DEFAULT_WORDNET_DIR) -> list[str]:
    """The tokens of one title (or query): `noise_phrases` cut out, then `normalize_query`'s tokens.

    Inputs: `text`, a raw title or query; `noise_phrases`, phrases removed whole before tokenizing, compared
    after NFKC and case folding and with any run of separators matching the space between two words
    ("FREE-SHIPPING!" matches "free shipping"); a phrase with Latin letters or digits at an end matches only
    at a word boundary there ("obo" is not cut from "robot"), a phrase ending in a Han character matches
    anywhere on that side (Chinese has no spaces: "包邮" is cut from "沙发包邮"); `stopwords`, lower-case
    tokens dropped as typed and as lemmas (`TextConfig.stopwords`); `wordnet_dir`, the WordNet 3.0 folder
    (`TextConfig.wordnet_dir`).
    Output: lemmatized tokens in title order, numbers kept: "Midea Modern Silver Electric Fan - free shipping"
    -> ["midea", "modern", "silver", "electric", "fan"]; "全新 沙发 包邮" -> ["沙发"]; "Sofas" -> ["sofa"];
    [] when nothing is left. Raises `FileNotFoundError` (with the install command) when WordNet is missing.
    """
    if not isinstance(text, str):
        raise TypeError(f"title_tokens: expected a str, got {type(text).__name__} {text!r}")
    return normalize_query(remove_noise_phrases(text, noise_phrases), frozenset(stopwords), wordnet_dir).split()


def remove_noise_phrases(text: str, noise_phrases: Sequence[str] = DEFAULT_NOISE_PHRASES) -> str:
    """`text` case folded (NFKC, casefold, NFKC) with every noise phrase replaced by a space; see `title_tokens`.

    "Midea Fan - FREE SHIPPING" -> "midea fan -  "; for a report of what was cut.
    """
    pattern = _noise_pattern(tuple(noise_phrases))
    folded = fold(text)  # as the tokenizer folds, so phrases and text compare as it sees them
    return folded if pattern is None else pattern.sub(" ", folded)


_WORD = re.compile(r"[^\W_]+")
"""A run of letters and digits: the words of a phrase (its punctuation is a separator like any other)."""
_GAP = r"[\W_]+"
_NOT_AFTER = f"(?<![^\\W_{HAN_CLASS}])"
"""At a phrase start with a Latin letter or digit: the character before is no letter or digit of a non-Han word."""
_NOT_BEFORE = f"(?![^\\W_{HAN_CLASS}])"


@functools.lru_cache(maxsize=64)
def _noise_pattern(phrases: tuple[str, ...]) -> re.Pattern | None:
    """One alternation of all phrases, longest first so "free shipping" wins over a shorter phrase inside it."""
    alternatives = []
    for phrase in phrases:
        if not isinstance(phrase, str):
            raise TypeError(f"noise phrases: expected str, got {type(phrase).__name__} {phrase!r}")
        words = _WORD.findall(fold(phrase))
        if not words:  # punctuation only ("!!!"): the tokenizer drops it anyway
            continue
        body = _GAP.join(re.escape(word) for word in words)
        start = "" if HAN.match(words[0][0]) else _NOT_AFTER
        end = "" if HAN.match(words[-1][-1]) else _NOT_BEFORE
        alternatives.append((len(body), start + body + end))
    if not alternatives:
        return None
    alternatives.sort(key=lambda item: (-item[0], item[1]))
    return re.compile("|".join(body for _, body in alternatives))
