"""The layout descriptor and the candidate shortlist (labeling/layout.py)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from tagmill.labeling.layout import GRID, layout_cosine, layout_descriptor, shortlist, trim_box


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


def test_layout_cosine_is_each_pairs_dot_product_in_any_chunking():
    rng = np.random.default_rng(0)
    layouts = rng.normal(size=(40, 3 * GRID * GRID)).astype(np.float32)
    layouts /= np.linalg.norm(layouts, axis=1, keepdims=True)
    i, j = rng.integers(0, 40, 300), rng.integers(0, 40, 300)
    expected = np.array([float(layouts[a] @ layouts[b]) for a, b in zip(i, j)])
    np.testing.assert_allclose(layout_cosine(layouts, i, j, chunk=7), expected, atol=1e-5)
    np.testing.assert_allclose(layout_cosine(layouts, i[:0], j[:0]), np.zeros(0))
    assert layout_cosine(layouts, i, j).dtype == np.float32
