"""The demo listings: how many per leaf, their ids, titles and image paths, and the bad catalog rows.

Listing counts follow a long tail over a seeded popularity ranking of the leaves (the same ranking
drives query popularity in sessions.py), with at least two listings per leaf so every leaf can have a
re-upload. A market too small for that (fewer than 2 x leaves listings) carries only its most popular
leaves. Bad rows are extra lines, each with exactly one defect, so the good rows stay a clean catalog.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

import numpy as np

from tagmill.config import DemoConfig
from tagmill.demo.randomness import py_stream, stream
from tagmill.demo.vocabulary import Leaf

BAD_CATALOG_KINDS = ("malformed", "missing_field", "no_images", "duplicate_product", "bad_image_path",
                     "invalid_utf8", "oversized_field")
LISTING_TAIL_EXPONENT = 0.9
CATEGORY_PATH_SHARE = 0.7
OVERSIZED_CHARS = 5000
INVALID_UTF8 = b"\xff\xfe"
_SENTINEL = "\ue000"  # private-use character swapped for INVALID_UTF8 after encoding

BRANDS = {
    "Electronics": (("Samsung", "三星"), ("Apple", "苹果"), ("Xiaomi", "小米"), ("Huawei", "华为"), ("Sony", "索尼"),
                    ("Lenovo", "联想")),
    "Home & Furniture": (("IKEA", "宜家"), ("Muji", "无印良品"), ("Quanu", "全友")),
    "Home Appliances": (("Haier", "海尔"), ("Midea", "美的"), ("Philips", "飞利浦"), ("Dyson", "戴森")),
    "Kitchen": (("Tefal", "特福"), ("Zwilling", "双立人"), ("Supor", "苏泊尔")),
    "Fashion": (("Nike", "耐克"), ("Adidas", "阿迪达斯"), ("Uniqlo", "优衣库"), ("Zara", "Zara"), ("Coach", "蔻驰")),
    "Beauty": (("Nivea", "妮维雅"), ("Chanel", "香奈儿"), ("Oral-B", "欧乐B")),
    "Sports & Outdoors": (("Decathlon", "迪卡侬"), ("Wilson", "威尔胜"), ("Li-Ning", "李宁")),
    "Vehicles": (("Giant", "捷安特"), ("Toyota", "丰田"), ("Honda", "本田"), ("Yadea", "雅迪")),
    "Toys & Games": (("Lego", "乐高"), ("Mattel", "美泰"), ("Nintendo", "任天堂")),
    "Books & Media": (("Penguin", "企鹅"), ("Oxford", "牛津")),
    "Office & Stationery": (("Deli", "得力"), ("Pilot", "百乐"), ("Casio", "卡西欧")),
    "Garden": (("Gardena", "嘉丁拿"), ("Bosch", "博世")),
    "Baby": (("Chicco", "智高"), ("Pigeon", "贝亲"), ("Goodbaby", "好孩子")),
    "Pets": (("Petkit", "小佩"), ("Hagen", "赫根")),
    "Tools": (("Makita", "牧田"), ("Stanley", "史丹利"), ("DeWalt", "得伟")),
    "Musical Instruments": (("Yamaha", "雅马哈"), ("Fender", "芬达"), ("Roland", "罗兰")),
}
COLOURS = (("black", "黑色"), ("white", "白色"), ("grey", "灰色"), ("red", "红色"), ("blue", "蓝色"),
           ("green", "绿色"), ("pink", "粉色"), ("brown", "棕色"), ("beige", "米色"), ("silver", "银色"))
ADJECTIVES_EN = ("vintage", "large", "small", "portable", "original", "premium", "classic", "modern",
                 "compact", "lightweight", "kids", "brand new", "used", "2 pcs")
ADJECTIVES_ZH = ("二手", "九成新", "大号", "小号", "便携", "原装", "复古", "经典", "正品", "儿童")
NOISE_EN = ("free shipping", "new arrival", "like new", "must go", "OBO", "negotiable", "pickup only",
            "great condition", "!!!")
NOISE_ZH = ("包邮", "全新", "急售", "可小刀", "自提", "转让", "九五新", "低价出")


@dataclass(frozen=True)
class Listing:
    """One listing; `good` is False for the listing behind a bad catalog row (it is not in the truth)."""

    product_id: str
    leaf_index: int
    title: str
    image_paths: tuple[str, ...]
    category_path: str | None
    good: bool = True


@dataclass(frozen=True)
class Catalog:
    listings: list[Listing]
    """Good listings, in product_id order."""
    bad_listings: list[Listing]
    """Listings behind the bad rows that carry their own id; their valid image paths get files too."""
    lines: list[bytes]
    """listings.jsonl, one entry per line, without the newline."""
    bad_lines: list[tuple[int, str]]
    """(1-based line, kind) of every bad row."""
    id_count: int
    """Ids p000001..p{id_count} are taken; `unknown_product_id` gives ids above them."""

    def unknown_product_id(self, k: int) -> str:
        return f"p{self.id_count + 100000 + k:06d}"


def popularity_ranks(n_leaves: int, seed: int) -> np.ndarray:
    """rank[leaf_index] = 0 for the most popular leaf; a seeded permutation."""
    return stream(seed, "popularity").permutation(n_leaves)


def listing_counts(n_leaves: int, n_listings: int, ranks: np.ndarray) -> np.ndarray:
    """Listings per leaf: 2 each for the active leaves plus a 1/rank^0.9 share of the rest (largest remainder)."""
    if n_listings < 2:
        raise ValueError(f"demo.listings is {n_listings}; the demo needs at least 2 listings. Set it to 2 or more")
    n_active = min(n_leaves, n_listings // 2)
    active = ranks < n_active
    weights = np.where(active, 1.0 / (ranks + 1.0) ** LISTING_TAIL_EXPONENT, 0.0)
    spare = n_listings - 2 * n_active
    quota = weights / weights.sum() * spare
    counts = np.floor(quota).astype(np.int64)
    order = sorted(range(n_leaves), key=lambda i: (-(quota[i] - counts[i]), ranks[i]))
    for i in order[: spare - int(counts.sum())]:
        counts[i] += 1
    return counts + np.where(active, 2, 0)


def image_path(seed: int, product_id: str, k: int) -> str:
    """Shard folder and name from a digest, as marketplaces store uploads: "3f/3f9a....jpg"."""
    name = hashlib.sha1(f"{seed}/{product_id}/{k}".encode()).hexdigest()[:20]
    return f"{name[:2]}/{name}.jpg"


def make_title(leaf: Leaf, rnd: random.Random, chinese: bool) -> str:
    """A seller's title naming the leaf (name, synonym or Chinese name) among brand, colour and noise words."""
    brand_en, brand_zh = rnd.choice(BRANDS[leaf.domain])
    colour_en, colour_zh = rnd.choice(COLOURS)
    if chinese:
        parts = [rnd.choice(NOISE_ZH)] if rnd.random() < 0.4 else []
        parts += [brand_zh] if rnd.random() < 0.4 else []
        parts += [colour_zh] if rnd.random() < 0.3 else []
        parts += [rnd.choice(ADJECTIVES_ZH)] if rnd.random() < 0.3 else []
        parts += [leaf.name_zh] + ([rnd.choice(NOISE_ZH)] if rnd.random() < 0.4 else [])
        return (" " if rnd.random() < 0.5 else "").join(parts)
    noun = rnd.choice(leaf.synonyms) if leaf.synonyms and rnd.random() < 0.3 else leaf.name_en
    parts = [brand_en] if rnd.random() < 0.5 else []
    parts += [rnd.choice(ADJECTIVES_EN)] if rnd.random() < 0.4 else []
    parts += [colour_en] if rnd.random() < 0.4 else []
    parts.append(noun)
    text = " ".join(parts)
    case = rnd.random()
    if case < 0.4:
        text = " ".join(w[:1].upper() + w[1:] for w in text.split(" "))
    elif case < 0.5:
        text = text.upper()
    else:
        text = text[:1].upper() + text[1:]
    noise = rnd.random()
    if noise < 0.3:
        text += rnd.choice((" - ", ", ", " ")) + rnd.choice(NOISE_EN)
    elif noise < 0.4:
        text = rnd.choice(NOISE_EN).upper() + " " + text
    return text


def bad_row_kinds(n_good: int, share: float, kinds: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """Kinds of the bad rows to plant so they are `share` of all lines: each kind once, the rest at random."""
    if share <= 0:
        return []
    n_bad = max(len(kinds), round(share * n_good / (1 - share)))
    extra = rng.choice(len(kinds), n_bad - len(kinds))
    return list(kinds) + [kinds[i] for i in extra]


def build_catalog(leaves: list[Leaf], cfg: DemoConfig) -> Catalog:
    """Good listings in id order and the catalog lines, with bad rows planted among them."""
    rng, rnd = stream(cfg.seed, "catalog"), py_stream(cfg.seed, "catalog")
    counts = listing_counts(len(leaves), cfg.listings, popularity_ranks(len(leaves), cfg.seed))
    bad_kinds = bad_row_kinds(cfg.listings, cfg.bad_row_share, BAD_CATALOG_KINDS, rng)
    own_id_kinds = [k for k in bad_kinds if k != "duplicate_product"]
    leaf_of = np.repeat(np.arange(len(leaves)), counts)
    bad_leaf = rng.choice(leaf_of, len(own_id_kinds)) if own_id_kinds else np.zeros(0, dtype=np.int64)
    slots = np.concatenate([leaf_of, bad_leaf])
    kind_of = [None] * len(leaf_of) + own_id_kinds
    order = rng.permutation(len(slots))
    low, high = cfg.images_per_listing

    rows: list[tuple[tuple[int, int], Listing, str | None]] = []  # (sort key, listing, bad kind)
    for number, slot in enumerate(order, start=1):
        leaf, kind = leaves[int(slots[slot])], kind_of[slot]
        product_id = f"p{number:06d}"
        paths = tuple(image_path(cfg.seed, product_id, k) for k in range(rnd.randint(low, high)))
        title = make_title(leaf, rnd, rnd.random() < cfg.chinese_share)
        path = leaf.path_en if rnd.random() < CATEGORY_PATH_SHARE else None
        rows.append(((number, 0), Listing(product_id, leaf.index, title, paths, path, kind is None), kind))
    good = [listing for _, listing, kind in rows if kind is None]
    for k in range(bad_kinds.count("duplicate_product")):
        original = good[rnd.randrange(len(good))]
        number = int(original.product_id[1:]) + rnd.randint(0, 20)
        again = Listing(original.product_id, original.leaf_index, original.title + " (price drop)",
                        original.image_paths, original.category_path, good=False)
        rows.append(((number, 1 + k), again, "duplicate_product"))
    rows.sort(key=lambda row: row[0])

    lines, bad_lines = [], []
    for line_no, (_, listing, kind) in enumerate(rows, start=1):
        lines.append(catalog_line(listing, kind, rnd))
        if kind:
            bad_lines.append((line_no, kind))
    bad = [listing for _, listing, kind in rows if kind and kind != "duplicate_product"]
    return Catalog(good, bad, lines, bad_lines, id_count=len(slots))


def catalog_line(listing: Listing, kind: str | None, rnd: random.Random) -> bytes:
    """The JSON line of a listing, broken in exactly the one way `kind` names (None: a good row)."""
    record: dict = {"product_id": listing.product_id, "title": listing.title,
                    "image_paths": list(listing.image_paths)}
    if listing.category_path is not None:
        record["category_path"] = listing.category_path
    if kind == "missing_field":
        del record["product_id"]
    elif kind == "no_images":
        record["image_paths"] = []
    elif kind == "bad_image_path":
        record["image_paths"][-1] = bad_image_path(listing.image_paths[-1], rnd)
    elif kind == "invalid_utf8":
        cut = rnd.randint(1, max(1, len(listing.title) - 1))
        record["title"] = listing.title[:cut] + _SENTINEL + listing.title[cut:]
    elif kind == "oversized_field":
        record["title"] = oversized_text(listing.title, rnd)
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    if kind == "malformed":
        text = text[: int(len(text) * rnd.uniform(0.35, 0.75))]
    return text.encode("utf-8").replace(_SENTINEL.encode("utf-8"), INVALID_UTF8)


def bad_image_path(path: str, rnd: random.Random) -> str:
    """An absolute path or one whose `..` climbs out of the image root."""
    name = path.rsplit("/", 1)[-1]
    return rnd.choice((f"/var/www/images/{path}", f"../../uploads/{name}", f"{path[:2]}/../../{name}"))


def oversized_text(text: str, rnd: random.Random) -> str:
    """Keyword stuffing: the text repeated to 5,000-5,500 characters."""
    target = OVERSIZED_CHARS + rnd.randint(0, 500)
    return ((text + " ") * (target // (len(text) + 1) + 1))[:target]


def listings_of_leaf(listings: list[Listing], n_leaves: int) -> list[list[Listing]]:
    """Good listings grouped by leaf index (in product_id order within a leaf)."""
    out: list[list[Listing]] = [[] for _ in range(n_leaves)]
    for listing in listings:
        out[listing.leaf_index].append(listing)
    return out
