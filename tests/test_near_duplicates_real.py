"""Near-duplicate candidates and verification on real pictures (tagmill/demo/realphotos.py) and drawn ones."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tagmill.config import DedupConfig, ImagePassConfig
from tagmill.demo.images import NEAR_KINDS, design_signatures, draw_image, near_copy
from tagmill.demo.randomness import stream
from tagmill.demo.realphotos import (REAL_KINDS, article_picture, encode_jpeg, fashion_mnist, photo_regions, photos,
                                     real_duplicate_set, realdata_folder, reupload)
from tagmill.demo.vocabulary import build_leaves
from tagmill.labeling.candidates import layout_candidates
from tagmill.labeling.codes import encode, fit_projection
from tagmill.labeling.layout import REGIONS, compact_layouts, layout_descriptor
from tagmill.labeling.verification import thumbnail, verify_pairs

REALDATA = (Path(__file__).parents[1] / ".." / "shared" / "realdata").resolve()
SIZE = ImagePassConfig().thumbnail_size
CFG = DedupConfig()


@pytest.fixture(scope="module")
def realdata() -> Path:
    try:
        return realdata_folder(REALDATA)
    except FileNotFoundError as err:
        pytest.skip(str(err))


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _verified(originals: list[Image.Image], copies: list[Image.Image]) -> np.ndarray:
    verdict = verify_pairs(None, None, [thumbnail(im, SIZE) for im in originals], [thumbnail(im, SIZE) for im in copies],
                           CFG.min_cosine, CFG.min_pixel_similarity, SIZE)
    return np.asarray(verdict["verified"], bool)


@pytest.fixture(scope="module")
def real_pictures(realdata) -> list[Image.Image]:
    """Three Fashion-MNIST articles of different classes and two photo regions, as saved originals."""
    articles, classes = fashion_mnist(realdata)
    picked = [int(np.flatnonzero(classes == c)[0]) for c in (0, 7, 9)]
    pictures = [article_picture(articles[k], 112) for k in picked]
    pictures += [region for _, region in photo_regions(photos(realdata), 2, seed=3)]
    return [_open(encode_jpeg(p, 90)) for p in pictures]


@pytest.mark.parametrize("kind", REAL_KINDS)
def test_each_reupload_kind_is_verified_on_real_pictures(real_pictures, kind):
    copies = [_open(reupload(p, kind, stream(11, "test-reupload", n, kind))) for n, p in enumerate(real_pictures)]
    verified = _verified(real_pictures, copies)
    assert verified.all(), f"{kind}: verified {verified.tolist()}"


@pytest.mark.parametrize("kind", NEAR_KINDS)
def test_each_near_copy_kind_is_verified_on_drawn_pictures(kind):
    signatures = design_signatures(build_leaves(), 7)
    originals = [draw_image(signatures[k], 96, 7, k) for k in (0, 5, 9)]
    copies = [near_copy(data, kind, 7, n) for n, data in enumerate(originals)]
    assert _verified([_open(d) for d in originals], [_open(d) for d in copies]).all()


def test_same_class_look_alikes_are_refused(realdata):
    """Each of 20 trousers against its most alike other trouser (by layout): different products."""
    articles, classes = fashion_mnist(realdata)
    pictures = [_open(encode_jpeg(article_picture(articles[k], 112), 90)) for k in np.flatnonzero(classes == 1)[:20]]
    layouts = np.stack([layout_descriptor(p) for p in pictures])
    similarity = layouts @ layouts.T
    np.fill_diagonal(similarity, -2.0)
    nearest = similarity.argmax(axis=1)
    assert not _verified(pictures, [pictures[k] for k in nearest]).any()


def test_candidates_reach_most_true_pairs_on_a_small_set(realdata):
    dupset = real_duplicate_set(realdata, seed=2, products=120)
    pictures = [_open(d) for d in dupset.images]
    layouts = np.stack([layout_descriptor(p) for p in pictures])
    codes, compact = encode(layouts, fit_projection(layouts, 64, "itq", 2)), compact_layouts(layouts)
    members: dict[int, list[int]] = {}
    for k, g in enumerate(dupset.group):
        members.setdefault(g, []).append(k)
    true = [(a, b) for ids in members.values() for n, a in enumerate(ids) for b in ids[n + 1:]]
    assert len(true) > 50

    def reached(region_shortlist: int) -> tuple[float, int]:
        i, j, distance = layout_candidates(codes, compact, CFG.max_hamming, CFG.exact_hamming, CFG.shortlist,
                                           CFG.region_hamming, region_shortlist, seed=2)  # as code_candidates
        assert (i < j).all() and (distance == np.bitwise_count(codes[i] ^ codes[j]).sum(axis=1)).all()
        found = set(zip(i.tolist(), j.tolist()))
        return sum(pair in found for pair in true) / len(true), len(found)

    whole, whole_pairs = reached(0)
    parts, parts_pairs = reached(CFG.region_shortlist)
    assert whole >= 0.8, f"candidate recall of the whole layout {whole:.3f}"
    assert parts > whole, f"the parts of the picture add no true pair ({whole:.3f})"
    # each shortlist bounds the verifier's work: per image, its own few plus a few per part
    assert whole_pairs <= CFG.shortlist * len(pictures)
    assert parts_pairs <= (CFG.shortlist + len(REGIONS) * CFG.region_shortlist) * len(pictures)


def test_real_set_is_seeded_and_balanced(realdata):
    a = real_duplicate_set(realdata, seed=4, products=40)
    b = real_duplicate_set(realdata, seed=4, products=40)
    assert a.images == b.images and len(set(a.group)) == 40
    kinds = [r for r in a.relation if r != "original"]
    assert set(kinds) <= set(REAL_KINDS) and max(kinds.count(k) for k in REAL_KINDS) - min(
        kinds.count(k) for k in REAL_KINDS) <= 1


def test_missing_data_folder_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="real-photo data not found"):
        realdata_folder(tmp_path)
