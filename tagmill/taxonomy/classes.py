"""Raw tags -> classes: the decisions of the filters and the WordNet mapping joined into one label set.

Works on per-tag data (tens of thousands of rows at most, never per image), in the driver: the statistics,
drops and co-occurrence decisions come from Spark (taxonomy.stats, taxonomy.cooccurrence), the senses and the
hierarchy from WordNet (taxonomy.synsets, taxonomy.hierarchy). 58.com 3: rare tags dropped, co-occurrence
pruning, WordNet merges, ~720 classes in 17 domains; Tencent ML-Images: WordNet-keyed classes with their
hypernym hierarchy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from tagmill.taxonomy.hierarchy import Hierarchy
from tagmill.taxonomy.synsets import TagSense, is_chinese
from tagmill.taxonomy.tables import columns

DECISION_COLUMNS = columns("decisions")
"""The decisions table's columns: one row per dropped, merged or re-parented tag, with its numbers."""
TAG_MAP_COLUMNS = columns("tag_map")
TAXONOMY_COLUMNS = columns("taxonomy")
DIFF_COLUMNS = columns("diff")
UNMAPPED_DOMAIN = "unmapped"
"""Domain of the classes WordNet and the Chinese table did not map: kept, and listed apart in the report."""

def build_classes(images: Mapping[str, int], drops: pd.DataFrame, merges: pd.DataFrame,
                  senses: Mapping[str, TagSense], hierarchy: Hierarchy, node_names: Mapping[str, str],
                  merge_synonyms: bool) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(tag_map, taxonomy, merge decisions) from the per-tag decisions.

    images: every raw tag -> its image count; drops: DECISION_COLUMNS rows of dropped tags (one rule per tag);
    merges: decisions-table rows of the merges to apply (tag, rule, other, value, detail): co-occurrence merges
    and the folds of taxonomy.canonical; senses: kept tag -> its WordNet sense (tags missing
    here count as unmapped); hierarchy: over the kept tags' synsets; node_names: synset -> display name of
    hierarchy nodes no tag maps to (e.g. "seat" for seat.n.03).

    Kept tags with one synset (merge_synonyms) or joined by a merge form one class named by its English
    tag on most images (ties: the smaller name; a Chinese tag when it has none). A tag mapped through a
    head-noun fallback is a kind of that synset: it joins only tags of the same phrase, and its class hangs
    one level below the synset's row. Every hierarchy synset is a taxonomy row: kind "class" when tags map
    to it, "node" otherwise; unmapped tags are classes of their own in the "unmapped" domain.
    The support column is left 0 for the caller to fill from the images (see `with_support`).
    """
    drop_rule = dict(zip(drops["tag"], drops["rule"]))  # one rule per dropped tag
    kept = sorted(t for t in images if t not in drop_rule)
    position = {t: k for k, t in enumerate(kept)}
    links: list[tuple[int, int]] = []  # pairs of kept tags (positions) that share a class

    def join(a: str, b: str) -> None:
        links.append((position[a], position[b]))

    joined_by: dict[str, tuple[str, float, str]] = {}  # tag -> (rule, value, detail) of the merge that joined it
    if merge_synonyms:
        # one class per synset the whole phrase names; a head-noun fallback ("electric bicycle" ->
        # bicycle.n.01) is a kind of that synset, not a synonym: it joins only tags of the same phrase
        # ("电动自行车" through the glossary)
        by_key: dict[tuple[str, str], str] = {}
        for tag in kept:
            sense = senses.get(tag)
            if sense and sense.synset:
                key = ("synset", sense.synset) if sense.exact else ("phrase", " ".join(sense.english.lower().split()))
                join(tag, by_key.setdefault(key, tag))
    for tag, rule, other, value, detail in merges[["tag", "rule", "other", "value", "detail"]].itertuples(index=False):
        if tag in position and other in position:
            join(tag, other)
            if rule == "cooccurrence_merge":
                detail = f"always seen with '{other}' (min conditional {float(value):.3f})"
            joined_by[tag] = (rule, float(value), detail)
    # a class per connected component of the joins, keyed by its smallest tag (the first in sorted `kept`)
    first: list[int] = []
    if kept:
        pairs = np.array(links, np.int64).reshape(-1, 2)
        graph = coo_array((np.ones(len(pairs), bool), (pairs[:, 0], pairs[:, 1])), shape=(len(kept), len(kept)))
        label = connected_components(graph, directed=False)[1]
        first = np.unique(label, return_index=True)[1][label].tolist()
    groups: dict[str, list[str]] = {}
    for tag, smallest in zip(kept, first):
        groups.setdefault(kept[smallest], []).append(tag)

    def class_name(members: list[str]) -> str:  # a raw tag, so class names never collide
        english = [t for t in members if not is_chinese(t)]
        return min(english or members, key=lambda t: (-images[t], t))

    rows, class_of, decisions = [], {}, []
    synset_class: dict[str, dict] = {}
    for members in groups.values():
        name = class_name(members)
        # the synset of the most frequent member that has one: the class is what its name means
        by_images = sorted(members, key=lambda t: (-images[t], t))
        member_senses = [senses[t] for t in by_images if t in senses and senses[t].synset]
        exact = [s.synset for s in member_senses if s.exact]
        under = [s.synset for s in member_senses if not s.exact]
        row = {"name": name, "kind": "class", "synset": exact[0] if exact else None, "aliases": sorted(members),
               "under": None if exact or not under else under[0]}
        rows.append(row)
        if row["synset"]:
            synset_class[row["synset"]] = row
        for tag in members:
            class_of[tag] = row
            if tag == name:
                continue
            sense = senses.get(tag)
            if tag in joined_by:
                rule, value, detail = joined_by[tag]
            elif sense and sense.mapped_by == "chinese_table":
                rule, value, detail = "chinese_table", sense.score, f"'{tag}' -> '{sense.english}' -> {sense.synset}"
            else:
                rule, value, detail = ("synset_merge", sense.score if sense else 0.0,
                                       f"'{tag}' and '{name}' share {sense.synset if sense else None}: "
                                       f"{sense.detail if sense else ''}")
            decisions.append({"tag": tag, "action": "merge", "rule": rule, "other": name, "value": value,
                              "threshold": None, "detail": detail})
    for synset in hierarchy.parent:
        if synset not in synset_class:
            row = {"name": node_names.get(synset, synset), "kind": "node", "synset": synset, "aliases": [],
                   "under": None}
            rows.append(row)
            synset_class[synset] = row
    _unique_names(rows)
    rows.sort(key=lambda r: (r["name"], r["synset"] or ""))
    for k, row in enumerate(rows):
        row["class_id"] = k
    def place(synset: str) -> tuple[int | None, str, int, list[str]]:
        """parent_id, domain, depth and path of the row that owns `synset`."""
        up = hierarchy.parent[synset]
        path, node = [], up
        while node:
            path.append(synset_class[node]["name"])
            node = hierarchy.parent[node]
        return (synset_class[up]["class_id"] if up else None, hierarchy.domain[synset], hierarchy.depth[synset],
                path[::-1])

    for row in rows:
        if row["synset"] in hierarchy.parent:
            row["parent_id"], row["domain"], row["depth"], row["path"] = place(row["synset"])
        elif row["under"] in hierarchy.parent:  # a kind of its head noun's synset: one level below it
            head = synset_class[row["under"]]
            _, domain, depth, path = place(row["under"])
            row["parent_id"], row["domain"], row["depth"], row["path"] = (head["class_id"], domain, depth + 1,
                                                                          [*path, head["name"]])
        else:
            row["parent_id"], row["domain"], row["depth"], row["path"] = None, UNMAPPED_DOMAIN, 0, []
        row["support"] = 0
    taxonomy = pd.DataFrame(rows, columns=list(TAXONOMY_COLUMNS)).astype({"parent_id": "Int64"})
    merge_rule = {d["tag"]: d["rule"] for d in decisions}  # each merged tag once
    map_rows = []
    for tag in sorted(images):
        sense = senses.get(tag)
        synset, mapped_by = (sense.synset, sense.mapped_by) if sense else (None, None)
        if tag in drop_rule:
            map_rows.append((tag, None, None, "dropped", drop_rule[tag], synset, mapped_by))
            continue
        row = class_of[tag]
        status = "kept" if row["name"] == tag else "merged"
        reason = "kept" if status == "kept" else merge_rule[tag]
        map_rows.append((tag, row["class_id"], row["name"], status, reason, synset, mapped_by))
    tag_map = pd.DataFrame(map_rows, columns=list(TAG_MAP_COLUMNS)).astype({"class_id": "Int64"})
    return tag_map, taxonomy, pd.DataFrame(decisions, columns=list(DECISION_COLUMNS))


def _unique_names(rows: list[dict]) -> None:
    """A node named like another row (the lemma "seat" of seat.n.03 next to a tag "seat" of seat.n.01)
    gets its synset appended, so names identify rows."""
    seen: dict[str, int] = {}
    for row in rows:
        seen[row["name"]] = seen.get(row["name"], 0) + 1
    for row in rows:
        if seen[row["name"]] > 1 and row["kind"] == "node":
            row["name"] = f"{row['name']} ({row['synset']})"


def with_support(taxonomy: pd.DataFrame, support: Mapping[int, int]) -> pd.DataFrame:
    """The taxonomy with its support column set from class_id -> images (missing ids: 0)."""
    out = taxonomy.copy()
    out["support"] = [int(support.get(int(k), 0)) for k in out["class_id"]]
    return out


def ancestors(taxonomy: pd.DataFrame) -> dict[int, list[int]]:
    """class_id -> the class ids above it, nearest first."""
    parent = {int(k): (None if pd.isna(p) else int(p)) for k, p in zip(taxonomy["class_id"], taxonomy["parent_id"])}
    out = {}
    for k in parent:
        chain, node = [], parent[k]
        while node is not None:
            chain.append(node)
            node = parent[node]
        out[k] = chain
    return out


def diff_taxonomies(previous: pd.DataFrame | None, current: pd.DataFrame) -> pd.DataFrame:
    """What changed between two runs' classes (kind "class"). An old class that is gone but whose name is now
    an alias of a class, or whose synset now carries another name, leads to that class: "renamed" when that
    class is new (the first old class leading to it), "merged" otherwise; other old names were "removed",
    and new names no old class leads to were "added". Empty when nothing changed."""
    if previous is None:
        previous = pd.DataFrame(columns=list(TAXONOMY_COLUMNS))
    old = previous[previous["kind"] == "class"]
    new = current[current["kind"] == "class"]
    old_names, new_names = set(old["name"]), set(new["name"])
    alias_of = {alias: name for name, aliases in zip(new["name"], new["aliases"]) for alias in aliases}
    name_of_synset = {s: n for s, n in zip(new["synset"], new["name"]) if s}
    rows, reached = [], set()
    for name, synset in sorted(zip(old["name"], old["synset"]), key=lambda r: r[0]):
        if name in new_names:
            continue
        target = alias_of.get(name) or (name_of_synset.get(synset) if synset else None)
        if target is None:
            rows.append(("removed", name, None, "no tag maps to it any more"))
        elif target in old_names or target in reached:
            rows.append(("merged", target, name, f"'{name}' is now part of '{target}'"))
        else:
            rows.append(("renamed", target, name, f"'{name}' is now named '{target}'"))
            reached.add(target)
    for name in sorted(new_names - old_names - reached):
        rows.append(("added", name, None, "a new class"))
    return pd.DataFrame(sorted(rows, key=lambda r: (r[0], r[1], r[2] or "")), columns=list(DIFF_COLUMNS))
