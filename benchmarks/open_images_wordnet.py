"""Benchmark: Open Images display names mapped to WordNet, and Open Images' class hierarchy against WordNet's.

On the real label files in ../shared/realdata/open_images_labels/ (see its README.txt), prints:
  1. the share of the 19,994 oidv6 display names that `map_tags` maps to a noun synset, split into exact
     phrase and head-noun fallback, with the time taken (one process, one core);
  2. for the 600-class boxable hierarchy (bbox_labels_600_hierarchy.json): for each parent->child edge
     whose two ends both map (and map to different synsets), whether the parent's synset is a WordNet
     hypernym ancestor of the child's, and whether it is an ancestor in the tree `build_hierarchy` makes;
     for each sibling group (a parent's mapped children), whether all siblings sit under the parent's synset
     and whether they land in one domain; a few disagreements as examples.

    python benchmarks/open_images_wordnet.py [--realdata ../shared/realdata] [--wordnet-dir /usr/share/wordnet]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from tagmill.taxonomy.hierarchy import build_hierarchy
from tagmill.taxonomy.synsets import DEFAULT_DOMAIN_ROOTS, map_tags
from tagmill.wordnet import DEFAULT_WORDNET_DIR, load_wordnet

REPO = Path(__file__).resolve().parents[1]
ROOT_MID = "/m/0bl9f"  # "Entity", the hierarchy's root; not a class


def read_names(path: Path) -> dict[str, str]:
    """{MID: display name} from a "MID,name" CSV, with or without the "label,class" header."""
    with open(path, encoding="utf-8", newline="") as handle:
        return {row[0]: row[1] for row in csv.reader(handle) if len(row) >= 2 and row[0].startswith("/")}


def hierarchy_edges(node: dict, kind: str = "Subcategory") -> list[tuple[str, str, str]]:
    """Distinct (parent MID, child MID, "Subcategory" | "Part") edges of the nested JSON, in first-seen order."""
    edges: dict[tuple[str, str, str], None] = {}
    stack = [node]
    while stack:
        current = stack.pop()
        for relation in ("Subcategory", "Part"):
            for child in current.get(relation, []):
                edges[(current["LabelName"], child["LabelName"], relation)] = None
                stack.append(child)
    return list(edges)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", default=str(REPO.parent / "shared" / "realdata"),
                        help="folder holding open_images_labels/ (default ../shared/realdata from the repo root)")
    parser.add_argument("--wordnet-dir", default=DEFAULT_WORDNET_DIR)
    parser.add_argument("--examples", type=int, default=6, help="disagreements to print per kind")
    args = parser.parse_args(argv)
    folder = Path(args.realdata) / "open_images_labels"
    needed = [folder / "oidv6-class-descriptions.csv", folder / "class-descriptions-boxable.csv",
              folder / "bbox_labels_600_hierarchy.json"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        print(f"Open Images label files not found: {', '.join(missing)}. Fix: pass --realdata pointing at the "
              "folder that holds open_images_labels/", file=sys.stderr)
        return 2

    wn = load_wordnet(args.wordnet_dir)
    # 1. coverage of the image-level vocabulary
    oid = read_names(needed[0])
    names = list(dict.fromkeys(oid.values()))
    started = time.perf_counter()
    senses = map_tags(names, wn)
    seconds = time.perf_counter() - started
    mapped = [s for s in senses.values() if s.synset]
    fallback = sum("head-noun fallback" in s.detail for s in mapped)
    qualifier = sum("qualifier fallback" in s.detail for s in mapped)
    exact = len(mapped) - fallback - qualifier
    print(f"oidv6 display names: {len(oid):,} MIDs, {len(names):,} distinct names; mapped {len(mapped):,} "
          f"= {len(mapped) / len(names):.1%} (exact phrase {exact:,} = {exact / len(names):.1%}, head-noun "
          f"fallback {fallback:,} = {fallback / len(names):.1%}, qualifier fallback {qualifier:,}); unmapped "
          f"{len(names) - len(mapped):,}; {seconds:.1f} s ({seconds / len(names) * 1e3:.2f} ms/name)")
    synsets = {s.synset for s in mapped}
    whole = [s for s in mapped if s.exact]  # only names whose whole phrase is the synset merge (taxonomy.classes)
    print(f"distinct synsets: {len(synsets):,}; of the {len(whole):,} names mapped by their whole phrase, "
          f"{len(whole) - len({s.synset for s in whole}):,} merge into another name's synset (synonyms), the "
          f"head-noun fallbacks become children of their head's class")

    # 2. the boxable hierarchy against WordNet's
    boxable = read_names(needed[1])
    box_senses = map_tags(boxable.values(), wn)
    synset_of = {mid: box_senses[name].synset for mid, name in boxable.items() if box_senses[name].synset}
    print(f"boxable classes: {len(boxable)}; mapped {len(synset_of)} = {len(synset_of) / len(boxable):.1%}")
    tree = build_hierarchy(synset_of.values(), wn, DEFAULT_DOMAIN_ROOTS)
    closure = {s: {h.name() for path in wn.synset(s).hypernym_paths() for h in path} for s in synset_of.values()}

    def tree_ancestors(s: str) -> set[str]:
        found, up = set(), tree.parent.get(s)
        while up is not None:
            found.add(up)
            up = tree.parent[up]
        return found

    with open(needed[2], encoding="utf-8") as handle:
        edges = hierarchy_edges(json.load(handle))
    for relation in ("Subcategory", "Part"):
        rel_edges = [(p, c) for p, c, r in edges if r == relation and p != ROOT_MID]
        both = [(p, c) for p, c in rel_edges if p in synset_of and c in synset_of]
        same = [(p, c) for p, c in both if synset_of[p] == synset_of[c]]
        distinct = [(p, c) for p, c in both if synset_of[p] != synset_of[c]]
        agree = [(p, c) for p, c in distinct if synset_of[p] in closure[synset_of[c]]]
        in_tree = [(p, c) for p, c in distinct if synset_of[p] in tree_ancestors(synset_of[c])]
        if not distinct:
            continue
        print(f"{relation} edges (root excluded): {len(rel_edges)}; both ends mapped {len(both)}; same synset "
              f"{len(same)}; of the {len(distinct)} others, parent is a WordNet ancestor of child: {len(agree)} "
              f"= {len(agree) / len(distinct):.1%}; an ancestor in the built tree: {len(in_tree)} = "
              f"{len(in_tree) / len(distinct):.1%}")
        if relation == "Subcategory":
            disagree = [(p, c) for p, c in distinct if (p, c) not in set(agree)]
            for p, c in disagree[:args.examples]:
                print(f"  disagree: {boxable[p]} ({synset_of[p]}) -> {boxable[c]} ({synset_of[c]}); WordNet "
                      f"puts {synset_of[c]} under {tree.domain[synset_of[c]]}")
            groups: dict[str, list[str]] = {}
            for p, c in distinct:
                groups.setdefault(p, []).append(c)
            groups = {p: cs for p, cs in groups.items() if len(cs) >= 2}
            all_under = [p for p, cs in groups.items() if all(synset_of[p] in closure[synset_of[c]] for c in cs)]
            one_domain = [p for p, cs in groups.items() if len({tree.domain[synset_of[c]] for c in cs}) == 1]
            print(f"sibling groups (>= 2 mapped children): {len(groups)}; all siblings under the parent's "
                  f"synset: {len(all_under)} = {len(all_under) / len(groups):.1%}; all siblings in one "
                  f"domain: {len(one_domain)} = {len(one_domain) / len(groups):.1%}")
            split = [p for p in groups if p not in set(one_domain)]
            for p in split[:args.examples]:
                domains = sorted({tree.domain[synset_of[c]] for c in groups[p]})
                print(f"  split: {boxable[p]} ({len(groups[p])} children) spans {', '.join(domains)}")
    domains = sorted({tree.domain[s] for s in synset_of.values()})
    print(f"boxable classes' domains: {len(domains)} ({', '.join(domains)}); tree nodes {len(tree.parent)}, "
          f"max depth {max(tree.depth.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
