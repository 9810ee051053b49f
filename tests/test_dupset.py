"""Near copies (`images.near_copy`, one check per kind) and the planted near-duplicate set (`demo.dupset`)."""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tagmill.demo.dupset import DupSet, pair_scores, planted_duplicate_set, true_pairs
from tagmill.demo.images import NEAR_KINDS, TEXTURES, deal_near_kinds, design_signatures, draw_image, near_copy
from tagmill.demo.randomness import stream
from tagmill.demo.vocabulary import build_leaves

SEED = 5
KEYS = range(24)


@pytest.fixture(scope="module")
def originals() -> dict[int, list[tuple[bytes, bool]]]:
    """By side (96 and 32 px): (JPEG, background is plain) for one drawing per key, over many leaves."""
    signatures = design_signatures(build_leaves(), SEED)
    picks = [signatures[(7 * key) % len(signatures)] for key in KEYS]
    return {side: [(draw_image(sig, side, SEED, key), TEXTURES[sig.texture] == "plain")
                   for key, sig in zip(KEYS, picks)] for side in (96, 32)}


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)


def size_of(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


# --- near_copy --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", NEAR_KINDS)
def test_near_copy_is_deterministic_and_never_the_original(originals, kind):
    for side in (96, 32):
        for key, (original, _) in zip(KEYS, originals[side]):
            copy = near_copy(original, kind, SEED, key)
            assert copy != original and copy == near_copy(original, kind, SEED, key)
            assert Image.open(io.BytesIO(copy)).format == "JPEG"
        first = originals[side][0][0]
        assert len({near_copy(first, kind, SEED, key) for key in KEYS}) > 1


def test_near_copy_rejects_an_unknown_kind(originals):
    with pytest.raises(ValueError, match="unknown near-copy kind 'mirrored'; use one of resized"):
        near_copy(originals[96][0][0], "mirrored", SEED, 0)


def test_resized_cropped_padded_and_rotated_sizes(originals):
    for side in (96, 32):
        for key, (original, _) in zip(KEYS, originals[side]):
            w, h = size_of(near_copy(original, "resized", SEED, key))
            assert w == h and 0.5 * side - 1 <= w <= 0.9 * side + 1
            w, h = size_of(near_copy(original, "cropped", SEED, key))
            assert w == h and 0.90 * side - 1 <= w <= 0.97 * side + 1
            w, h = size_of(near_copy(original, "padded", SEED, key))
            grown = (w - side, h - side)
            assert min(grown) >= 0 and max(grown) >= 1 and max(grown) <= round(0.24 * side) + 1
            w, h = size_of(near_copy(original, "rotated", SEED, key))
            # largest centred square inside a square turned 1-5 degrees: side / (cos + sin), less 2 px
            assert w == h and side / (np.cos(np.radians(5)) + np.sin(np.radians(5))) - 3 <= w < side - 1


def test_padding_is_a_solid_border(originals):
    for key, (original, _) in zip(KEYS, originals[96]):
        copy = pixels(near_copy(original, "padded", SEED, key))
        h, w, _ = copy.shape
        edges = [copy[:, 0], copy[0], copy[:, w - 1], copy[h - 1]]  # left, top, right, bottom
        colours = [np.median(e, axis=0) for e in edges if np.abs(e - np.median(e, axis=0)).max() <= 12]
        assert any(np.abs(c - c.mean()).max() <= 6 for c in colours), key  # a white, black or grey edge


def test_rotated_copies_show_no_filled_corner(originals):
    """On plain backgrounds, each corner of the rotated copy is background, never the black rotate fill."""
    plain = [(key, original) for key, (original, is_plain) in zip(KEYS, originals[96]) if is_plain]
    assert len(plain) >= 3
    for key, original in plain:
        before, after = pixels(original), pixels(near_copy(original, "rotated", SEED, key))
        n, m = after.shape[0], (96 - after.shape[0]) // 2
        region = before[m:m + n, m:m + n]
        for y, x in ((0, 0), (0, n - 2), (n - 2, 0), (n - 2, n - 2)):
            assert np.abs(after[y:y + 2, x:x + 2] - region[y:y + 2, x:x + 2]).mean() < 40, (key, y, x)


def test_brightness_changes_the_mean_by_5_to_20_percent_either_way(originals):
    ratios = []
    for side in (96, 32):
        for key, (original, _) in zip(KEYS, originals[side]):
            ratio = pixels(near_copy(original, "brightness", SEED, key)).mean() / pixels(original).mean()
            assert 0.79 <= ratio <= 0.96 or 1.02 <= ratio <= 1.21, (side, key, ratio)
            ratios.append(ratio)
    assert min(ratios) < 1 < max(ratios)


def test_reencoded_keeps_size_and_looks_the_same(originals):
    for key, (original, _) in zip(KEYS, originals[96]):
        copy = near_copy(original, "reencoded", SEED, key)
        assert size_of(copy) == (96, 96)
        before, after = pixels(original), pixels(copy)
        assert np.abs(after - before).mean() < 12  # quality 30 smooths away much of the sensor grain
        assert np.abs(after.mean(axis=(0, 1)) - before.mean(axis=(0, 1))).max() < 3


def test_overlay_is_small_text_on_the_unchanged_image(originals):
    for side in (96, 32):
        changed = []
        for key, (original, _) in zip(KEYS, originals[side]):
            copy = near_copy(original, "overlay", SEED, key)
            assert size_of(copy) == (side, side)
            changed.append((np.abs(pixels(copy) - pixels(original)).max(axis=2) > 40).mean())
        assert min(changed) > 0.002 and max(changed) < 0.08, (side, changed)


@given(st.lists(st.integers(0, 10), max_size=12), st.integers(0, 2**32 - 1))
def test_dealt_kinds_stay_balanced_and_differ_within_a_deal(counts, seed):
    rng, used = stream(seed, "deal"), Counter()
    for count in counts:
        kinds = deal_near_kinds(count, rng, used)
        assert len(kinds) == count and set(kinds) <= set(NEAR_KINDS)
        assert len(set(kinds)) == min(count, len(NEAR_KINDS))
        used.update(kinds)
        totals = [used[k] for k in NEAR_KINDS]
        assert max(totals) - min(totals) <= 1


# --- the planted set --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dupset() -> DupSet:
    return planted_duplicate_set(SEED, leaves=4, listings_per_leaf=20, size=64)


def test_same_arguments_give_the_same_bytes(dupset):
    again = planted_duplicate_set(SEED, leaves=4, listings_per_leaf=20, size=64)
    assert again == dupset
    other = planted_duplicate_set(SEED + 1, leaves=4, listings_per_leaf=20, size=64)
    assert other.images != dupset.images


def test_groups_names_leaves_and_kinds(dupset):
    n = len(dupset.images)
    assert len(dupset.names) == len(dupset.group) == len(dupset.leaf) == len(dupset.relation) == n
    assert len(set(dupset.names)) == n
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(dupset.group):
        members[g].append(i)
    assert len(members) == 4 * 20 and len(set(dupset.leaf)) == 4
    copied = [ids for ids in members.values() if len(ids) > 1]
    assert len(copied) == 4 * 10
    for g, ids in members.items():
        relations = [dupset.relation[i] for i in ids]
        assert relations.count("original") == 1 and len(set(relations)) == len(relations) <= 4
        assert len({dupset.leaf[i] for i in ids}) == 1
        for i in ids:
            suffix = "orig" if dupset.relation[i] == "original" else dupset.relation[i]
            assert dupset.names[i] == f"l{g:04d}-{suffix}"
    kinds = Counter(r for r in dupset.relation if r != "original")
    assert set(kinds) == set(NEAR_KINDS) and max(kinds.values()) - min(kinds.values()) <= 1
    signatures = design_signatures(build_leaves(), SEED)
    assert all(TEXTURES[signatures[leaf].texture] == "plain" for leaf in set(dupset.leaf))


def test_copies_differ_from_their_original_as_their_kind_says(dupset):
    original_of = {g: dupset.images[i] for i, g in enumerate(dupset.group) if dupset.relation[i] == "original"}
    assert len(set(original_of.values())) == len(original_of)  # distinct listings never share bytes
    for data, g, kind in zip(dupset.images, dupset.group, dupset.relation):
        w, h = size_of(data)
        if kind == "original":
            assert (w, h) == (64, 64)
            continue
        assert data != original_of[g]
        if kind in ("resized", "cropped", "rotated"):
            assert w < 64 and h < 64
        elif kind == "padded":
            assert w >= 64 and h >= 64 and w + h > 128
        else:
            assert (w, h) == (64, 64)


def test_true_pairs_are_the_pairs_within_groups():
    example = DupSet(["a", "b", "c", "d", "e"], [b""] * 5, [3, 3, 1, 3, 1], [0] * 5, ["original"] * 5)
    assert true_pairs(example) == {(0, 1), (0, 3), (1, 3), (2, 4)}


def test_pair_scores_on_a_hand_made_example():
    example = DupSet(list("abcd"), [b""] * 4, [0, 0, 1, 2], [0] * 4, ["original", "resized", "original", "original"])
    assert pair_scores(example, [0, 0, 0, 1]) == {"precision": 1 / 3, "recall": 1.0, "true_pairs": 1,
                                                  "predicted_pairs": 3, "correct_pairs": 1}
    assert pair_scores(example, [5, 6, 7, 8]) == {"precision": 1.0, "recall": 0.0, "true_pairs": 1,
                                                  "predicted_pairs": 0, "correct_pairs": 0}
    with pytest.raises(ValueError, match="3 ids for 4 images"):
        pair_scores(example, [0, 0, 1])


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=30))
def test_pair_scores_count_the_same_pairs_as_brute_force(labels):
    groups, clusters = [g for g, _ in labels], [c for _, c in labels]
    example = DupSet([str(i) for i in range(len(labels))], [b""] * len(labels), groups, [0] * len(labels),
                     ["original"] * len(labels))
    predicted = {(i, j) for i, j in combinations(range(len(labels)), 2) if clusters[i] == clusters[j]}
    truth = true_pairs(example)
    scores = pair_scores(example, clusters)
    assert (scores["true_pairs"], scores["predicted_pairs"], scores["correct_pairs"]) == \
        (len(truth), len(predicted), len(truth & predicted))
    assert scores["precision"] == (len(truth & predicted) / len(predicted) if predicted else 1.0)
    assert pair_scores(example, groups)["precision"] == pair_scores(example, groups)["recall"] == 1.0
