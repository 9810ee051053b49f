"""labeling.candidates, verification and clusters: Hamming candidates, pixel verification and non-chaining clusters."""

import hashlib
import io
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tagmill.config import DedupConfig
from tagmill.demo.dupset import pair_scores, planted_duplicate_set
from tagmill.labeling.codes import hamming
from tagmill.labeling import lucas_kanade
from tagmill.labeling.candidates import SearchPlan, _table_pairs, candidate_pairs, search_plan
from tagmill.labeling.clusters import canonical_order, cluster
from tagmill.labeling.alignment import _Fit, _Warp
from tagmill.labeling.verification import _Picture, _tone_residual, thumbnail, verify_pairs

# ---- candidates ------------------------------------------------------------------------------------------


def planted_codes(n: int, bits: int, max_distance: int, seed: int) -> np.ndarray:
    """Random codes where, for each distance 0..max_distance, a few codes copy another with that many bits
    flipped (and a small group shares one code)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    if n < 8:
        return codes
    targets = rng.permutation(n)
    for k, distance in enumerate(np.repeat(np.arange(max_distance + 1), 3)):
        source, target = targets[2 * k % n], targets[(2 * k + 1) % n]
        unpacked = np.unpackbits(codes[source])
        unpacked[rng.choice(bits, distance, replace=False)] ^= 1
        codes[target] = np.packbits(unpacked)
    codes[targets[-4:]] = codes[targets[-5]]  # five identical codes
    return codes


def brute_force(codes: np.ndarray, max_hamming: int) -> set[tuple[int, int]]:
    i, j = np.triu_indices(len(codes), 1)
    near = hamming(codes[i], codes[j]) <= max_hamming
    return set(zip(i[near].tolist(), j[near].tolist()))


@pytest.mark.parametrize("n, bits", [(1, 64), (2, 64), (300, 64), (3000, 64), (1500, 128)])
def test_candidates_equal_brute_force_for_small_sets(n, bits):
    codes = planted_codes(n, bits, 10, seed=n)
    i, j, distance = candidate_pairs(codes, 10)
    assert set(zip(i.tolist(), j.tolist())) == brute_force(codes, 10)
    np.testing.assert_array_equal(distance, hamming(codes[i], codes[j]))
    assert (i < j).all() and (np.diff(i * n + j) > 0).all()  # sorted by (i, j), no repeats


@pytest.mark.parametrize("bits, blocks, leading, max_hamming", [
    (64, 8, 3, 5),     # the 10M plan: 56 tables of 24-bit keys, exact up to 5
    (64, 11, 1, 10),   # exact up to 10
    (64, 8, 3, 10),    # exact up to 5 of 10: the rest by chance
    (128, 2, 1, 3),    # 64-bit keys, hashed to fit beside the item index
    (24, 24, 24, 0),   # one table on the whole code: exact duplicates
])
def test_table_search_is_exact_up_to_its_radius(bits, blocks, leading, max_hamming):
    codes = planted_codes(4000, bits, max_hamming, seed=bits + blocks)
    plan = SearchPlan(blocks, leading, min(blocks - leading, max_hamming), 1, 0.0)
    i, j = _table_pairs(codes, max_hamming, plan, threads=2)
    found = set(zip(i.tolist(), j.tolist()))
    truth = brute_force(codes, max_hamming)
    assert found <= truth  # never a pair beyond max_hamming
    assert {p for p in truth if hamming(codes[p[0]], codes[p[1]]) <= plan.exact_up_to} <= found
    assert (i < j).all() and (np.diff(i * len(codes) + j) > 0).all()


def test_search_plan_is_exact_for_small_sets_and_bounded_for_large():
    assert search_plan(1000, 64, 10).exact_up_to == 10
    assert search_plan(20_000, 64, 12).exact_up_to == 12
    assert 5 < search_plan(100_000, 64, 10).exact_up_to < 10
    large = search_plan(10_000_000, 64, 10, exact_hamming=5)
    assert (large.blocks, large.leading, large.exact_up_to, large.tables) == (8, 3, 5, 56)
    assert search_plan(10_000_000, 64, 3, exact_hamming=5).exact_up_to == 3


# ---- clusters --------------------------------------------------------------------------------------------


def test_cluster_does_not_chain():
    # a ~ b ~ c verified, a ~ c not: c does not join a's cluster through b
    clusters, canonical = cluster(3, np.array([0, 1]), np.array([1, 2]), np.array([True, True]), np.arange(3))
    assert clusters.tolist() == [0, 0, 2] and canonical.tolist() == [True, False, True]
    # with a ~ c verified too, all three are one cluster
    clusters, _ = cluster(3, np.array([0, 1, 0]), np.array([1, 2, 2]), np.ones(3, bool), np.arange(3))
    assert clusters.tolist() == [0, 0, 0]
    # b ranks first: a and c both join b, and a ~ c is not needed
    clusters, _ = cluster(3, np.array([0, 1]), np.array([1, 2]), np.ones(2, bool), np.array([1, 0, 2]))
    assert clusters.tolist() == [1, 1, 1]


def test_cluster_ignores_unverified_pairs():
    clusters, canonical = cluster(4, np.array([0, 2]), np.array([1, 3]), np.array([False, True]), np.arange(4))
    assert clusters.tolist() == [0, 1, 2, 2] and canonical.tolist() == [True, True, True, False]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 30).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.booleans()), max_size=80),
    st.permutations(list(range(n))))))
def test_every_member_was_verified_against_its_canonical(case):
    n, pairs, ranks = case
    i = np.array([p[0] for p in pairs], np.int64)
    j = np.array([p[1] for p in pairs], np.int64)
    verified = np.array([p[2] for p in pairs], bool)
    clusters, canonical = cluster(n, i, j, verified, np.array(ranks))
    edges = {frozenset((a, b)) for a, b, ok in pairs if ok and a != b}
    for item in range(n):
        leader = int(clusters[item])
        assert canonical[leader] and (leader == item) == bool(canonical[item])
        if leader != item:
            assert frozenset((item, leader)) in edges and ranks[leader] < ranks[item]
    # the same pairs in another order give the same clusters
    shuffled = np.random.default_rng(n).permutation(len(pairs))
    again, _ = cluster(n, j[shuffled], i[shuffled], verified[shuffled], np.array(ranks))
    np.testing.assert_array_equal(again, clusters)


# ---- thumbnails and verification -------------------------------------------------------------------------


def test_thumbnail_format():
    image = Image.new("RGB", (120, 90), (200, 30, 40))
    data = thumbnail(image, 64)
    assert data[:3] == bytes((1, 63, 47))  # version, width - 1, height - 1: the aspect ratio is kept
    assert len(data) == 3 + 64 * 48 + 2 * 32 * 24 <= 3 * 64 * 64
    luma = np.frombuffer(data, np.uint8, 64 * 48, 3)
    assert abs(int(luma.mean()) - round(0.299 * 200 + 0.587 * 30 + 0.114 * 40)) <= 1
    assert len(thumbnail(Image.new("L", (10, 400)), 16)) == 3 + 1 * 16 + 2 * 1 * 8
    with pytest.raises(ValueError, match="16..256"):
        thumbnail(image, 8)


def test_the_compiled_fit_finds_a_known_shift_and_gain():
    """labeling.lucas_kanade through alignment._Fit: B is A's picture moved 2.5 px right and 1.5 px up, its
    luma scaled by 0.8; from the identity the full-size fit lands on the shift (X_B = X_A + 2.5, Y_B = Y_A -
    1.5) and a gain of 1 / 0.8 (A ~ gain * B + bias), well within a tenth of a pixel."""
    rng = np.random.default_rng(3)
    field = np.asarray(Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).resize(
        (96, 96), Image.Resampling.BICUBIC), np.float32)
    shifted = np.asarray(Image.fromarray(field).transform((96, 96), Image.Transform.AFFINE,
                                                          (1, 0, -2.5, 0, 1, 1.5), Image.Resampling.BICUBIC))
    crop = (16, 16, 80, 80)
    a = _Picture.of(thumbnail(Image.fromarray(field.astype(np.uint8)).crop(crop), 64))
    b = _Picture.of(thumbnail(Image.fromarray((0.8 * shifted).astype(np.uint8)).crop(crop), 64))
    luma = np.array([1.0, 0.0, 0.0], np.float32)
    warp, loss = _Fit(a, b, luma, 0).refine(_Warp(1.0, 0.0, 0.0, 0.0), 12)
    assert warp.tx == pytest.approx(2.5, abs=0.1) and warp.ty == pytest.approx(-1.5, abs=0.1)
    assert warp.zoom == pytest.approx(1.0, abs=0.01) and abs(warp.degrees) < 0.3
    assert warp.gain == pytest.approx(1 / 0.8, abs=0.05) and loss < 2.0


def test_the_compiled_fits_select_and_solve_agree_with_numpy():
    """lucas_kanade's written-out median (quickselect) and 6 x 6 solve: the median is numpy's exactly, ties,
    odd and even lengths and a single value included; the solve is numpy's to rounding, a system that needs
    pivoting (a zero on the diagonal) included."""
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 10, 101, 1000):
        for values in (rng.random(n, np.float32), rng.integers(0, 4, n).astype(np.float32)):
            k = n // 2
            assert lucas_kanade._select(values.copy(), k) == np.partition(values, k)[k]
    for matrix in (rng.normal(size=(6, 6)) + 6 * np.eye(6), np.array([[0.0, 2.0], [3.0, 1.0]])):
        vector = rng.normal(size=len(matrix))
        np.testing.assert_allclose(lucas_kanade._solve(matrix, vector), np.linalg.solve(matrix, vector),
                                   rtol=1e-10, atol=1e-12)


def test_the_compiled_sampler_interpolates_planes_exactly_and_clamps_at_the_edges():
    """lucas_kanade.bilinear on planes linear in x and y (which bilinear interpolation reproduces): inside, the
    plane's value; beyond the stack, the value at the clamped coordinate (0, or the last index less 0.001)."""
    ys, xs = np.mgrid[0:5, 0:7].astype(np.float32)
    stack = np.stack([2 * xs + 3 * ys, 10 - xs], axis=-1)
    x = np.array([0.0, 2.5, 5.25, -3.0, 9.0], np.float32)
    y = np.array([0.0, 1.5, 3.75, 2.0, 7.0], np.float32)
    cx, cy = np.clip(x, 0, 6 - 0.001), np.clip(y, 0, 4 - 0.001)
    sampled = lucas_kanade.bilinear(stack, x, y)
    assert sampled.dtype == np.float32 and sampled.shape == (2, 5)
    np.testing.assert_allclose(sampled, [2 * cx + 3 * cy, 10 - cx], rtol=0, atol=1e-4)


def test_verify_decides_on_the_embedding_first():
    image = Image.new("RGB", (64, 64), (120, 120, 120))
    thumbs = [thumbnail(image, 64)] * 2
    emb_a = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    emb_b = np.array([[0.0, 1.0], [1.0, 0.1]], np.float32)
    result = verify_pairs(emb_a, emb_b, thumbs, thumbs, 0.85, 0.8, 64)
    assert result["reason"].tolist() == ["embedding_differs", "verified"]
    assert result["pixel_similarity"].tolist() == pytest.approx([1.0, 1.0])  # compared either way
    assert np.isnan(result["detail_correlation"]).all()  # a flat picture: no detail to overrule the embedding
    assert result["cosine"][0] == pytest.approx(0.0) and result["verified"].tolist() == [False, True]


def test_shared_fine_detail_overrules_an_embedding_that_a_brightened_copy_moved():
    rng = np.random.default_rng(5)
    pixels = np.clip(rng.normal(120, 3, (64, 64, 1)) + np.linspace(0, 60, 64)[None, :, None], 0, 255)
    original = Image.fromarray(np.repeat(pixels, 3, axis=2).astype(np.uint8))
    brighter = Image.fromarray(np.clip(np.asarray(original, np.float32) * 1.2, 0, 255).astype(np.uint8))
    other = Image.fromarray(np.repeat(np.clip(rng.normal(120, 3, (64, 64, 1))
                                              + np.linspace(0, 60, 64)[None, :, None], 0, 255), 3, axis=2)
                            .astype(np.uint8))  # the same scene, other noise: a look-alike
    emb = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    apart = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)  # the embedding says no to both
    result = verify_pairs(emb, apart, [thumbnail(original, 64)] * 2, [thumbnail(brighter, 64), thumbnail(other, 64)],
                          0.85, DedupConfig().min_pixel_similarity, 64)
    assert result["detail_correlation"][0] > 0.9 and abs(result["detail_correlation"][1]) < 0.1
    assert result["verified"].tolist() == [True, False]
    assert result["reason"].tolist() == ["verified", "embedding_differs"]


def test_earlier_pixel_scores_are_taken_as_they_are_and_decided_anew():
    rng = np.random.default_rng(5)
    pixels = np.clip(rng.normal(120, 3, (64, 64, 1)) + np.linspace(0, 60, 64)[None, :, None], 0, 255)
    original = Image.fromarray(np.repeat(pixels, 3, axis=2).astype(np.uint8))
    thumbs = [thumbnail(original, 64)] * 3
    emb = np.ones((3, 2), np.float32)
    fresh = verify_pairs(emb, emb, thumbs, thumbs, 0.85, 0.8, 64)
    assert fresh["pixel_similarity"].tolist() == pytest.approx([1.0] * 3) and not fresh["reused"].any()
    # pairs 0 and 2: no earlier scores (NaN), compared here; pair 1: an earlier run found the pixels differ
    earlier = np.array([[np.nan, 0.3, np.nan], [np.nan, 1.1, np.nan], [np.nan, 2.0, np.nan],
                        [np.nan, 0.05, np.nan]], np.float32)
    result = verify_pairs(emb, emb, thumbs, thumbs, 0.85, 0.8, 64, earlier)
    assert result["reused"].tolist() == [False, True, False]
    assert result["pixel_similarity"].tolist() == pytest.approx([1.0, 0.3, 1.0])
    assert result["zoom"][1] == pytest.approx(1.1) and result["degrees"][1] == pytest.approx(2.0)
    assert result["verified"].tolist() == [True, False, True]  # the decision is this run's
    assert result["reason"].tolist() == ["verified", "pixels_differ", "verified"]
    for name in ("pixel_similarity", "zoom", "degrees", "detail_correlation"):
        assert result[name][[0, 2]].tolist() == pytest.approx(fresh[name][[0, 2]].tolist(), nan_ok=True)
    with pytest.raises(ValueError, match=r"\(4, 3\) earlier pixel scores"):
        verify_pairs(emb, emb, thumbs, thumbs, 0.85, 0.8, 64, earlier[:, :2])


def test_the_tone_fit_takes_brightening_with_its_clipping_from_the_original_side():
    rng = np.random.default_rng(3)
    original = rng.uniform(0, 255, 4000)
    copy = np.clip(1.4 * original + 10, 0, 255)  # brightened: what was over 175 is 255 now
    residual, kept = _tone_residual(original, copy)  # the copy as a function of the original: exact
    assert residual.max() < 1e-6 and kept.mean() >= 0.98
    back, _ = _tone_residual(copy, original)  # the original from the copy: the clipped third is lost
    assert (back > 20).mean() > 0.15
    darker = 0.6 * original + 40  # within the gain allowed: exact both ways
    assert _tone_residual(original, darker)[0].max() < 1e-6 and _tone_residual(darker, original)[0].max() < 1e-6


def test_the_tone_fit_holds_its_gain_to_what_brightness_and_contrast_edits_do():
    x = np.linspace(0, 100, 2001)
    assert _tone_residual(x, 1.7 * x)[0].max() < 1e-6
    residual, _ = _tone_residual(x, 2.5 * x)  # a flat picture stretched onto a contrasty one: no edit
    assert residual.max() == pytest.approx(0.7 * 50, abs=1.0)


@pytest.fixture(scope="module")
def planted():
    """A small planted set, every pair of images of one leaf verified on pixels alone (embeddings all
    alike, min_cosine -1): the candidate step is not what is measured here."""
    dupset = planted_duplicate_set(seed=7, leaves=3, listings_per_leaf=16, copied_share=0.5, copies=(1, 3))
    images = [Image.open(io.BytesIO(data)).convert("RGB") for data in dupset.images]
    thumbs = [thumbnail(image, 64) for image in images]
    leaf = np.array(dupset.leaf)
    i, j = np.triu_indices(len(images), 1)
    i, j = i[leaf[i] == leaf[j]], j[leaf[i] == leaf[j]]
    ones = np.ones((len(i), 8), np.float32)
    result = verify_pairs(ones, ones, [thumbs[k] for k in i], [thumbs[k] for k in j], -1.0,
                          DedupConfig().min_pixel_similarity, 64)
    return dupset, images, i, j, result


def test_each_near_kind_is_verified_against_its_original(planted):
    dupset, _, i, j, result = planted
    group, relation = np.array(dupset.group), np.array(dupset.relation)
    with_original = (group[i] == group[j]) & ((relation[i] == "original") | (relation[j] == "original"))
    kind = np.where(relation[i] == "original", relation[j], relation[i])
    shares = {k: float(result["verified"][with_original & (kind == k)].mean())
              for k in sorted(set(kind[with_original]))}
    assert len(shares) == 7 and min(shares.values()) >= 0.8, shares
    assert result["verified"][with_original].mean() >= 0.95, shares


def test_look_alike_listings_are_not_verified(planted):
    dupset, _, i, j, result = planted
    group = np.array(dupset.group)
    distinct = group[i] != group[j]
    assert distinct.sum() > 1000
    assert not result["verified"][distinct].any()
    assert Counter(result["reason"][distinct].tolist()) == {"pixels_differ": int(distinct.sum())}


def test_planted_pairs_are_clustered_with_high_precision_and_recall(planted):
    dupset, images, i, j, result = planted
    area = np.array([image.width * image.height for image in images])
    digest = [hashlib.sha256(data).hexdigest() for data in dupset.images]
    order = canonical_order(i, j, result["verified"], area, digest)  # the pipeline's
    clusters, _ = cluster(len(images), i, j, result["verified"], order)
    scores = pair_scores(dupset, clusters.tolist())
    assert scores["precision"] >= 0.99 and scores["recall"] >= 0.95, scores
