"""Query canonicalization (taxonomy/canonical.py): surface forms fold into the frequent form only with co-click
evidence, and never on spelling alone."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from tagmill.config import TaxonomyConfig
from tagmill.taxonomy.canonical import Candidate, Evidence, fold_candidates, fold_in_rounds, fold_tags
from tagmill.taxonomy.classes import build_classes
from tagmill.taxonomy.hierarchy import Hierarchy
from tagmill.taxonomy.synsets import TagSense, map_tags
from tagmill.taxonomy.tables import columns

needs_wordnet = pytest.mark.skipif(not os.path.isdir("/usr/share/wordnet"),
                                   reason="/usr/share/wordnet is absent: apt-get install wordnet-base "
                                          "wordnet-sense-index")

IMAGES = {"mouse": 800, "mosue": 17, "muse": 40, "plate": 240, "pate": 120, "盘子": 150, "flashlight": 100,
          "torch": 55, "dress": 300, "dress black": 30, "sofa": 200, "sofa bed": 60}
SENSES = {
    "mouse": TagSense("mouse", "mouse.n.04", "wordnet", "mouse", 1.0, ""),
    "muse": TagSense("muse", "muse.n.01", "wordnet", "muse", 1.0, ""),
    "plate": TagSense("plate", "plate.n.04", "wordnet", "plate", 1.0, ""),
    "pate": TagSense("pate", "pate.n.01", "wordnet", "pate", 1.0, ""),
    "盘子": TagSense("盘子", "plate.n.04", "chinese_table", "plate", 1.0, ""),
    "flashlight": TagSense("flashlight", "flashlight.n.01", "wordnet", "flashlight", 1.0, ""),
    "torch": TagSense("torch", "torch.n.01", "wordnet", "torch", 1.0, ""),
    "dress": TagSense("dress", "dress.n.01", "wordnet", "dress", 1.0, ""),
    "dress black": TagSense("dress black", "dress.n.01", "wordnet", "dress black", 1.0, "", exact=False),
    "sofa": TagSense("sofa", "sofa.n.01", "wordnet", "sofa", 1.0, ""),
    "sofa bed": TagSense("sofa bed", "convertible.n.03", "wordnet", "sofa bed", 1.0, ""),
}
SHARED = {("mosue", "mouse"): Evidence(4, 5, "products"), ("muse", "mouse"): Evidence(1, 12, "products"),
          ("pate", "plate"): Evidence(1, 30, "products"), ("盘子", "plate"): Evidence(140, 150, "images"),
          ("torch", "flashlight"): Evidence(14, 15, "products"), ("dress black", "dress"): Evidence(9, 9, "products"),
          ("sofa bed", "sofa"): Evidence(20, 20, "products")}
"""Of the rarer form's products, those clicked under the frequent form (or of its images, those labeled with
it): the misspelling and the translation share their products with the frequent form; "muse" and "pate" are
other products that look alike on paper."""


RULES = TaxonomyConfig(fold_min_conditional=0.6, fold_min_shared=1, spelling_ratio=3.0,
                       fold_strong_conditional=0.9, fold_strong_shared=3)


@pytest.fixture(scope="module")
def wn():
    from tagmill.wordnet import load_wordnet

    return load_wordnet()


@needs_wordnet
def test_links_come_from_spelling_translation_synonyms_and_phrases(wn):
    links = {(c.tag, c.into): c.rule for c in fold_candidates(IMAGES, SENSES, wn)}
    assert links[("mosue", "mouse")] == "misspelling"
    assert links[("muse", "mouse")] == "misspelling"  # a candidate on spelling; the evidence decides
    assert links[("pate", "plate")] == "misspelling"  # too frequent for a misspelling unless evidence is strong
    assert links[("盘子", "plate")] == "translation"
    assert links[("torch", "flashlight")] == "synonym"  # torch is a lemma of flashlight.n.01
    assert links[("dress black", "dress")] == "phrase"
    assert ("sofa bed", "sofa") not in links  # a kind of its own (convertible.n.03), not a modifier phrase


@needs_wordnet
def test_only_co_click_evidence_makes_a_fold(wn):
    folds = fold_tags(fold_candidates(IMAGES, SENSES, wn), SHARED, IMAGES, RULES)
    assert list(folds.columns) == list(columns("decisions"))
    got = {r.tag: (r.other, r.rule) for r in folds.itertuples()}
    assert got == {"mosue": ("mouse", "misspelling"), "盘子": ("plate", "translation"),
                   "torch": ("flashlight", "synonym"), "dress black": ("dress", "phrase")}
    row = folds.set_index("tag").loc["mosue"]
    assert row["value"] == pytest.approx(4 / 5) and row["threshold"] == 0.6 and row["action"] == "merge"
    assert "edit distance 1" in row["detail"] and "4 of its 5 products carry 'mouse'" in row["detail"]


def test_a_frequent_look_alike_never_folds_on_spelling_alone():
    images = {"plate": 240, "pate": 230}
    senses = {t: TagSense(t, None, "unmapped", t, 0.0, "") for t in images}
    candidates = fold_candidates(images, senses, None)
    assert candidates == [Candidate("pate", "plate", "misspelling", "edit distance 1", rare=True)]
    for evidence in ({}, {("pate", "plate"): Evidence(2, 30, "products")},  # none, or shoppers tell them apart
                     {("pate", "plate"): Evidence(25, 30, "products")}):  # clicked alike, but not overwhelmingly
        assert fold_tags(candidates, evidence, images, RULES).empty
    # only overwhelming co-click evidence folds a form that is not much rarer than its word
    folds = fold_tags(candidates, {("pate", "plate"): Evidence(29, 30, "products")}, images, RULES)
    assert folds["tag"].tolist() == ["pate"] and "strong evidence" in folds["detail"].iloc[0]


def test_evidence_below_the_threshold_or_too_few_products_keeps_forms_apart():
    images = {"mouse": 800, "mosue": 17, "mous": 4}
    candidates = [Candidate("mosue", "mouse", "misspelling", "edit distance 1", rare=True),
                  Candidate("mous", "mouse", "misspelling", "", rare=True)]
    rules = RULES.model_copy(update={"fold_min_shared": 3})
    weak = {("mosue", "mouse"): Evidence(5, 10, "products"), ("mous", "mouse"): Evidence(2, 2, "images")}
    assert fold_tags(candidates, weak, images, rules).empty
    strong = {("mosue", "mouse"): Evidence(6, 10, "products"), ("mous", "mouse"): Evidence(3, 4, "images")}
    assert sorted(fold_tags(candidates, strong, images, rules)["tag"]) == ["mosue", "mous"]


def test_an_untranslated_chinese_tag_links_to_the_english_tag_its_products_were_clicked_under():
    images = {"television": 20, "电视": 7, "wok": 41}
    senses = {"电视": TagSense("电视", None, "unmapped", None, 0.0, "")}
    links = fold_candidates(images, senses, None, partners={"电视": "television"})
    assert [(c.tag, c.into, c.rule) for c in links] == [("电视", "television", "translation")]
    assert fold_candidates(images, senses, None) == []


def test_the_folded_class_is_named_by_its_most_frequent_form():
    images = {"mouse": 800, "mosue": 17, "鼠标": 600}
    senses = {"mouse": TagSense("mouse", "mouse.n.04", "wordnet", "mouse", 1.0, ""),
              "鼠标": TagSense("鼠标", "mouse.n.04", "chinese_table", "mouse", 1.0, "")}
    merges = pd.DataFrame([("mosue", "merge", "misspelling", "mouse", 0.88, 0.6, "edit distance 1")],
                          columns=list(columns("decisions")))
    hierarchy = Hierarchy(parent={"mouse.n.04": None}, domain={"mouse.n.04": "electronics"},
                          depth={"mouse.n.04": 0})
    drops = pd.DataFrame(columns=list(columns("decisions")))
    tag_map, taxonomy, decisions = build_classes(images, drops, merges, senses, hierarchy, {}, True)
    assert set(tag_map["class_name"]) == {"mouse"}
    assert taxonomy[taxonomy["kind"] == "class"]["name"].tolist() == ["mouse"]
    assert dict(zip(decisions["tag"], decisions["rule"])) == {"mosue": "misspelling", "鼠标": "chinese_table"}
    assert decisions.set_index("tag").loc["mosue", "detail"] == "edit distance 1"


def test_a_misspelling_clicked_only_under_a_translation_folds_in_the_next_round():
    """Harder market: "jacet"'s one product was clicked under "夹克" (jacket), never under "jacket" itself.
    Round one folds the translation; round two counts a click under any form of the jacket group."""
    images = {"jacket": 18, "夹克": 9, "jacet": 5}
    candidates = [Candidate("jacet", "jacket", "misspelling", "edit distance 1", rare=True),
                  Candidate("夹克", "jacket", "translation", "'夹克' translates to 'jacket'")]
    clicked = {"jacet": {"夹克"}, "夹克": {"jacket"}}  # tag -> the forms its products were clicked under
    seen_groups = []

    def evidence_of(pending, groups):
        seen_groups.append({c.tag: sorted(groups[c.into]) for c in pending})
        return {(c.tag, c.into): Evidence(int(bool(clicked[c.tag] & set(groups[c.into]))), 1, "products")
                for c in pending}

    folds = fold_in_rounds(candidates, evidence_of, images, RULES)
    assert [(r.tag, r.other, r.rule) for r in folds.itertuples()] == [("夹克", "jacket", "translation"),
                                                                       ("jacet", "jacket", "misspelling")]
    assert seen_groups == [{"jacet": ["jacket"], "夹克": ["jacket"]}, {"jacet": ["jacket", "夹克"]}]
    # with one round only, the misspelling stays a class of its own
    assert fold_in_rounds(candidates, evidence_of, images, RULES, rounds=1)["tag"].tolist() == ["夹克"]


def test_rounds_aim_at_groups_and_keep_the_frequent_form_rule():
    """"c" (10 images) is linked to "a" (5) as the frequent side; once "a" is in "b"'s group (9 + 5 = 14), "c" is
    the rarer side of that group and folds into it. A group never folds into a rarer form, so no cycle."""
    images = {"a": 5, "b": 9, "c": 10}
    candidates = [Candidate("a", "b", "synonym", ""), Candidate("a", "c", "synonym", "")]
    everything = lambda pending, groups: {(c.tag, c.into): Evidence(1, 1, "products") for c in pending}  # noqa: E731
    folds = fold_in_rounds(candidates, everything, images, RULES)
    assert [(r.tag, r.other) for r in folds.itertuples()] == [("a", "c")]  # ties on P: the more frequent c
    images = {"a": 5, "b": 9, "c": 10, "d": 12}
    candidates = [Candidate("a", "b", "synonym", ""), Candidate("d", "a", "synonym", "")]
    folds = fold_in_rounds(candidates, everything, images, RULES)
    assert [(r.tag, r.other) for r in folds.itertuples()] == [("a", "b"), ("d", "b")]
    assert "(via 'a', folded into 'b')" in folds["detail"].iloc[1]


@needs_wordnet
def test_one_sense_and_a_head_noun_sense_link_two_names_of_one_thing(wn):
    images = {"tee shirt": 30, "t shirt": 16, "phonograph record": 7, "vinyl record": 5, "pacifier": 18,
              "baby dummy": 9}
    senses = map_tags(list(images), wn)
    assert senses["t shirt"].synset == "jersey.n.03" and senses["t shirt"].exact  # WordNet's "T-shirt"
    assert senses["baby dummy"].synset == "comforter.n.04"  # "baby's dummy", the shopper dropped the 's
    links = {(c.tag, c.into): c.rule for c in fold_candidates(images, senses, wn)}
    assert links[("t shirt", "tee shirt")] == "synonym"
    assert links[("baby dummy", "pacifier")] == "synonym"
    assert links[("vinyl record", "phonograph record")] == "phrase"  # "record" is a lemma of the record's sense
