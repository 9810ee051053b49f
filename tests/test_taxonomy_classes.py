"""Raw tags -> classes (taxonomy/classes.py): merges, drops, the tree, and the diff between runs."""

from __future__ import annotations

import pandas as pd

from tagmill.taxonomy.classes import DECISION_COLUMNS, ancestors, build_classes, diff_taxonomies, with_support
from tagmill.taxonomy.hierarchy import Hierarchy
from tagmill.taxonomy.synsets import TagSense

IMAGES = {"sofa": 50, "couch": 20, "沙发": 10, "mobile phone": 40, "cell phone": 5, "rare thing": 1,
          "armchair": 8, "xyzzy": 12, "settee": 9, "bicycle": 30, "electric bicycle": 40, "电动自行车": 6}


def _sense(tag, synset, mapped_by="wordnet", english=None, exact=True):
    return TagSense(tag, synset, mapped_by, english or tag, 1.0 if synset else 0.0, "test", exact)


SENSES = {
    "sofa": _sense("sofa", "sofa.n.01"), "couch": _sense("couch", "sofa.n.01"),
    "沙发": _sense("沙发", "sofa.n.01", "chinese_table", "sofa"),
    "mobile phone": _sense("mobile phone", "cellular_telephone.n.01"),
    "cell phone": _sense("cell phone", "cellular_telephone.n.01"),
    "armchair": _sense("armchair", "armchair.n.01"), "xyzzy": _sense("xyzzy", None, "unmapped"),
    "settee": _sense("settee", "settee.n.01"), "bicycle": _sense("bicycle", "bicycle.n.01"),
    # head-noun fallbacks: kinds of bicycle, not synonyms of it
    "electric bicycle": _sense("electric bicycle", "bicycle.n.01", exact=False),
    "电动自行车": _sense("电动自行车", "bicycle.n.01", "chinese_table", "electric bicycle", exact=False),
}
HIERARCHY = Hierarchy(
    parent={"furniture.n.01": None, "seat.n.03": "furniture.n.01", "sofa.n.01": "seat.n.03",
            "chair.n.01": "seat.n.03", "armchair.n.01": "chair.n.01", "settee.n.01": "seat.n.03",
            "electronic_equipment.n.01": None, "cellular_telephone.n.01": "electronic_equipment.n.01",
            "conveyance.n.03": None, "bicycle.n.01": "conveyance.n.03"},
    domain={"furniture.n.01": "furniture", "seat.n.03": "furniture", "sofa.n.01": "furniture",
            "chair.n.01": "furniture", "armchair.n.01": "furniture", "settee.n.01": "furniture",
            "electronic_equipment.n.01": "electronics", "cellular_telephone.n.01": "electronics",
            "conveyance.n.03": "conveyance", "bicycle.n.01": "conveyance"},
    depth={"furniture.n.01": 0, "seat.n.03": 1, "sofa.n.01": 2, "chair.n.01": 2, "armchair.n.01": 3,
           "settee.n.01": 2, "electronic_equipment.n.01": 0, "cellular_telephone.n.01": 1, "conveyance.n.03": 0,
           "bicycle.n.01": 1})
NODE_NAMES = {"furniture.n.01": "furniture", "seat.n.03": "seat", "chair.n.01": "chair",
              "electronic_equipment.n.01": "electronic equipment", "conveyance.n.03": "conveyance"}
DROPS = pd.DataFrame([("rare thing", "drop", "rare_images", None, 1.0, 3.0, "1 image < 3")],
                     columns=list(DECISION_COLUMNS))
NO_MERGES = pd.DataFrame(columns=list(DECISION_COLUMNS))


def _build(merges=NO_MERGES, merge_synonyms=True):
    return build_classes(IMAGES, DROPS, merges, SENSES, HIERARCHY, NODE_NAMES, merge_synonyms)


def test_synonyms_merge_into_the_most_supported_english_tag_and_every_tag_is_accounted_for():
    tag_map, taxonomy, merges = _build()
    by_tag = tag_map.set_index("tag")
    assert set(by_tag.index) == set(IMAGES)
    assert by_tag.loc["rare thing", "status"] == "dropped" and by_tag.loc["rare thing", "reason"] == "rare_images"
    assert pd.isna(by_tag.loc["rare thing", "class_id"])
    for tag in ("couch", "沙发"):
        assert by_tag.loc[tag, "class_name"] == "sofa" and by_tag.loc[tag, "status"] == "merged"
    assert by_tag.loc["cell phone", "class_name"] == "mobile phone"
    assert by_tag.loc["xyzzy", "status"] == "kept" and by_tag.loc["xyzzy", "mapped_by"] == "unmapped"
    assert dict(zip(merges["tag"], merges["rule"])) == {"couch": "synset_merge", "沙发": "chinese_table",
                                                         "cell phone": "synset_merge", "电动自行车": "chinese_table"}
    classes = taxonomy[taxonomy["kind"] == "class"].set_index("name")
    assert sorted(classes.index) == ["armchair", "bicycle", "electric bicycle", "mobile phone", "settee", "sofa",
                                     "xyzzy"]
    assert classes.loc["sofa", "aliases"] == ["couch", "sofa", "沙发"]
    assert classes.loc["xyzzy", "domain"] == "unmapped" and pd.isna(classes.loc["xyzzy", "parent_id"])


def test_a_head_noun_fallback_is_a_child_of_its_head_not_a_synonym():
    tag_map, taxonomy, _ = _build()
    assert tag_map.set_index("tag").loc["电动自行车", "class_name"] == "electric bicycle"
    rows = taxonomy.set_index("name")
    assert rows.loc["electric bicycle", "aliases"] == ["electric bicycle", "电动自行车"]
    assert rows.loc["electric bicycle", "synset"] is None
    assert rows.loc["electric bicycle", "parent_id"] == rows.loc["bicycle", "class_id"]
    assert rows.loc["electric bicycle", "path"] == ["conveyance", "bicycle"]
    assert rows.loc["electric bicycle", "depth"] == 2 and rows.loc["electric bicycle", "domain"] == "conveyance"


def test_the_tree_has_one_parent_per_node_paths_top_down_and_ids_in_name_order():
    _, taxonomy, _ = _build()
    assert taxonomy["class_id"].tolist() == list(range(len(taxonomy)))
    assert taxonomy["name"].tolist() == sorted(taxonomy["name"])
    rows = taxonomy.set_index("name")
    assert rows.loc["armchair", "path"] == ["furniture", "seat", "chair"]
    assert rows.loc["armchair", "depth"] == 3 and rows.loc["armchair", "domain"] == "furniture"
    assert rows.loc["chair", "kind"] == "node" and rows.loc["furniture", "parent_id"] is pd.NA
    names = dict(zip(taxonomy["class_id"], taxonomy["name"]))
    chain = ancestors(taxonomy)[int(rows.loc["armchair", "class_id"])]
    assert [names[k] for k in chain] == ["chair", "seat", "furniture"]
    support = with_support(taxonomy, {int(rows.loc["sofa", "class_id"]): 70})
    assert support.set_index("name").loc["sofa", "support"] == 70
    assert support.set_index("name").loc["chair", "support"] == 0


def test_without_synonym_merge_each_tag_is_its_own_class_and_cooccurrence_merges_apply():
    tag_map, _, _ = _build(merge_synonyms=False)
    assert tag_map.set_index("tag").loc["couch", "class_name"] == "couch"
    merges = pd.DataFrame([("settee", "merge", "cooccurrence_merge", "sofa", 0.95, 0.9, "")],
                          columns=list(DECISION_COLUMNS))
    tag_map, _, decisions = _build(merges)
    assert tag_map.set_index("tag").loc["settee", "class_name"] == "sofa"
    assert decisions.set_index("tag").loc["settee", "rule"] == "cooccurrence_merge"


def test_diff_is_empty_when_nothing_changed_and_names_merges_renames_additions_and_removals():
    _, taxonomy, _ = _build()
    assert diff_taxonomies(taxonomy, taxonomy).empty
    first = diff_taxonomies(None, taxonomy)
    assert set(first["change"]) == {"added"} and len(first) == 7
    _, separate, _ = _build(merge_synonyms=False)  # couch, cell phone, ... were classes of their own
    changes = {(r.change, r.name, r.previous) for r in diff_taxonomies(separate, taxonomy).itertuples()}
    assert ("merged", "sofa", "couch") in changes and ("merged", "mobile phone", "cell phone") in changes
    gone = taxonomy[taxonomy["name"] != "xyzzy"]
    assert {(r.change, r.name) for r in diff_taxonomies(taxonomy, gone).itertuples()} == {("removed", "xyzzy")}
    renamed = taxonomy.copy()
    renamed.loc[renamed["name"] == "armchair", "name"] = "arm chair"
    assert [(r.change, r.name, r.previous) for r in diff_taxonomies(taxonomy, renamed).itertuples()] == [
        ("renamed", "arm chair", "armchair")]
