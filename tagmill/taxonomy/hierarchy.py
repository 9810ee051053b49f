"""The class tree: WordNet hypernym paths cut at the configured domain roots, one parent per node.

58.com (../shared/seeds/000_f75818d8242f0064.txt, "Data construction") ends with ~720 classes in 17 domains;
OLX (../shared/seeds/002_9f73141dd03e1188.txt) keeps a 5-level category hierarchy and reports accuracy after
collapsing predictions to parent levels. Here the hierarchy comes from WordNet: each class synset (from
`synsets.map_tags`) hangs under the hypernyms on one chosen path, the path is cut at a domain root (the top of
a domain), and nodes that only relay a single child are collapsed away so the tree holds branching points.

Rules (the same in `hypernym_path` and `build_hierarchy`):
- the domain root of one hypernym path is the deepest domain root on it (the most specific: a guitar's path
  passes device.n.01 and then musical_instrument.n.01; musical_instrument wins);
- among a synset's paths (WordNet allows several hypernyms), paths with a domain root beat paths without one;
  among those, the root that comes first in `domain_roots` wins, then the shortest path, then the
  lexicographically smallest sequence of synset names (deterministic);
- a domained path is cut so that it starts at its domain root; an undomained path ("other") keeps at most its
  last UNDOMAINED_KEEP nodes, so that "other" does not become a deep chain down from entity.n.01.

Because the ordering compares whole paths, the chosen path of a node on another node's chosen path is exactly
the part of that path above it: parents agree wherever a node is reached from, and every node gets one parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

UNDOMAINED_KEEP = 4
OTHER = "other"


@dataclass(frozen=True)
class Hierarchy:
    """A forest over synset names.

    parent: synset -> parent synset; None for a top node (a domain root, or the top of an undomained path).
    domain: synset -> domain name, the domain root's head word as configured ("furniture.n.01" -> "furniture",
    "toy.n.01" -> "toy" although WordNet names that synset plaything.n.01); "other" when no domain root is on
    its path. depth: 0 at a top node, parent's depth + 1 below.
    """

    parent: dict[str, str | None]
    domain: dict[str, str]
    depth: dict[str, int]

    def children(self) -> dict[str, list[str]]:
        """synset -> its children, sorted (top nodes under the key None are left out)."""
        kids: dict[str, list[str]] = {node: [] for node in self.parent}
        for node, parent in self.parent.items():
            if parent is not None:
                kids[parent].append(node)
        return {node: sorted(children) for node, children in kids.items()}


def resolve_domain_roots(domain_roots: Sequence[str], wn) -> dict[str, str]:
    """{canonical synset name: domain name} in priority order.

    A root may be written by any of its lemmas ("toy.n.01" is WordNet's plaything.n.01); the hierarchy uses the
    canonical name and the domain is named after the head word as written ("toy.n.01" -> "toy",
    "home_appliance.n.01" -> "home_appliance"). Raises ValueError naming a root that is not a noun synset.
    """
    from nltk.corpus.reader.wordnet import WordNetError

    resolved: dict[str, str] = {}
    for root in domain_roots:
        try:
            synset = wn.synset(root)
        except (WordNetError, ValueError) as error:
            raise ValueError(f"domain root {root!r} is not a WordNet synset ({error}). Fix: use a noun synset "
                             "name such as 'furniture.n.01' (check with wn.synsets(word, pos='n'))") from None
        if synset.pos() != "n":
            raise ValueError(f"domain root {root!r} is not a noun synset. Fix: use a name ending in .n.NN")
        resolved.setdefault(synset.name(), root.split(".")[0])
    return resolved


def hypernym_path(synset: str, wn, domain_roots: Sequence[str]) -> list[str]:
    """The chosen hypernym path of `synset`, top first and `synset` last (see the module's rules).

    Inputs: a synset name ("sofa.n.01"), a WordNet reader, the domain roots in priority order. Output: synset
    names, starting at the domain root for a domained synset, else the last UNDOMAINED_KEEP nodes of the path.
    """
    return list(_choose(synset, wn, tuple(resolve_domain_roots(domain_roots, wn)))[0])


def build_hierarchy(synsets: Iterable[str], wn, domain_roots: Sequence[str]) -> Hierarchy:
    """The forest over the given synsets and the nodes on their chosen paths, single-child relays collapsed.

    Inputs: class synset names (duplicates ignored), a WordNet reader, the domain roots in priority order.
    Output: a Hierarchy holding every given synset. Each node's parent is the node before it on its own chosen
    path; for an undomained node whose parent lies beyond the kept UNDOMAINED_KEEP nodes of every given
    synset's path, the node is a top node. Parents are direct WordNet hypernyms, so the maximum depth from
    entity.n.01 strictly decreases towards the top and there are no cycles. Then every node that is neither
    given nor a domain root and has exactly one child is removed (its child takes its parent), so the tree
    keeps the classes, the domain roots and the points where classes branch.
    """
    names = resolve_domain_roots(domain_roots, wn)
    roots = tuple(names)
    given = [wn.synset(name).name() for name in dict.fromkeys(synsets)]
    chosen: dict[str, tuple[tuple[str, ...], str | None]] = {}

    def choose(name: str) -> tuple[tuple[str, ...], str | None]:
        if name not in chosen:
            chosen[name] = _choose(name, wn, roots)
        return chosen[name]

    nodes: set[str] = set()
    for name in given:
        nodes.update(choose(name)[0])
    parent: dict[str, str | None] = {}
    domain: dict[str, str] = {}
    pending = sorted(nodes)
    while pending:  # a domained node's parent is always on its own cut path: add it (normally already there)
        name = pending.pop()
        path, root = choose(name)
        up = path[-2] if len(path) > 1 else None
        if up is not None and up not in nodes:
            if root is None:
                up = None
            else:
                nodes.add(up)
                pending.append(up)
        parent[name] = up
        domain[name] = names[root] if root else OTHER

    keep = set(given) | set(roots)
    _collapse(parent, keep)
    domain = {name: domain[name] for name in parent}
    depth: dict[str, int] = {}
    for name in parent:
        _depth(name, parent, depth)
    return Hierarchy(parent=dict(sorted(parent.items())), domain=dict(sorted(domain.items())),
                     depth=dict(sorted(depth.items())))


def _choose(synset: str, wn, roots: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """(the chosen cut path, its domain root or None)."""
    priority = {root: i for i, root in enumerate(roots)}
    best_key, best = None, ((synset,), None)
    for path in wn.synset(synset).hypernym_paths():
        names = tuple(s.name() for s in path)
        at = max((i for i, name in enumerate(names) if name in priority), default=None)
        root = names[at] if at is not None else None
        key = (0 if root else 1, priority.get(root, 0), len(names), names)
        if best_key is None or key < best_key:
            cut = names[at:] if at is not None else names[-UNDOMAINED_KEEP:]
            best_key, best = key, (cut, root)
    return best


def _collapse(parent: dict[str, str | None], keep: set[str]) -> None:
    """Remove nodes outside `keep` that have exactly one child; the child takes the removed node's parent."""
    children: dict[str, list[str]] = {name: [] for name in parent}
    for name, up in parent.items():
        if up is not None:
            children[up].append(name)
    for name in sorted(parent):
        if name in keep or len(children[name]) != 1:
            continue
        (child,) = children.pop(name)
        up = parent.pop(name)
        parent[child] = up
        if up is not None:
            children[up] = [child if c == name else c for c in children[up]]


def _depth(name: str, parent: dict[str, str | None], depth: dict[str, int]) -> int:
    chain = []
    while name not in depth:
        up = parent[name]
        if up is None:
            depth[name] = 0
            break
        chain.append(name)
        name = up
    base = depth[name]
    for offset, node in enumerate(reversed(chain), start=1):
        depth[node] = base + offset
    return depth[chain[0]] if chain else base
