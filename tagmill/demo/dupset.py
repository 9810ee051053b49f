"""A planted near-duplicate set for dedup tests and benchmarks: look-alike listings plus near copies of some.

The set is made of the demo's real leaves and visual signatures. The leaves picked are the plainest ones
(plain background first, then fewest shapes), so distinct listings of a leaf look alike: such pairs must not
be merged. Some of the originals get 1-3 near copies (`images.near_copy`, every kind about equally often),
which must be merged with their original. Exact byte copies are left out: a hash finds those.

    dupset = planted_duplicate_set(seed=7)
    scores = pair_scores(dupset, my_clusters)   # my_clusters[i]: the cluster id given to dupset.images[i]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tagmill.demo.images import NEAR_KINDS, TEXTURES, deal_near_kinds, design_signatures, draw_image, near_copy
from tagmill.demo.randomness import stream
from tagmill.demo.vocabulary import build_leaves


@dataclass(frozen=True)
class DupSet:
    """Images with their planted truth; all lists are aligned by image position (a seeded shuffle).

    names: "l0012-orig" for listing 12's original, "l0012-cropped" for its cropped copy.
    group: the duplicate group: the listing number, shared by an original and its copies.
    leaf: the image's leaf, as `Leaf.index` of `vocabulary.build_leaves()`.
    relation: "original" or the NEAR_KINDS value the copy was made with.
    """

    names: list[str]
    images: list[bytes]
    group: list[int]
    leaf: list[int]
    relation: list[str]


def planted_duplicate_set(seed: int, leaves: int = 12, listings_per_leaf: int = 40, copied_share: float = 0.5,
                          copies: tuple[int, int] = (1, 3), size: int = 96) -> DupSet:
    """`leaves` x `listings_per_leaf` distinct JPEG originals of `size` px, and near copies of some.

    seed: decides the leaves, the drawings, which listings are copied, and the copies; same arguments give
        the same bytes.
    leaves: how many leaves (1 to the number of demo leaves); the plainest signatures come first.
    listings_per_leaf: distinct originals per leaf (>= 1).
    copied_share: share of each leaf's originals (rounded) that get copies, in [0, 1].
    copies: (low, high) near copies per copied original, 1 <= low <= high <= len(NEAR_KINDS); the copies
        of one original are of different kinds, and the kinds are dealt so each is used about equally.
    """
    all_leaves = build_leaves()
    low, high = copies
    if not 1 <= leaves <= len(all_leaves):
        raise ValueError(f"leaves must be 1-{len(all_leaves)}, got {leaves}")
    if listings_per_leaf < 1 or not 0.0 <= copied_share <= 1.0:
        raise ValueError(f"need listings_per_leaf >= 1 and 0 <= copied_share <= 1, got {listings_per_leaf} "
                         f"and {copied_share}")
    if not 1 <= low <= high <= len(NEAR_KINDS):
        raise ValueError(f"copies must be (low, high) with 1 <= low <= high <= {len(NEAR_KINDS)}, got {copies}")
    signatures = design_signatures(all_leaves, seed)
    rng = stream(seed, "dupset")
    tiebreak = rng.permutation(len(all_leaves))
    plainest = sorted(range(len(all_leaves)), key=lambda i: (signatures[i].texture != TEXTURES.index("plain"),
                                                              signatures[i].count, tiebreak[i]))
    chosen = sorted(plainest[:leaves])
    names: list[str] = []
    images: list[bytes] = []
    group: list[int] = []
    leaf: list[int] = []
    relation: list[str] = []
    dealt: Counter[str] = Counter()
    n_copied = round(copied_share * listings_per_leaf)
    for position, leaf_index in enumerate(chosen):
        copied = set(rng.permutation(listings_per_leaf)[:n_copied].tolist())
        for j in range(listings_per_leaf):
            listing = position * listings_per_leaf + j
            original = draw_image(signatures[leaf_index], size, seed, listing)
            kinds = deal_near_kinds(int(rng.integers(low, high + 1)), rng, dealt) if j in copied else []
            dealt.update(kinds)
            made = [(kind, near_copy(original, kind, seed, listing * len(NEAR_KINDS) + NEAR_KINDS.index(kind)))
                    for kind in kinds]  # the kinds of one listing differ, so each copy has its own key
            for kind, data in [("original", original), *made]:
                names.append(f"l{listing:04d}-{'orig' if kind == 'original' else kind}")
                images.append(data)
                group.append(listing)
                leaf.append(leaf_index)
                relation.append(kind)
    order = rng.permutation(len(images)).tolist()
    return DupSet(*([values[i] for i in order] for values in (names, images, group, leaf, relation)))


def true_pairs(dupset: DupSet) -> set[tuple[int, int]]:
    """Every (i, j), i < j, of image positions in one duplicate group."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(dupset.group):
        members.setdefault(g, []).append(i)
    return {(a, b) for ids in members.values() for n, a in enumerate(ids) for b in ids[n + 1:]}


def pair_scores(dupset: DupSet, predicted_cluster: list[int]) -> dict[str, float | int]:
    """Pair precision and recall of a clustering against the planted groups.

    predicted_cluster: one cluster id per image of `dupset` (any hashable ints; equal ids = merged).
    Returns precision (correct / predicted pairs; 1.0 when none predicted), recall (correct / true pairs;
    1.0 when there are none), and the counts true_pairs, predicted_pairs, correct_pairs, where a pair is
    i < j in one cluster (predicted) or one group (true).
    """
    if len(predicted_cluster) != len(dupset.group):
        raise ValueError(f"predicted_cluster has {len(predicted_cluster)} ids for {len(dupset.group)} images; "
                         "give one cluster id per image, in the order of dupset.images")
    true = _pairs(Counter(dupset.group))
    predicted = _pairs(Counter(predicted_cluster))
    correct = _pairs(Counter(zip(predicted_cluster, dupset.group)))
    return {"precision": correct / predicted if predicted else 1.0, "recall": correct / true if true else 1.0,
            "true_pairs": true, "predicted_pairs": predicted, "correct_pairs": correct}


def _pairs(sizes: Counter) -> int:
    return sum(n * (n - 1) // 2 for n in sizes.values())
