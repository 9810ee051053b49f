"""A near-duplicate set of real product pictures: Fashion-MNIST articles and crops of Tencent ML-Images photos,
with re-uploads of some of them, for dedup tests and `benchmarks/near_duplicates_real.py`.

Products are real pictures from the shared data folder (see its README files):
  * Fashion-MNIST articles (28 x 28 grey, on black), scaled up to `article_size` px. The ten classes hold
    hundreds of articles each, so products of one class are look-alikes that must not be merged.
  * regions of the four Tencent ML-Images photos (1024-3648 px), each read from a different spot at a
    different zoom and saved at 96-192 px on its longer side, square or 4:3 either way. Regions of one photo
    overlap by at most a fifth of the smaller one, so they are distinct pictures of one scene: look-alikes.
Some products get 1-3 re-uploads, each made by one of REAL_KINDS (as a seller's re-upload or a reseller's
copy of a stock photo), each a different kind. Everything is JPEG, drawn from seeded streams: the same
arguments give the same bytes.

    dupset = real_duplicate_set(realdata_folder(path), seed=5)
    scores = pair_scores(dupset, my_clusters)   # tagmill.demo.dupset.pair_scores works on this set too
"""

from __future__ import annotations

import gzip
import io
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from tagmill.demo.randomness import stream

REAL_KINDS = ("jpeg", "resize", "crop", "brightness", "rotation", "padding", "text")
"""How a re-upload differs from its original (see `reupload`)."""
TEXTS = ("SALE", "SALE -30%", "NEW", "HOT", "@shop88", "FREE SHIP", "$19.99")
_ORIGINAL_QUALITY = 90
_COPY_QUALITY = 85
_PHOTO_SIDES = (96, 112, 128, 160, 192)
_ASPECTS = (1.0, 4 / 3, 3 / 4)
_MAX_OVERLAP = 0.2
_MIN_REGION_STD = 20.0
"""A photo region whose luma varies less than this (0-255) is featureless (sky, wall) and not used."""


@dataclass(frozen=True)
class RealDupSet:
    """Images with their planted truth, aligned by position (a seeded shuffle).

    names: "p0012-orig" for product 12's original, "p0012-crop" for its cropped copy.
    group: the product (the duplicate group), shared by an original and its re-uploads.
    leaf: the look-alike family: the Fashion-MNIST class (0-9), or 10 + the photo's number.
    relation: "original" or the REAL_KINDS value the re-upload was made with.
    source: "fashion_mnist" or "photo".
    """

    names: list[str]
    images: list[bytes]
    group: list[int]
    leaf: list[int]
    relation: list[str]
    source: list[str]


def realdata_folder(path: str | Path) -> Path:
    """The shared real-data folder, checked: it must hold fashion_mnist/ and tencent_ml_images/images/.
    Raises FileNotFoundError saying what is missing (tests skip on it)."""
    folder = Path(path).resolve()
    needed = [folder / "fashion_mnist" / "test-first4443-images-idx3-ubyte.gz",
              folder / "fashion_mnist" / "test-first4443-labels-idx1-ubyte.gz", folder / "tencent_ml_images" / "images"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise FileNotFoundError(f"real-photo data not found: {', '.join(missing)}; point to the shared realdata "
                                f"folder (with fashion_mnist/ and tencent_ml_images/images/)")
    return folder


def fashion_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 articles and (n,) int64 classes of the Fashion-MNIST test subset (IDX, gzip)."""
    with gzip.open(folder / "fashion_mnist" / "test-first4443-images-idx3-ubyte.gz") as f:
        data = f.read()
    magic, n, rows, cols = np.frombuffer(data, ">i4", 4)
    if magic != 2051:
        raise ValueError(f"not an IDX image file (magic {magic}, expected 2051)")
    images = np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, rows, cols)
    with gzip.open(folder / "fashion_mnist" / "test-first4443-labels-idx1-ubyte.gz") as f:
        data = f.read()
    magic, count = np.frombuffer(data, ">i4", 2)
    if magic != 2049 or count != n:
        raise ValueError(f"label file magic {magic} / count {count} does not fit {n} images")
    return images, np.frombuffer(data, np.uint8, count, 8).astype(np.int64)


def photos(folder: Path) -> list[Image.Image]:
    """The Tencent ML-Images example photos, RGB, upright (EXIF orientation applied), in name order."""
    paths = sorted((folder / "tencent_ml_images" / "images").glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no .jpg photos in {folder / 'tencent_ml_images' / 'images'}")
    return [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in paths]


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def article_picture(article: np.ndarray, size: int) -> Image.Image:
    """A 28 x 28 Fashion-MNIST article as an RGB picture of size px (bicubic, as a shop's upscaler)."""
    return Image.fromarray(article).resize((size, size), Image.Resampling.BICUBIC).convert("RGB")


def photo_regions(pictures: list[Image.Image], count: int, seed: int) -> list[tuple[int, Image.Image]]:
    """`count` distinct regions of the photos as (photo number, picture): each from a photo drawn by its
    area, at a random spot, aspect and zoom (1-1.6 source px per output px: the four photos hold a few
    hundred regions at most), saved at one of _PHOTO_SIDES px on the longer side; two regions of one photo
    overlap by at most _MAX_OVERLAP of the smaller; featureless regions are skipped."""
    rng = stream(seed, "real-photo-regions")
    boxes: list[list[tuple[float, float, float, float]]] = [[] for _ in pictures]
    areas = np.array([p.width * p.height for p in pictures], np.float64)  # a photo is drawn by its area
    out: list[tuple[int, Image.Image]] = []
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 200 * count:
            raise ValueError(f"could not place {count} distinct regions in the photos; ask for fewer")
        k = int(rng.choice(len(pictures), p=areas / areas.sum()))
        width, height = pictures[k].size
        side = int(_PHOTO_SIDES[int(rng.integers(len(_PHOTO_SIDES)))])
        aspect = float(_ASPECTS[int(rng.integers(len(_ASPECTS)))])
        source = side * rng.uniform(1.0, 1.6)
        w, h = (source, source / aspect) if aspect >= 1 else (source * aspect, source)
        if w >= width or h >= height:
            continue
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        box = (x, y, x + w, y + h)
        if any(_overlap(box, other) > _MAX_OVERLAP for other in boxes[k]):
            continue
        boxes[k].append(box)
        out_w, out_h = (side, round(side / aspect)) if aspect >= 1 else (round(side * aspect), side)
        region = pictures[k].resize((out_w, out_h), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
        if float(np.asarray(region.convert("L"), np.float32).std()) < _MIN_REGION_STD:
            continue  # a patch of clear sky or wall shows no product; its look-alikes cannot be told apart
        out.append((k, region))
    return out


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller


def reupload(original: Image.Image, kind: str, rng: np.random.Generator) -> bytes:
    """A re-upload of an RGB picture as JPEG bytes; kind (one of REAL_KINDS):

      jpeg        saved at JPEG quality 20-60
      resize      scaled to 0.4-0.8 of each side
      crop        4-12 % of the width and of the height cut off, split between the edges at random
      brightness  brightness and contrast each changed by 5-25 % either way
      rotation    turned 1-6 degrees either way and cut to the largest centred rectangle of its aspect
      padding     white borders of 5-12 % of the side on 1-4 sides
      text        a caption such as "SALE" (height 10-16 % of the shorter side) somewhere on it
    All but jpeg are saved at quality 85.
    """
    image, quality = original.copy(), _COPY_QUALITY
    width, height = image.size
    if kind == "jpeg":
        quality = int(rng.integers(20, 61))
    elif kind == "resize":
        factor = rng.uniform(0.4, 0.8)
        image = image.resize((max(8, round(width * factor)), max(8, round(height * factor))), Image.Resampling.BILINEAR)
    elif kind == "crop":
        cut = rng.uniform(0.04, 0.12, 2)
        share = rng.uniform(0, 1, 2)
        cut_w, cut_h = max(1, round(width * cut[0])), max(1, round(height * cut[1]))
        x0, y0 = round(cut_w * share[0]), round(cut_h * share[1])
        image = image.crop((x0, y0, x0 + width - cut_w, y0 + height - cut_h))
    elif kind == "brightness":
        signs = np.where(rng.random(2) < 0.5, -1.0, 1.0)
        amount = rng.uniform(0.05, 0.25, 2) * signs
        image = ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(1 + amount[0])).enhance(1 + amount[1])
    elif kind == "rotation":
        degrees = rng.uniform(1.0, 6.0) * (1 if rng.random() < 0.5 else -1)
        turned = image.rotate(degrees, Image.Resampling.BICUBIC)
        cos, sin = math.cos(math.radians(abs(degrees))), math.sin(math.radians(abs(degrees)))
        scale = min(width / (width * cos + height * sin), height / (width * sin + height * cos))
        w, h = max(1, math.floor(width * scale) - 2), max(1, math.floor(height * scale) - 2)
        x0, y0 = (width - w) // 2, (height - h) // 2
        image = turned.crop((x0, y0, x0 + w, y0 + h))
    elif kind == "padding":
        sides = rng.random(4) < 0.5
        if not sides.any():
            sides[int(rng.integers(4))] = True
        shares = rng.uniform(0.05, 0.12, 4)
        left, top, right, bottom = (round(s * share) if on else 0
                                    for on, share, s in zip(sides, shares, (width, height, width, height)))
        canvas = Image.new("RGB", (width + left + right, height + top + bottom), (255, 255, 255))
        canvas.paste(image, (left, top))
        image = canvas
    elif kind == "text":
        text = TEXTS[int(rng.integers(len(TEXTS)))]
        pen = ImageDraw.Draw(image)
        points = max(6, round(min(width, height) * rng.uniform(0.10, 0.16)))
        font = ImageFont.load_default(points)
        x0, y0, x1, y1 = pen.textbbox((0, 0), text, font=font)
        while x1 - x0 > 0.9 * width and points > 6:
            points -= 1
            font = ImageFont.load_default(points)
            x0, y0, x1, y1 = pen.textbbox((0, 0), text, font=font)
        left = rng.uniform(0, max(1, width - (x1 - x0)))
        top = rng.uniform(0, max(1, height - (y1 - y0)))
        colour = [(255, 255, 255), (220, 20, 20), (20, 20, 20)][int(rng.integers(3))]
        pen.text((left - x0, top - y0), text, font=font, fill=colour)
    else:
        raise ValueError(f"unknown re-upload kind '{kind}'; use one of {', '.join(REAL_KINDS)}")
    return encode_jpeg(image, quality)


def real_duplicate_set(folder: Path, seed: int, products: int = 1500, photo_share: float = 0.2,
                       copied_share: float = 0.6, copies: tuple[int, int] = (1, 3),
                       article_size: int = 112) -> RealDupSet:
    """`products` distinct pictures (a share `photo_share` of them photo regions, the rest Fashion-MNIST
    articles drawn from all ten classes alike) and re-uploads of a share `copied_share` of them.

    folder: the real-data folder (`realdata_folder`). seed: decides the products, which are copied, and
    the copies. copies: (low, high) re-uploads per copied product, each of a different kind; kinds are
    dealt least-used first, so each is used about equally.
    """
    low, high = copies
    if products < 1 or not 0 <= photo_share <= 1 or not 0 <= copied_share <= 1:
        raise ValueError(f"need products >= 1 and shares in [0, 1], got {products}, {photo_share}, {copied_share}")
    if not 1 <= low <= high <= len(REAL_KINDS):
        raise ValueError(f"copies must be (low, high) with 1 <= low <= high <= {len(REAL_KINDS)}, got {copies}")
    rng = stream(seed, "real-dupset")
    n_photos = round(products * photo_share)
    articles, classes = fashion_mnist(folder)
    chosen = rng.permutation(len(articles))[:products - n_photos]
    originals: list[tuple[Image.Image, int, str]] = [(article_picture(articles[a], article_size), int(classes[a]),
                                                      "fashion_mnist") for a in chosen]
    originals += [(region, 10 + k, "photo") for k, region in photo_regions(photos(folder), n_photos, seed)]
    copied = set(rng.permutation(len(originals))[:round(copied_share * len(originals))].tolist())
    dealt: Counter[str] = Counter()
    names, images, group, leaf, relation, source = [], [], [], [], [], []
    for product, (picture, family, origin) in enumerate(originals):
        kinds: list[str] = []
        if product in copied:
            tiebreak = rng.permutation(len(REAL_KINDS))
            ranked = sorted(REAL_KINDS, key=lambda k: (dealt[k], tiebreak[REAL_KINDS.index(k)]))
            kinds = ranked[:int(rng.integers(low, high + 1))]
            dealt.update(kinds)
        made = [("original", encode_jpeg(picture, _ORIGINAL_QUALITY))]
        made += [(kind, reupload(picture, kind, stream(seed, "real-reupload", product, kind))) for kind in kinds]
        for kind, data in made:
            names.append(f"p{product:04d}-{'orig' if kind == 'original' else kind}")
            images.append(data)
            group.append(product)
            leaf.append(family)
            relation.append(kind)
            source.append(origin)
    order = rng.permutation(len(images)).tolist()
    return RealDupSet(*([values[i] for i in order] for values in (names, images, group, leaf, relation, source)))
