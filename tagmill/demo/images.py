"""What a demo image looks like: one learnable visual signature per leaf, drawn with per-image variation.

A leaf's signature is a background colour and texture plus a foreground shape, colour and count. The
signatures are picked so that any two leaves differ in at least 2 of the 5 attributes, leaves of one
domain in 3 and sibling leaves in 4 (always including the shape), which a small CNN separates at
64-128 px. Each image then varies position, scale, rotation, colour and noise, so two listings of one
leaf are never near-duplicates of each other; real near-duplicates are made on purpose by `near_copy`.
Everything is drawn from an explicit numpy stream and saved as JPEG quality 90, so bytes are reproducible.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from tagmill.demo.randomness import stream
from tagmill.demo.vocabulary import Leaf

JPEG_QUALITY = 90
BACKGROUNDS = ((240, 230, 200), (245, 190, 200), (170, 210, 245), (180, 235, 200), (210, 190, 240),
               (245, 240, 140), (205, 205, 205), (250, 200, 150), (70, 80, 100), (40, 90, 60))
TEXTURES = ("plain", "gradient", "stripes", "diagonal", "dots", "checker")
SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "hexagon", "diamond", "bars", "crescent")
FOREGROUNDS = ((215, 35, 35), (35, 70, 200), (40, 160, 60), (240, 130, 20), (130, 50, 170), (20, 20, 20),
               (250, 250, 250), (0, 140, 140), (215, 40, 160), (240, 210, 20))
COUNTS = (1, 2, 3)
MIN_CONTRAST = 120.0
"""Smallest RGB distance between a signature's background and shape colours."""
NEAR_KINDS = ("resized", "reencoded", "cropped", "padded", "rotated", "brightness", "overlay")
"""How `near_copy` can change an image: the transformations a re-upload goes through."""


@dataclass(frozen=True)
class Signature:
    background: int
    texture: int
    shape: int
    foreground: int
    count: int


def design_signatures(leaves: list[Leaf], seed: int) -> list[Signature]:
    """One signature per leaf: greedy over a seeded order of all attribute combinations.

    Minimum attribute differences: 2 between any leaves, 3 within a domain, 4 between siblings, and
    siblings never share a shape.
    """
    combos = np.array(list(itertools.product(range(len(BACKGROUNDS)), range(len(TEXTURES)), range(len(SHAPES)),
                                             range(len(FOREGROUNDS)), range(len(COUNTS)))))
    bg, fg = np.array(BACKGROUNDS, float), np.array(FOREGROUNDS, float)
    contrast = np.linalg.norm(bg[combos[:, 0]] - fg[combos[:, 3]], axis=1)
    combos = combos[contrast >= MIN_CONTRAST]
    combos = combos[stream(seed, "signatures").permutation(len(combos))]
    everywhere = np.full(len(combos), 99)
    by_domain: dict[str, np.ndarray] = {}
    by_group: dict[tuple[str, str], np.ndarray] = {}
    chosen: list[Signature] = []
    for leaf in leaves:
        group = (leaf.domain, leaf.group)
        fits = ((everywhere >= 2) & (by_domain.get(leaf.domain, everywhere * 0 + 99) >= 3)
                & (by_group.get(group, everywhere * 0 + 99) >= 4))
        fits &= ~np.isin(combos[:, 2], [s.shape for s, other in zip(chosen, leaves)
                                         if (other.domain, other.group) == group])
        candidates = np.flatnonzero(fits)
        if len(candidates) == 0:
            raise RuntimeError(f"no distinct visual signature left for leaf '{leaf.name_en}'")
        pick = combos[candidates[0]]
        distance = (combos != pick).sum(axis=1)
        everywhere = np.minimum(everywhere, distance)
        by_domain[leaf.domain] = np.minimum(by_domain.get(leaf.domain, distance), distance)
        by_group[group] = np.minimum(by_group.get(group, distance), distance)
        chosen.append(Signature(*(int(v) for v in pick)))
    return chosen


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def draw_image(signature: Signature, size: int, seed: int, key: int) -> bytes:
    """JPEG bytes of one image of a leaf; `key` makes this image differ from its siblings."""
    rng = stream(seed, "image", key)
    background = _jitter(BACKGROUNDS[signature.background], rng, 10)
    pixels = _texture(TEXTURES[signature.texture], background, size, rng)
    mask = Image.new("L", (2 * size, 2 * size), 0)
    pen = ImageDraw.Draw(mask)
    count = COUNTS[signature.count]
    low, high = {1: (0.22, 0.32), 2: (0.14, 0.20), 3: (0.11, 0.15)}[count]
    placed: list[tuple[float, float, float]] = []
    for _ in range(count):
        radius = rng.uniform(low, high) * 2 * size
        for _attempt in range(8):
            x, y = rng.uniform(radius, 2 * size - radius, size=2)
            if all(math.hypot(x - px, y - py) > 0.8 * (radius + pr) for px, py, pr in placed):
                break
        placed.append((x, y, radius))
        _shape(pen, SHAPES[signature.shape], x, y, radius, math.radians(rng.uniform(-25, 25)))
    alpha = np.asarray(mask.reduce(2), dtype=np.float32)[..., None] / 255.0
    colour = _jitter(FOREGROUNDS[signature.foreground], rng, 12)
    pixels += (colour - pixels) * alpha
    grain = rng.standard_normal((size, size, 1), dtype=np.float32) * np.float32(rng.uniform(3.0, 7.0))
    pixels += grain  # luminance noise, as a phone camera sensor adds
    return encode_jpeg(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB"))


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, spread: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0.0, spread / 2, 3), 0, 255).astype(np.float32)


def _texture(kind: str, colour: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Background pixels (size, size, 3) float32: the colour and a shade of it in a pattern."""
    shade = colour * 0.8 if colour.mean() > 110 else np.minimum(colour * 1.45 + 20, 255)
    yy, xx = _grid(size)
    period = rng.uniform(0.14, 0.2)
    phase = rng.uniform(0, 1)
    if kind == "plain":
        weight = np.zeros_like(xx)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        ramp = xx * math.cos(angle) + yy * math.sin(angle)
        weight = (ramp - ramp.min()) / (ramp.max() - ramp.min() + 1e-6)
    elif kind == "stripes":
        weight = ((yy / period + phase) % 1.0 < 0.5).astype(np.float32)
    elif kind == "diagonal":
        weight = (((xx + yy) / period + phase) % 1.0 < 0.5).astype(np.float32)
    elif kind == "dots":
        cell = period * 1.3
        dy, dx = (yy / cell + phase) % 1.0 - 0.5, (xx / cell + phase) % 1.0 - 0.5
        weight = (dx * dx + dy * dy < 0.06).astype(np.float32)
    else:  # checker
        cell = period * 1.5
        weight = ((np.floor(xx / cell + phase) + np.floor(yy / cell + phase)) % 2).astype(np.float32)
    return colour + (shade - colour) * weight[..., None]


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in [0, 1), rows then columns; read-only, shared by all images of one size."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def _polygon(x: float, y: float, radius: float, angle: float, corners: int, inner: float = 1.0,
             offset: float = 0.0) -> list[tuple[float, float]]:
    """Regular polygon (inner=1) or star (inner<1, alternate points pulled in) around (x, y)."""
    points = []
    steps = corners * (2 if inner < 1.0 else 1)
    for i in range(steps):
        r = radius * (inner if inner < 1.0 and i % 2 else 1.0)
        a = angle + offset + 2 * math.pi * i / steps
        points.append((x + r * math.sin(a), y - r * math.cos(a)))
    return points


def _rotated_rect(x: float, y: float, half_w: float, half_h: float, angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(x + dx * c - dy * s, y + dx * s + dy * c)
            for dx, dy in ((-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h))]


def _shape(pen: ImageDraw.ImageDraw, kind: str, x: float, y: float, r: float, angle: float) -> None:
    """Draw one filled shape (value 255) of radius r on the mask."""
    if kind == "circle":
        pen.ellipse((x - r, y - r, x + r, y + r), fill=255)
    elif kind == "ring":
        pen.ellipse((x - r, y - r, x + r, y + r), fill=255)
        pen.ellipse((x - 0.55 * r, y - 0.55 * r, x + 0.55 * r, y + 0.55 * r), fill=0)
    elif kind == "crescent":
        pen.ellipse((x - r, y - r, x + r, y + r), fill=255)
        cx, cy = x + 0.45 * r * math.cos(angle), y + 0.45 * r * math.sin(angle)
        pen.ellipse((cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r), fill=0)
    elif kind == "square":
        pen.polygon(_polygon(x, y, r, angle, 4, offset=math.pi / 4), fill=255)
    elif kind == "diamond":
        pen.polygon(_polygon(x, y, r, angle, 4), fill=255)
    elif kind == "triangle":
        pen.polygon(_polygon(x, y, r, angle, 3), fill=255)
    elif kind == "hexagon":
        pen.polygon(_polygon(x, y, r, angle, 6), fill=255)
    elif kind == "star":
        pen.polygon(_polygon(x, y, r, angle, 5, inner=0.42), fill=255)
    elif kind == "cross":
        pen.polygon(_rotated_rect(x, y, r, 0.3 * r, angle), fill=255)
        pen.polygon(_rotated_rect(x, y, 0.3 * r, r, angle), fill=255)
    elif kind == "bars":
        for shift in (-0.62, 0.0, 0.62):
            bx, by = x - shift * r * math.sin(angle), y + shift * r * math.cos(angle)
            pen.polygon(_rotated_rect(bx, by, r, 0.18 * r, angle), fill=255)
    else:
        raise ValueError(f"unknown shape '{kind}'")


def near_copy(original: bytes, kind: str, seed: int, key: int) -> bytes:
    """A near-duplicate of a JPEG, as a re-upload makes one; never byte-identical to the original.

    kind (one of NEAR_KINDS):
      resized     scaled to 50-90 % of each side
      reencoded   saved again at JPEG quality 30-95
      cropped     3-10 % of the width and of the height cut off, split between the two edges at random
      padded      solid white, black or grey borders of 3-12 % of the side on 1-4 sides (the image grows)
      rotated     turned 1-5 degrees either way and cropped to the largest centred rectangle of the same
                  aspect ratio, as a photo app's straighten tool does, so no filled corner shows
      brightness  every pixel scaled by 0.80-0.95 or 1.05-1.20 (clipped at white)
      overlay     a small text such as "SALE 99" or "@seller123" in PIL's default font, in a corner or at a
                  random spot, in the colour that stands out most, its box at most 6 % of the image
                  (a 32 px image may get a 4 px font)
    Drawn from `stream(seed, "near-copy", key)`, so the same arguments give the same bytes.
    """
    edit = _NEAR_EDITS.get(kind)
    if edit is None:
        raise ValueError(f"unknown near-copy kind '{kind}'; use one of {', '.join(NEAR_KINDS)}")
    rng = stream(seed, "near-copy", key)
    image, quality = edit(Image.open(io.BytesIO(original)).convert("RGB"), rng)
    out = encode_jpeg(image, quality)
    while out == original:  # e.g. re-encoding at the original's quality can reproduce its bytes
        quality = quality - 7 if quality > 40 else quality + 11
        out = encode_jpeg(image, quality)
    return out


def _resized(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    factor = rng.uniform(0.5, 0.9)
    width, height = image.size
    size = (max(8, round(width * factor)), max(8, round(height * factor)))
    return image.resize(size, Image.Resampling.BILINEAR), JPEG_QUALITY


def _reencoded(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    return image, int(rng.integers(30, 96))


def _cropped(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    width, height = image.size
    total = rng.uniform(0.03, 0.10)
    left, top = rng.uniform(0, 1, 2)
    cut_w, cut_h = max(1, round(width * total)), max(1, round(height * total))
    x0, y0 = round(cut_w * left), round(cut_h * top)
    return image.crop((x0, y0, x0 + width - cut_w, y0 + height - cut_h)), JPEG_QUALITY


PAD_COLOURS = ((255, 255, 255), (0, 0, 0), (128, 128, 128), (235, 235, 235))


def _padded(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    width, height = image.size
    sides = rng.random(4) < 0.5  # left, top, right, bottom
    if not sides.any():
        sides[int(rng.integers(4))] = True
    shares = rng.uniform(0.03, 0.12, 4)
    left, top, right, bottom = (max(1, round(side * share)) if on else 0
                                for on, share, side in zip(sides, shares, (width, height, width, height)))
    colour = PAD_COLOURS[int(rng.integers(len(PAD_COLOURS)))]
    canvas = Image.new("RGB", (width + left + right, height + top + bottom), colour)
    canvas.paste(image, (left, top))
    return canvas, JPEG_QUALITY


def _rotated(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    degrees = rng.uniform(1.0, 5.0) * (1 if rng.random() < 0.5 else -1)
    width, height = image.size
    turned = image.rotate(degrees, Image.Resampling.BICUBIC, expand=False)
    cos, sin = math.cos(math.radians(abs(degrees))), math.sin(math.radians(abs(degrees)))
    scale = min(width / (width * cos + height * sin), height / (width * sin + height * cos))
    inner_w, inner_h = max(1, math.floor(width * scale) - 2), max(1, math.floor(height * scale) - 2)
    x0, y0 = (width - inner_w) // 2, (height - inner_h) // 2
    return turned.crop((x0, y0, x0 + inner_w, y0 + inner_h)), JPEG_QUALITY


def _brightness(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    change = rng.uniform(0.05, 0.20) * (1 if rng.random() < 0.5 else -1)
    return ImageEnhance.Brightness(image).enhance(1.0 + change), JPEG_QUALITY


OVERLAY_TEXTS = ("SALE 99", "@seller123", "$45", "-20%", "NEW", "FREE SHIP", "shop.example", "HOT", "RMB 88")
"""ASCII only: the default font (Aileron, built into Pillow) has no glyphs for CJK or currency signs such as ¥."""
OVERLAY_COLOURS = ((255, 255, 255), (20, 20, 20), (220, 30, 30))
OVERLAY_MAX_AREA = 0.06
"""Largest share of the image a text overlay's box may cover."""


def _overlay(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    width, height = image.size
    text = OVERLAY_TEXTS[int(rng.integers(len(OVERLAY_TEXTS)))]
    size = max(4, round(min(width, height) * rng.uniform(0.09, 0.14)))
    boxed = rng.random() < 0.4  # a price-tag style box behind the text
    corner, spot = int(rng.integers(5)), rng.uniform(0, 1, 2)  # corner 4: a random spot
    pen = ImageDraw.Draw(image)
    # shrink until the box fits; on a tiny image drop the box, then take the shortest text
    tries = [(text, boxed, points) for points in range(size, 3, -1)]
    tries += [(text, False, 4), (min(OVERLAY_TEXTS, key=len), False, 4)]
    for text, boxed, size in tries:
        pad = 4 if boxed else 0
        font = ImageFont.load_default(size)
        x0, y0, x1, y1 = pen.textbbox((0, 0), text, font=font)
        box_w, box_h = x1 - x0 + pad, y1 - y0 + pad
        if box_w * box_h <= OVERLAY_MAX_AREA * width * height and box_w < width:
            break
    margin = max(1, round(0.03 * min(width, height)))
    room_x, room_y = max(0, width - box_w - 2 * margin), max(0, height - box_h - 2 * margin)
    if corner < 4:
        left, top = margin + room_x * (corner % 2), margin + room_y * (corner // 2)
    else:
        left, top = margin + round(room_x * spot[0]), margin + round(room_y * spot[1])
    under = np.asarray(image.crop((left, top, left + box_w, top + box_h)), np.float32).reshape(-1, 3).mean(axis=0)
    if boxed:
        under = np.asarray(OVERLAY_COLOURS[int(rng.integers(2))], np.float32)
        pen.rectangle((left, top, left + box_w - 1, top + box_h - 1), fill=tuple(int(v) for v in under))
    colour = max(OVERLAY_COLOURS, key=lambda c: float(np.abs(np.asarray(c) - under).sum()))  # legible
    pen.text((left + pad // 2 - x0, top + pad // 2 - y0), text, font=font, fill=colour)
    return image, JPEG_QUALITY


_NEAR_EDITS = {"resized": _resized, "reencoded": _reencoded, "cropped": _cropped, "padded": _padded,
               "rotated": _rotated, "brightness": _brightness, "overlay": _overlay}


def deal_near_kinds(count: int, rng: np.random.Generator, used: Counter[str]) -> list[str]:
    """`count` NEAR_KINDS values, dealt in rounds of different kinds, the least used first (counting
    `used`, which is not changed, and the kinds already dealt), ties in a random order. Kinds stay
    balanced within one when `used` is, and up to len(NEAR_KINDS) dealt at once are all different."""
    tiebreak = rng.permutation(len(NEAR_KINDS))
    counts = Counter({kind: used[kind] for kind in NEAR_KINDS})
    kinds: list[str] = []
    while len(kinds) < count:
        ranked = sorted(NEAR_KINDS, key=lambda k: (counts[k], tiebreak[NEAR_KINDS.index(k)]))
        round_ = ranked[: count - len(kinds)]
        counts.update(round_)
        kinds += round_
    return kinds


def corrupt_bytes(seed: int, key: int) -> bytes:
    """Random bytes that no image decoder accepts (the first byte is never a JPEG/PNG magic byte)."""
    rng = stream(seed, "corrupt", key)
    data = bytearray(rng.integers(0, 256, int(rng.integers(1000, 6000)), dtype=np.uint8).tobytes())
    data[0] = 0x00
    return bytes(data)


def truncated_bytes(jpeg: bytes, seed: int, key: int) -> bytes:
    """The first 40-70 % of a real JPEG, as an interrupted upload leaves it."""
    return jpeg[: int(len(jpeg) * stream(seed, "truncated", key).uniform(0.4, 0.7))]
