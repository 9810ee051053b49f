"""The layout descriptor and the candidate shortlist (labeling/layout.py)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from tagmill.labeling.layout import (GRID, compact_layouts, layout_cosine, layout_descriptor, shortlist,
                                    trim_box)


def _picture(x: int, y: int, size: int = 96) -> Image.Image:
    rng = np.random.default_rng(x * 1000 + y)
    pixels = np.full((size, size, 3), (200, 190, 150), np.float32) + rng.normal(0, 4, (size, size, 1))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    ImageDraw.Draw(image).ellipse((x - 18, y - 18, x + 18, y + 18), fill=(230, 120, 30))
    return image


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _article_on_black(size: int = 112) -> Image.Image:
    """A light garment shape on a black background touching nothing, like a Fashion-MNIST article."""
    image = Image.new("RGB", (size, size), (0, 0, 0))
    pen = ImageDraw.Draw(image)
    pen.rectangle((30, 20, 80, 95), fill=(170, 160, 150))
    pen.ellipse((40, 8, 70, 30), fill=(220, 210, 200))
    pen.line((35, 60, 75, 60), fill=(60, 60, 60), width=4)
    return image


def test_white_padding_on_a_black_background_is_trimmed_through_the_jpeg_ringing():
    original = _jpeg(_article_on_black(), 90)
    inside = np.array(trim_box(np.asarray(original.resize((64, 64), Image.Resampling.BOX), np.float32)))
    assert inside[0] > 0 and inside[2] > 0  # the black background is trimmed
    for border in ((0, 12, 0, 0), (9, 0, 0, 14), (10, 10, 10, 10), (14, 0, 0, 0)):  # left, top, right, bottom
        padded = _jpeg(ImageOps.expand(_article_on_black(), border=border, fill=(255, 255, 255)), 85)
        width, height = padded.size
        top, bottom, left, right = trim_box(np.asarray(padded.resize((64, 64), Image.Resampling.BOX), np.float32))
        # the padded copy's box in the original's 64 px frame: all padding gone (the strict rule alone stopped
        # at the ringing between white and black, keeping white), none of the picture lost; most of the black
        # background goes too (the box is 0-5.4 px wider than the original's)
        frame = np.array([(top * height / 64 - border[1]), (bottom * height / 64 - border[1]),
                          (left * width / 64 - border[0]), (right * width / 64 - border[0])]) * 64 / 112
        assert frame[0] >= -0.5 and frame[2] >= -0.5 and frame[1] <= 64.5 and frame[3] <= 64.5, (border, frame)
        assert frame[0] <= inside[0] + 1 and frame[2] <= inside[2] + 1, (border, frame.round(1), inside)
        assert frame[1] >= inside[1] - 1 and frame[3] >= inside[3] - 1, (border, frame.round(1), inside)
        # cosine with the original 0.85-0.99 (0.66-0.91 with the strict rule alone)
        assert float(layout_descriptor(original) @ layout_descriptor(padded)) > 0.8, border


def test_a_narrow_article_and_a_caption_in_its_margin_are_trimmed_like_the_original():
    """A trousers-like article a third of the frame wide is trimmed to itself (the rule before stopped at
    half of each side, so where it stopped depended on the padding), and a caption in the black margin,
    parted from the article by black rows, is cut off with the margin."""
    article = Image.new("RGB", (96, 96), (0, 0, 0))
    ImageDraw.Draw(article).rectangle((36, 30, 67, 90), fill=(200, 190, 180))
    box = trim_box(np.asarray(article, np.float32))
    assert box == (30, 91, 36, 68)
    padded = ImageOps.expand(article, border=(10, 0, 0, 0), fill=(255, 255, 255))
    top, bottom, left, right = trim_box(np.asarray(padded, np.float32))
    assert (top, bottom, left - 10, right - 10) == box
    captioned = article.copy()
    ImageDraw.Draw(captioned).rectangle((20, 6, 70, 16), fill=(255, 255, 255))  # a caption's block of letters
    assert trim_box(np.asarray(captioned, np.float32)) == box


def test_trim_box_removes_grey_borders_only():
    rng = np.random.default_rng(0)
    picture = rng.normal(120, 5, (40, 30, 1)).astype(np.float32) + np.array([0, 20, 40], np.float32)
    padded = np.pad(picture, ((3, 0), (0, 5), (0, 0)), constant_values=255.0)
    assert trim_box(padded) == (3, 43, 0, 30)
    assert trim_box(picture) == (0, 40, 0, 30)  # a noisy edge is picture, not padding
    clipped = picture.copy()
    clipped[:4] = (255.0, 255.0, 180.0)  # brightening clipped a yellow background flat: still picture
    assert trim_box(clipped) == (0, 40, 0, 30)


def test_descriptor_survives_reencoding_brightness_and_padding_but_not_another_layout():
    original = _picture(30, 40)
    d = layout_descriptor(original)
    assert d.shape == (3 * GRID * GRID,) and abs(np.linalg.norm(d) - 1) < 1e-5
    brighter = Image.fromarray(np.clip(np.asarray(original, np.float32) * 1.15, 0, 255).astype(np.uint8))
    padded = ImageOps.expand(original, border=(0, 8, 0, 0), fill=(255, 255, 255))
    for copy in (_jpeg(original, 35), original.resize((60, 60)), brighter, padded):
        assert float(d @ layout_descriptor(copy)) > 0.99  # each scores 0.998-0.999
    assert float(d @ layout_descriptor(_picture(66, 60))) < 0.2  # the same drawing elsewhere: another listing (-0.17)


def test_shortlist_keeps_each_items_nearest_pairs_first():
    i = np.array([0, 0, 0, 1, 2])
    j = np.array([1, 2, 3, 2, 3])
    similarity = np.array([0.9, 0.8, 0.7, 0.95, 0.1])
    # per_item=1, most similar first: (1,2) kept; (0,1) kept (0 had none); (0,2) dropped (0 and 2 full);
    # (0,3): 0 full but 3 has none -> kept; (2,3): both have one -> dropped
    assert shortlist(i, j, similarity, 1).tolist() == [True, False, True, True, False]
    assert shortlist(i, j, similarity, 3).all()


def _reference_shortlist(i, j, similarity, per_item):
    """Each item's per_item most similar pairs (ties: the other item's smaller index), by plain loops."""
    kept = set()
    for item in set(i.tolist()) | set(j.tolist()):
        mine = [(-float(similarity[k]), int(j[k] if i[k] == item else i[k]), k) for k in range(len(i))
                if item in (i[k], j[k])]
        kept |= {k for _, _, k in sorted(mine)[:per_item]}
    return np.array([k in kept for k in range(len(i))], bool)


def test_vectorised_shortlist_equals_a_plain_reference_on_random_pairs():
    rng = np.random.default_rng(3)
    for trial in range(20):
        n, m = int(rng.integers(2, 30)), int(rng.integers(0, 200))
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], 1)[a != b], axis=0).reshape(-1, 2)
        i, j = pairs[:, 0], pairs[:, 1]
        similarity = rng.choice([0.1, 0.5, 0.9], len(i)) if trial % 2 else rng.random(len(i))  # ties too
        for per_item in (1, 2, 5):
            kept = shortlist(i, j, similarity, per_item)
            np.testing.assert_array_equal(kept, _reference_shortlist(i, j, similarity, per_item))
            counts = np.bincount(np.concatenate([i[kept], j[kept]]), minlength=n)
            assert kept.sum() <= per_item * n and (counts >= np.minimum(np.bincount(
                np.concatenate([i, j]), minlength=n), per_item)).all()


def test_compact_layouts_keep_the_cosine():
    rng = np.random.default_rng(1)
    layouts = rng.normal(size=(50, 216)).astype(np.float32)
    layouts /= np.linalg.norm(layouts, axis=1, keepdims=True)
    compact = compact_layouts(layouts)
    assert compact.dtype == np.int8 and np.abs(compact).max(axis=1).min() == 127
    i, j = rng.integers(0, 50, 400), rng.integers(0, 50, 400)
    np.testing.assert_allclose(layout_cosine(compact, i, j), layout_cosine(layouts, i, j), atol=0.01)


def test_layout_cosine_is_each_pairs_dot_product_in_any_chunking():
    rng = np.random.default_rng(0)
    layouts = rng.normal(size=(40, 3 * GRID * GRID)).astype(np.float32)
    layouts /= np.linalg.norm(layouts, axis=1, keepdims=True)
    i, j = rng.integers(0, 40, 300), rng.integers(0, 40, 300)
    expected = np.array([float(layouts[a] @ layouts[b]) for a, b in zip(i, j)])
    np.testing.assert_allclose(layout_cosine(layouts, i, j, chunk=7), expected, atol=1e-5)
    np.testing.assert_allclose(layout_cosine(layouts, i[:0], j[:0]), np.zeros(0))
    assert layout_cosine(layouts, i, j).dtype == np.float32
