"""Query normalization: exact outputs on known inputs, and invariants with Hypothesis."""

from __future__ import annotations

import os
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagmill.config import TextConfig
from tagmill.labeling.text import noun_lemma, normalize_queries, normalize_query, script_of, tokenize

STOPWORDS = frozenset(TextConfig().stopwords)

needs_wordnet = pytest.mark.skipif(
    not os.path.isdir("/usr/share/wordnet"),
    reason="/usr/share/wordnet is absent: apt-get install wordnet-base wordnet-sense-index")


@needs_wordnet
@pytest.mark.parametrize(("query", "expected"), [
    ("  Sofas!! ", "sofa"),
    ("SOFA", "sofa"),
    ("Mobile Phones", "mobile phone"),
    ("cell-phone", "cell phone"),
    ("iPhone 15 Pro", "iphone 15 pro"),
    ("ＳＯＦＡ", "sofa"),
    ("ｉＰｈｏｎｅ１５", "iphone15"),
    ("Straße", "strasse"),
    ("T-Shirt", "t shirt"),
    ("1.5L water bottle", "1 5l water bottle"),
    ("café chairs", "café chair"),
    ("😀 emoji", "emoji"),
    ("tab\there\nnewline", "tab here newline"),
    ("zero\u200bwidth", "zero width"),
    ("红色沙发", "红色 沙发"),
    ("北欧风格实木餐桌", "北欧 风格 实木 餐桌"),
    ("苹果手机壳", "苹果 手机 壳"),
    ("iphone15手机壳", "iphone15 手机 壳"),
    ("红色，沙发！", "红色 沙发"),
    ("!!!", ""),
    ("", ""),
    ("   ", ""),
])
def test_normalize_query_exact(query, expected):
    assert normalize_query(query) == expected


@needs_wordnet
@pytest.mark.parametrize(("query", "expected"), [
    ("glasses", "glasses"),
    ("pants", "pants"),
    ("jeans", "jeans"),
    ("clothes", "clothes"),
    ("sunglasses", "sunglasses"),
    ("trousers", "trousers"),
    ("shoes", "shoe"),
    ("phones", "phone"),
    ("boxes", "box"),
    ("kids toys", "kid toy"),
    ("women", "woman"),
    ("men's shoes", "man shoe"),
    ("Women’s Jeans", "woman jeans"),
    ("news", "news"),
    ("species", "species"),
    ("pass", "pass"),
    ("bus", "bus"),
    ("iphones", "iphones"),
])
def test_nouns_are_lemmatized_but_plural_only_nouns_stay(query, expected):
    assert normalize_query(query) == expected


@needs_wordnet
def test_stopwords_are_removed_as_typed_and_as_lemmas():
    assert normalize_query("二手 iPhone 手机", frozenset({"二手"})) == "iphone 手机"
    assert normalize_query("二手 iPhone 手机") == "二手 iphone 手机"
    assert normalize_query("Cheap used cars for sale", STOPWORDS) == "car"
    assert normalize_query("the glasses", STOPWORDS) == "glasses"
    assert normalize_query("sales", frozenset({"sale"})) == ""
    assert normalize_query("红色的沙发", STOPWORDS) == "红色 沙发"
    assert normalize_query("全新 二手 的", STOPWORDS) == ""
    # jieba keeps "二手手机" as one dictionary word, so the stopword "二手" does not split it off.
    assert normalize_query("二手手机", STOPWORDS) == "二手手机"


@needs_wordnet
def test_normalize_queries_keeps_none_and_order():
    queries = ["Sofas", None, "红色的沙发", "", "!!!", "Sofas"]
    assert normalize_queries(queries, STOPWORDS) == ["sofa", None, "红色 沙发", "", "", "sofa"]
    assert normalize_queries([]) == []


def test_normalize_queries_refuses_other_types():
    with pytest.raises(TypeError, match="position 1"):
        normalize_queries([None, float("nan")])


def test_tokenize_does_not_lemmatize():
    assert tokenize("Red SOFAS, 2 seats") == ["red", "sofas", "2", "seats"]
    assert tokenize("红色沙发") == ["红色", "沙发"]
    assert tokenize("二手 iPhone手机", frozenset({"二手"})) == ["iphone", "手机"]
    assert tokenize("...") == []


@needs_wordnet
def test_noun_lemma_leaves_non_english_tokens_alone():
    assert noun_lemma("Sofas") == "sofa"
    assert noun_lemma("手机") == "手机"
    assert noun_lemma("15") == "15"
    assert noun_lemma("café") == "café"


@pytest.mark.parametrize(("text", "expected"), [
    ("iPhone 15", "en"),
    ("ＳＯＦＡ", "en"),
    ("红色沙发 2", "zh"),
    ("二手 iPhone", "mixed"),
    ("123 !!", "other"),
    ("", "other"),
    ("スマホ", "other"),
    ("iPhone ケース", "other"),
    ("диван", "other"),
])
def test_script_of(text, expected):
    assert script_of(text) == expected


VOCABULARY = ["Sofas", "glasses", "SHOES", "jeans", "men's", "cell-phone", "iPhone", "15", "1.5L", "Straße",
              "红色沙发", "二手", "手机壳", "的", "李小福是创新办主任", "ＳＯＦＡ", "!!!", "😀", " ", "\t", "’s", "-",
              "café", "e\u0301", "ǰ", "ﬁ", "Ⅻ", "²"]
"""Pieces that exercise lemmatization, jieba, stopwords and Unicode normalization when glued together."""

queries = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(VOCABULARY), max_size=8).map("".join),
    st.lists(st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=3)), max_size=8).map("".join),
)


@needs_wordnet
@settings(max_examples=500, deadline=None)
@given(queries)
def test_normalize_query_is_idempotent(query):
    once = normalize_query(query, STOPWORDS)
    assert normalize_query(once, STOPWORDS) == once


@needs_wordnet
@settings(max_examples=300, deadline=None)
@given(queries)
def test_output_is_single_spaced_tokens_of_letters_marks_and_numbers(query):
    result = normalize_query(query, STOPWORDS)
    tokens = result.split(" ") if result else []
    assert all(tokens)
    assert not any(token in STOPWORDS for token in tokens)
    assert all(unicodedata.category(char)[0] in "LMN" for token in tokens for char in token)
