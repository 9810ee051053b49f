"""Query canonicalization before queries become classes: the surface forms of one thing fold into the most
frequent one, and every fold is backed by what shoppers did, never by spelling alone.

A search log names one product in many ways: "mouse", "mosue", "mous"; "flashlight" and "torch"; "shirt" and
"衬衫"; "dress" and "dress black". Kept apart, each becomes a class of its own, and a class named "mosue" names
no category. A tag t folds into a tag T when

1. a *link* says why the two could be one thing:
   - spelling: T is within edit distance 1 of t (2 for tags of 6 characters or more; Damerau-Levenshtein, found
     by SymSpell's symmetric delete, symspellpy); a misspelling is much rarer than its word, so T must be on at
     least `spelling_ratio` times as many images, unless the evidence below is overwhelming
     (`strong_conditional` over `strong_shared` products); a plural ending ("smartwatches" / "smartwatch")
     needs no ratio;
   - translation: one of the two is Chinese and its English translation (the zh table or its jieba tokens,
     taxonomy.synsets) is the other ("衬衫" -> "shirt", spaces aside: "智能 手表" -> "smart watch"); a
     Chinese tag the table cannot translate is linked to the English tag its products were clicked under most
     (`partners`, from the search log);
   - synonym: one is a lemma of the other's WordNet synset ("torch" of flashlight.n.01, "boiler" of kettle.n.01,
     "baby dummy" of comforter.n.04's "baby's_dummy"), or both name the same synset ("t shirt", "tee shirt");
     a reason beyond spelling replaces a spelling link between the same two tags;
   - phrase: the words of one are among the other's, and the longer has no WordNet synset of its own, so it
     is the shorter with a modifier ("dress black" -> "dress", "barbecue" / "barbecue grill"); a phrase with a
     synset of its own ("sofa bed") is a kind of thing, not a variant, and never folds; or a phrase without a
     synset whose head noun has the other's sense among its own ("vinyl record" / "phonograph record",
     "baby bottle" / "nursing bottle");
2. *co-click evidence*: P(T | t) >= `min_conditional` over at least `min_shared` products: shoppers clicked
   the rarer form's products under the frequent form too (the search log's tuples); for a tag no search
   labeled (a teacher's or a seller's), the share of its images that carry T (taxonomy.cooccurrence);
3. T is the more frequent form (more images; ties: the smaller name), so the class keeps the frequent name.

Among several T for one t, the highest P(T | t) wins (then the more frequent T). Chains ("mosue" -> "mouse",
"鼠标" -> "mouse") end in one class: taxonomy.classes joins every fold and names the class by its most
frequent English tag.

Folding runs in rounds (`fold_in_rounds`). A shopper who misspells a word rarely clicks under the word itself:
"jacet"'s one product was clicked under "夹克", the Chinese for jacket, and "saxopohne"'s under "sax". So after
each round a form stands for its whole group (itself and every form folded into it): the evidence for t -> T
counts t's products clicked under any of T's forms, and T's frequency is its group's images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import combinations
from typing import NamedTuple

import pandas as pd
from symspellpy import SymSpell, Verbosity

from tagmill.config import TaxonomyConfig
from tagmill.taxonomy.synsets import TagSense, is_chinese
from tagmill.taxonomy.tables import columns

RULES = ("misspelling", "translation", "synonym", "phrase")
"""The decisions table's rule of a fold, by the link that made it a candidate."""
_PLURAL_ENDINGS = ("s", "es")
_TWO_EDITS_FROM = 6
"""Tags of this many characters or more may be two edits from their word ("diaprs" -> "diaper")."""
_MAX_PHRASE_WORDS = 6
"""Longer tags are not looked at for their sub-phrases (2^words subsets)."""
MAX_FOLD_ROUNDS = 3
"""Rounds of `fold_in_rounds`: the second sees the groups of the first (a misspelling clicked under a
translation), the third those of the second; on the demo markets a fourth finds nothing."""


class Candidate(NamedTuple):
    """A linked pair: `tag` (the rarer form) may fold into `into` (the more frequent) by `rule`, for `why`."""

    tag: str
    into: str
    rule: str
    why: str
    rare: bool = False
    """A misspelling link: `into` must be on spelling_ratio times the images of `tag` (or strong evidence)."""


def fold_candidates(images: Mapping[str, int], senses: Mapping[str, TagSense], wn,
                    partners: Mapping[str, str] | None = None) -> list[Candidate]:
    """A Candidate for every linked pair of tags, t the rarer form and T the more frequent (see the module
    docstring, point 1); no evidence is looked at yet.

    images: tag -> images it labels (the kept tags); senses: tag -> its WordNet sense (taxonomy.synsets; a
    tag missing here has none); wn: a WordNet reader, for the lemmas of a sense; partners: Chinese tag -> the
    English tag its products were clicked under most (used when the tag has no translation)."""
    found: dict[tuple[str, str], tuple[str, str, bool]] = {}

    def add(a: str, b: str, rule: str, why: str, rare: bool = False) -> None:
        pair = _rarer_first(a, b, images)
        if pair not in found or (found[pair][2] and not rare):  # a reason beyond spelling needs no ratio
            found[pair] = (rule, why, rare)

    english = sorted(t for t in images if not is_chinese(t))
    speller = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
    for tag in english:
        speller.create_dictionary_entry(tag, images[tag])
    for tag in english:
        distance = 2 if len(tag) >= _TWO_EDITS_FROM else 1
        for hit in speller.lookup(tag, Verbosity.ALL, max_edit_distance=distance):
            other = hit.term
            if other == tag:
                continue
            plural = _is_plural_of(tag, other) or _is_plural_of(other, tag)
            add(tag, other, "misspelling", f"edit distance {hit.distance}" + (" (plural)" if plural else ""),
                rare=not plural)

    by_text = {_squeeze(t): t for t in english}
    lemma_owner: dict[str, list[str]] = {}
    synset_owner: dict[str, list[str]] = {}
    for tag in english:
        sense = senses.get(tag)
        if _has_own_synset(sense):
            synset_owner.setdefault(sense.synset, []).append(tag)
            for lemma in wn.synset(sense.synset).lemma_names():
                lemma_owner.setdefault(_lemma_text(lemma), []).append(tag)
    for tag in sorted(images):
        sense = senses.get(tag)
        if is_chinese(tag):
            other = by_text.get(_squeeze(sense.english)) if sense and sense.english else None
            if other:
                add(tag, other, "translation", f"'{tag}' translates to '{sense.english}'")
            elif (partners or {}).get(tag) in images:
                add(tag, partners[tag], "translation", f"no zh table entry for '{tag}'; its products were clicked "
                                                       f"under '{partners[tag]}' most")
            continue
        for other in lemma_owner.get(tag, ()):
            if other != tag:
                add(tag, other, "synonym", f"'{tag}' is a lemma of {senses[other].synset}")
        if _has_own_synset(sense):
            for other in synset_owner[sense.synset]:
                if other != tag:
                    add(tag, other, "synonym", f"'{tag}' and '{other}' name one sense, {sense.synset}")
        elif sense and sense.synset and wn is not None:
            # a head-noun sense ("vinyl record" -> record): a kind of whichever tag names one of the head
            # noun's senses on its own ("phonograph record"; "nursing bottle" for "baby bottle")
            for synset in _head_senses(sense.english or tag, wn):
                for other in synset_owner.get(synset, ()):
                    add(tag, other, "phrase", f"'{tag}' is a kind of '{other}' ({synset}, a sense of its head noun)")

    by_words: dict[frozenset, list[str]] = {}
    for tag in english:
        by_words.setdefault(frozenset(tag.split()), []).append(tag)
    for tag in english:
        words = sorted(set(tag.split()))
        if len(words) < 2 or len(words) > _MAX_PHRASE_WORDS or _has_own_synset(senses.get(tag)):
            continue
        for size in range(1, len(words)):
            for part in combinations(words, size):
                for other in by_words.get(frozenset(part), ()):
                    add(tag, other, "phrase", f"'{tag}' is '{other}' with a modifier (no synset of its own)")
    return [Candidate(t, big, *link) for (t, big), link in sorted(found.items())]


def fold_tags(candidates: Iterable[Candidate], evidence: Mapping[tuple[str, str], Evidence],
              images: Mapping[str, int], cfg: TaxonomyConfig) -> pd.DataFrame:
    """The folds, as decisions-table rows (action "merge", the link's rule, other = the tag folded into,
    value = P(T | t), threshold = cfg.fold_min_conditional): the candidates whose co-click evidence holds (and,
    for a misspelling, whose word is spelling_ratio times as frequent or whose evidence is strong), one target
    per folded tag (the highest P(T | t), then the more frequent T).

    evidence: (t, T) -> Evidence (absent: none)."""
    best: dict[str, tuple] = {}
    for t, big, rule, why, rare in candidates:
        seen = evidence.get((t, big), Evidence(0, 0, "products"))
        p = seen.shared / seen.total if seen.total else 0.0
        if seen.shared < cfg.fold_min_shared or p < cfg.fold_min_conditional:
            continue
        ratio = images[big] / images[t] if images[t] else 0.0
        if rare and ratio < cfg.spelling_ratio:
            if seen.shared < cfg.fold_strong_shared or p < cfg.fold_strong_conditional:
                continue
            why += f" (only {ratio:.1f} times as frequent, but strong evidence)"
        key = (-p, -images[big], big)
        if t not in best or key < best[t][0]:
            detail = (f"{why}; {seen.shared} of its {seen.total} {seen.unit} carry '{big}' "
                      f"(P {p:.3f} >= {cfg.fold_min_conditional}), which labels {images[big]} images")
            best[t] = (key, {"tag": t, "action": "merge", "rule": rule, "other": big, "value": round(p, 6),
                             "threshold": cfg.fold_min_conditional, "detail": detail})
    return pd.DataFrame([best[t][1] for t in sorted(best)], columns=list(columns("decisions")))


EvidenceOf = Callable[[list[Candidate], Mapping[str, Sequence[str]]], Mapping[tuple[str, str], "Evidence"]]
"""(candidates, groups: T -> its forms, T included) -> (t, T) -> Evidence of t's products under any of T's forms."""


def fold_in_rounds(candidates: Sequence[Candidate], evidence_of: EvidenceOf, images: Mapping[str, int],
                   cfg: TaxonomyConfig, rounds: int = MAX_FOLD_ROUNDS) -> pd.DataFrame:
    """`fold_tags` in rounds, each over the candidates whose tag is not folded yet, re-aimed at the group their
    frequent form ended in; T's images are its group's (summed over its forms). Stops when a round folds
    nothing. Returns the decisions rows of every round (`other` is the group's form, the class's name)."""
    into: dict[str, str] = {}  # folded tag -> the form it folded into

    def group_of(tag: str) -> str:
        while tag in into:
            tag = into[tag]
        return tag

    folds = []
    for _ in range(rounds):
        groups: dict[str, list[str]] = {}
        for tag in images:
            groups.setdefault(group_of(tag), []).append(tag)
        sizes = {g: sum(images[t] for t in forms) for g, forms in groups.items()}
        aimed = {}
        for c in candidates:
            target = group_of(c.into)
            if c.tag in into or target == c.tag or _rarer_first(c.tag, target, sizes) != (c.tag, target):
                continue  # folded already, or the group became the rarer side (no cycles)
            why = c.why if target == c.into else f"{c.why} (via '{c.into}', folded into '{target}')"
            aimed.setdefault((c.tag, target), c._replace(into=target, why=why))
        if not aimed:
            break
        pending = list(aimed.values())
        found = fold_tags(pending, evidence_of(pending, {g: groups[g] for g in {c.into for c in pending}}),
                          {t: sizes.get(t, images[t]) for t in images}, cfg)
        if found.empty:
            break
        into.update(zip(found["tag"], found["other"]))
        folds.append(found)
    return (pd.concat(folds, ignore_index=True) if folds
            else pd.DataFrame(columns=list(columns("decisions"))))


class Evidence(NamedTuple):
    """How many of the rarer form's `total` products (or images) also carry the frequent form."""

    shared: int
    total: int
    unit: str
    """"products" (clicked under the frequent form, from the search log) or "images" (labeled with both)."""


def _has_own_synset(sense: TagSense | None) -> bool:
    return bool(sense and sense.synset and sense.exact)


def _lemma_text(lemma: str) -> str:
    """A WordNet lemma as a tag writes it: "baby's_dummy" -> "baby dummy", "T-shirt" -> "t shirt"."""
    return " ".join(lemma.lower().replace("'s_", "_").replace("-", "_").split("_"))


def _head_senses(english: str, wn) -> set[str]:
    """The noun senses of the phrase's tails ("vinyl record" -> those of "record"), the phrase itself aside."""
    words = english.lower().split()
    return {s.name() for start in range(1, len(words)) for s in wn.synsets("_".join(words[start:]), pos="n")}


def _is_plural_of(plural: str, word: str) -> bool:
    return any(plural == word + ending for ending in _PLURAL_ENDINGS) or (
        word.endswith("y") and plural == word[:-1] + "ies")


def _squeeze(text: str) -> str:
    return "".join(text.lower().split())


def _rarer_first(a: str, b: str, images: Mapping[str, int]) -> tuple[str, str]:
    """(rarer, more frequent); between equally frequent tags the larger name is the rarer, so the smaller
    name stays."""
    if images[a] != images[b]:
        return (a, b) if images[a] < images[b] else (b, a)
    return (a, b) if a > b else (b, a)
