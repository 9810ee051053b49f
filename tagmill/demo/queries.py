"""Every surface form a simulated shopper can type for a leaf, and the choice of one per search.

The forms are enumerated up front (not invented at random per session) so that truth/query_forms.csv
can list every query text the generator may emit, each owned by exactly one leaf: a form that two leaves
would share (a misspelling of one that spells another's name) is dropped from both.

Kinds: `name` (the leaf name), `plural`, `synonym`, `chinese`, `variant` (case, punctuation, whitespace
or stop-word changes of the name or plural: "Sofa!", "  SOFAS ", "used sofa") and `misspelling` (one
adjacent-letter swap or one dropped letter of the name).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tagmill.demo.vocabulary import Leaf

FORM_KINDS = ("name", "plural", "synonym", "chinese", "variant", "misspelling")

VARIANT_TEMPLATES = (
    lambda w: w.upper(),
    lambda w: " ".join(p[:1].upper() + p[1:] for p in w.split(" ")),
    lambda w: w[:1].upper() + w[1:] + "!",
    lambda w: "  " + w.upper() + " ",
    lambda w: w + "?",
    lambda w: " " + w + "  ",
    lambda w: "used " + w,
    lambda w: "cheap " + w,
    lambda w: w + " for sale",
)
"""Case, punctuation, whitespace and stop-word variants; the stop words are in TextConfig.stopwords."""

SYNONYM_SHARE = 0.20
NAME_SPLIT = (("name", 0.6), ("plural", 0.2), ("variant", 0.2))
"""How a query that names the leaf by its English name is written."""


@dataclass(frozen=True)
class QueryForms:
    """The query texts of one leaf, by kind; `misspellings` and `variants` may be empty."""

    leaf_id: str
    name: str
    plural: tuple[str, ...]
    synonyms: tuple[str, ...]
    chinese: tuple[str, ...]
    variants: tuple[str, ...]
    misspellings: tuple[str, ...]

    def rows(self) -> list[tuple[str, str, str]]:
        """(leaf_id, form, kind) for every form, in FORM_KINDS order."""
        by_kind = (("name", (self.name,)), ("plural", self.plural), ("synonym", self.synonyms),
                   ("chinese", self.chinese), ("variant", self.variants), ("misspelling", self.misspellings))
        return [(self.leaf_id, form, kind) for kind, forms in by_kind for form in forms]


def misspellings_of(word: str) -> list[str]:
    """One adjacent-letter swap or one dropped letter, never at the first letter (people rarely miss it).

    Short words keep only swaps: dropping a letter of "bed" leaves nothing recognisable.
    """
    out: list[str] = []
    for i in range(1, len(word) - 1):
        a, b = word[i], word[i + 1]
        if a != b and a.isalpha() and b.isalpha():
            out.append(word[:i] + b + a + word[i + 2:])
    if len(word) >= 5:
        for i in range(1, len(word)):
            if word[i].isalpha() and word[i] != word[i - 1]:
                out.append(word[:i] + word[i + 1:])
    return [w for w in dict.fromkeys(out) if w != word]


def variants_of(words: list[str]) -> list[str]:
    out = [template(w) for w in words for template in VARIANT_TEMPLATES]
    return [v for v in dict.fromkeys(out) if v not in words]


def build_query_forms(leaves: list[Leaf]) -> dict[str, QueryForms]:
    """Forms of every leaf keyed by leaf_id; a generated form that collides across leaves is dropped."""
    fixed: dict[str, str] = {}
    for leaf in leaves:
        for term in (leaf.name_en, *([leaf.plural] if leaf.plural else []), *leaf.synonyms, leaf.name_zh):
            fixed[term.strip().casefold()] = leaf.leaf_id
    generated: dict[str, tuple[list[str], list[str]]] = {}
    owners: dict[str, set[str]] = {}
    for leaf in leaves:
        bases = [leaf.name_en, *([leaf.plural] if leaf.plural else [])]
        variants, misspellings = variants_of(bases), misspellings_of(leaf.name_en)
        generated[leaf.leaf_id] = (variants, misspellings)
        for form in variants + misspellings:
            owners.setdefault(form.strip().casefold(), set()).add(leaf.leaf_id)

    def keep(form: str, leaf_id: str) -> bool:
        key = form.strip().casefold()
        return fixed.get(key, leaf_id) == leaf_id and len(owners[key]) == 1

    forms = {}
    for leaf in leaves:
        variants, misspellings = generated[leaf.leaf_id]
        seen = {leaf.name_en, leaf.plural, *leaf.synonyms, leaf.name_zh}
        kept_variants = tuple(v for v in variants if keep(v, leaf.leaf_id) and v not in seen)
        kept_misspellings = tuple(m for m in misspellings
                                  if keep(m, leaf.leaf_id) and m.strip().casefold() not in fixed)
        forms[leaf.leaf_id] = QueryForms(
            leaf.leaf_id, leaf.name_en, (leaf.plural,) if leaf.plural else (), leaf.synonyms,
            (leaf.name_zh,), kept_variants, kept_misspellings)
    return forms


def choose_query(forms: QueryForms, rnd: random.Random, chinese_share: float,
                 misspelling_share: float) -> tuple[str, str]:
    """(query text, kind) for one search: Chinese, misspelled, synonym, or else the name in some form.

    A kind the leaf lacks (no synonym, no usable misspelling) falls back to the plain name.
    """
    draw = rnd.random()
    if draw < chinese_share:
        return forms.chinese[0], "chinese"
    draw -= chinese_share
    if draw < misspelling_share:
        return (rnd.choice(forms.misspellings), "misspelling") if forms.misspellings else (forms.name, "name")
    draw -= misspelling_share
    if draw < SYNONYM_SHARE and forms.synonyms:
        return rnd.choice(forms.synonyms), "synonym"
    split = rnd.random()
    for kind, share in NAME_SPLIT:
        split -= share
        if split < 0:
            break
    if kind == "plural" and forms.plural:
        return forms.plural[0], "plural"
    if kind == "variant" and forms.variants:
        return rnd.choice(forms.variants), "variant"
    return forms.name, "name"
