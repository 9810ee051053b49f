"""The demo marketplace's category tree: domain > group > leaf, with English, Chinese and synonym names.

Every other part of the generator (titles, queries, images, truth files) reads leaves from here, so the
tree is plain data checked once by `check_leaves`. Leaf names are common English product nouns, and the
synonyms are, where WordNet 3.0 has them, lemmas of the same WordNet synset as the name (sofa/couch,
refrigerator/fridge): a later stage merges query synonyms with WordNet, and the demo should reward that.
No two leaves share a name or synonym, so every query surface form belongs to exactly one leaf.

Known WordNet gaps, kept because shoppers use them: "fridge" is a hyponym of "refrigerator" (not the same
synset) and "bike" is also a lemma of the motorcycle synset. Names WordNet lacks ("smartwatch",
"dash cam", "vinyl record") have no synonyms, or synonyms that are WordNet synonyms of each other.
"""

from __future__ import annotations

from dataclasses import dataclass

# (domain, ((group, ((name_en, name_zh, (synonym, ...)), ...)), ...))
TREE: tuple = (
    ("Electronics", (
        ("Phones & Tablets", (
            ("mobile phone", "手机", ("cellphone", "cellular phone")),
            ("tablet", "平板电脑", ()),
            ("smartwatch", "智能手表", ()),
        )),
        ("Computers", (
            ("laptop", "笔记本电脑", ("laptop computer",)),
            ("desktop computer", "台式电脑", ()),
            ("monitor", "显示器", ()),
            ("keyboard", "键盘", ()),
            ("mouse", "鼠标", ("computer mouse",)),
            ("printer", "打印机", ("printing machine",)),
        )),
        ("Audio & Video", (
            ("television", "电视", ("tv", "television set", "telly")),
            ("headphones", "耳机", ("earphones",)),
            ("speaker", "音箱", ("loudspeaker",)),
            ("camera", "相机", ("photographic camera",)),
        )),
    )),
    ("Home & Furniture", (
        ("Living Room", (
            ("sofa", "沙发", ("couch", "lounge")),
            ("armchair", "扶手椅", ()),
            ("coffee table", "茶几", ("cocktail table",)),
            ("bookcase", "书柜", ()),
            ("rug", "地毯", ("carpet", "carpeting")),
        )),
        ("Bedroom", (
            ("bed", "床", ()),
            ("mattress", "床垫", ()),
            ("wardrobe", "衣柜", ("closet",)),
            ("dresser", "五斗柜", ("chest of drawers", "bureau")),
        )),
        ("Dining & Study", (
            ("dining table", "餐桌", ()),
            ("chair", "椅子", ()),
            ("desk", "书桌", ()),
        )),
        ("Decor", (
            ("mirror", "镜子", ()),
            ("curtain", "窗帘", ("drape", "drapery")),
        )),
    )),
    ("Home Appliances", (
        ("Large Appliances", (
            ("refrigerator", "冰箱", ("fridge", "icebox")),
            ("washing machine", "洗衣机", ("washer", "automatic washer")),
            ("air conditioner", "空调", ("air conditioning",)),
            ("microwave", "微波炉", ("microwave oven",)),
        )),
        ("Small Appliances", (
            ("vacuum cleaner", "吸尘器", ("vacuum",)),
            ("hair dryer", "吹风机", ("blow dryer", "hair drier")),
            ("electric fan", "电风扇", ("blower",)),
            ("kettle", "电水壶", ("boiler",)),
            ("rice cooker", "电饭煲", ()),
            ("blender", "搅拌机", ("liquidizer",)),
            ("iron", "熨斗", ("smoothing iron",)),
        )),
    )),
    ("Kitchen", (
        ("Cookware", (
            ("frying pan", "平底锅", ("frypan", "skillet")),
            ("wok", "炒锅", ()),
            ("pressure cooker", "高压锅", ()),
        )),
        ("Tableware", (
            ("plate", "盘子", ()),
            ("bowl", "碗", ()),
            ("mug", "马克杯", ()),
            ("chopsticks", "筷子", ()),
        )),
        ("Kitchen Tools", (
            ("kitchen knife", "菜刀", ()),
            ("cutting board", "砧板", ("chopping board",)),
            ("thermos", "保温杯", ("thermos bottle", "thermos flask")),
        )),
    )),
    ("Fashion", (
        ("Clothing", (
            ("t-shirt", "T恤", ("tee shirt",)),
            ("shirt", "衬衫", ()),
            ("dress", "连衣裙", ("frock",)),
            ("jeans", "牛仔裤", ("blue jeans", "denim")),
            ("trousers", "裤子", ("pants",)),
            ("jacket", "夹克", ()),
            ("sweater", "毛衣", ("jumper",)),
        )),
        ("Shoes", (
            ("sneakers", "运动鞋", ("gym shoes", "tennis shoes")),
            ("boots", "靴子", ()),
            ("sandals", "凉鞋", ()),
            ("high heels", "高跟鞋", ()),
        )),
        ("Bags & Accessories", (
            ("handbag", "手提包", ("purse",)),
            ("backpack", "双肩包", ("knapsack", "rucksack")),
            ("wallet", "钱包", ("billfold",)),
            ("sunglasses", "太阳镜", ("dark glasses", "shades")),
        )),
        ("Jewelry & Watches", (
            ("necklace", "项链", ()),
            ("bracelet", "手镯", ("bangle",)),
            ("watch", "手表", ()),
        )),
    )),
    ("Beauty", (
        ("Makeup", (
            ("lipstick", "口红", ("lip rouge",)),
            ("perfume", "香水", ()),
            ("nail polish", "指甲油", ("nail enamel", "nail varnish")),
            ("sunscreen", "防晒霜", ("sunblock",)),
        )),
        ("Personal Care", (
            ("toothbrush", "牙刷", ()),
            ("electric shaver", "电动剃须刀", ("electric razor",)),
            ("comb", "梳子", ()),
            ("hair clipper", "理发器", ()),
        )),
    )),
    ("Sports & Outdoors", (
        ("Fitness", (
            ("dumbbell", "哑铃", ()),
            ("treadmill", "跑步机", ()),
            ("yoga mat", "瑜伽垫", ()),
        )),
        ("Ball Sports", (
            ("basketball", "篮球", ()),
            ("soccer ball", "足球", ()),
            ("tennis racket", "网球拍", ("tennis racquet",)),
            ("golf club", "高尔夫球杆", ()),
        )),
        ("Camping", (
            ("tent", "帐篷", ()),
            ("sleeping bag", "睡袋", ()),
            ("fishing rod", "鱼竿", ("fishing pole",)),
            ("binoculars", "望远镜", ("field glasses", "opera glasses")),
            ("flashlight", "手电筒", ("torch",)),
        )),
        ("Wheels & Boards", (
            ("skateboard", "滑板", ()),
            ("helmet", "头盔", ()),
        )),
    )),
    ("Vehicles", (
        ("Two Wheelers", (
            ("bicycle", "自行车", ("bike", "cycle")),
            ("electric bicycle", "电动自行车", ()),
            ("motorcycle", "摩托车", ()),
            ("electric scooter", "电动滑板车", ()),
        )),
        ("Cars & Parts", (
            ("car", "汽车", ("automobile", "auto", "motorcar")),
            ("truck", "卡车", ("motortruck",)),
            ("tire", "轮胎", ("tyre",)),
            ("dash cam", "行车记录仪", ()),
        )),
        ("Boats", (
            ("boat", "船", ()),
            ("kayak", "皮划艇", ()),
        )),
    )),
    ("Toys & Games", (
        ("Toys", (
            ("teddy bear", "泰迪熊", ("teddy",)),
            ("doll", "娃娃", ("dolly",)),
            ("building blocks", "积木", ()),
            ("kite", "风筝", ()),
            ("jigsaw puzzle", "拼图", ()),
        )),
        ("Games", (
            ("board game", "桌游", ()),
            ("playing cards", "扑克牌", ()),
            ("chess set", "国际象棋", ()),
        )),
        ("Video Games", (
            ("game console", "游戏机", ()),
            ("video game", "游戏光盘", ("computer game",)),
        )),
    )),
    ("Books & Media", (
        ("Books", (
            ("novel", "小说", ()),
            ("textbook", "教科书", ("schoolbook",)),
            ("comic book", "漫画书", ()),
            ("dictionary", "词典", ("lexicon",)),
        )),
        ("Music & Film", (
            ("vinyl record", "黑胶唱片", ("phonograph record",)),
            ("compact disc", "光盘", ("cd", "compact disk")),
            ("dvd", "影碟", ("videodisc",)),
            ("magazine", "杂志", ()),
        )),
    )),
    ("Office & Stationery", (
        ("Writing", (
            ("notebook", "笔记本", ()),
            ("pen", "钢笔", ()),
            ("pencil", "铅笔", ()),
            ("marker", "记号笔", ()),
        )),
        ("Office Supplies", (
            ("calculator", "计算器", ("calculating machine",)),
            ("stapler", "订书机", ("stapling machine",)),
            ("scissors", "剪刀", ()),
            ("desk lamp", "台灯", ()),
        )),
    )),
    ("Garden", (
        ("Plants", (
            ("potted plant", "盆栽", ()),
            ("flowerpot", "花盆", ()),
            ("seeds", "种子", ()),
        )),
        ("Garden Tools", (
            ("lawn mower", "割草机", ("mower",)),
            ("garden hose", "浇水软管", ()),
            ("watering can", "喷壶", ("watering pot",)),
            ("shovel", "铁锹", ()),
        )),
        ("Outdoor Living", (
            ("hammock", "吊床", ()),
            ("barbecue grill", "烧烤炉", ("barbecue",)),
        )),
    )),
    ("Baby", (
        ("Baby Gear", (
            ("stroller", "婴儿车", ("pram", "baby carriage", "pushchair")),
            ("crib", "婴儿床", ("cot",)),
            ("car seat", "安全座椅", ()),
            ("high chair", "儿童餐椅", ("highchair", "feeding chair")),
        )),
        ("Feeding & Care", (
            ("baby bottle", "奶瓶", ("feeding bottle", "nursing bottle")),
            ("diapers", "纸尿裤", ("nappies",)),
            ("pacifier", "安抚奶嘴", ("baby's dummy",)),
            ("bib", "围兜", ()),
        )),
    )),
    ("Pets", (
        ("Dogs & Cats", (
            ("dog bed", "狗窝", ()),
            ("cat tree", "猫爬架", ()),
            ("leash", "牵引绳", ("tether",)),
            ("litter box", "猫砂盆", ()),
            ("pet carrier", "宠物航空箱", ()),
        )),
        ("Fish & Birds", (
            ("aquarium", "鱼缸", ("fish tank",)),
            ("birdcage", "鸟笼", ()),
        )),
    )),
    ("Tools", (
        ("Power Tools", (
            ("electric drill", "电钻", ()),
            ("chainsaw", "电锯", ("chain saw",)),
        )),
        ("Hand Tools", (
            ("hammer", "锤子", ()),
            ("screwdriver", "螺丝刀", ()),
            ("wrench", "扳手", ("spanner",)),
            ("pliers", "钳子", ("plyers",)),
            ("tape measure", "卷尺", ("tapeline",)),
        )),
        ("Hardware", (
            ("light bulb", "灯泡", ("lightbulb", "bulb")),
            ("faucet", "水龙头", ("spigot",)),
            ("padlock", "挂锁", ()),
        )),
    )),
    ("Musical Instruments", (
        ("Strings", (
            ("guitar", "吉他", ()),
            ("violin", "小提琴", ("fiddle",)),
            ("electric guitar", "电吉他", ()),
            ("ukulele", "尤克里里", ("uke",)),
        )),
        ("Keys & Wind", (
            ("piano", "钢琴", ("pianoforte",)),
            ("harmonica", "口琴", ("mouth organ",)),
            ("saxophone", "萨克斯", ("sax",)),
            ("flute", "长笛", ()),
        )),
        ("Drums & Audio", (
            ("drum kit", "架子鼓", ()),
            ("microphone", "麦克风", ("mike",)),
        )),
    )),
)

PLURAL_NAMES = frozenset({
    "headphones", "chopsticks", "jeans", "trousers", "sneakers", "boots", "sandals", "high heels",
    "sunglasses", "binoculars", "building blocks", "playing cards", "scissors", "seeds", "diapers", "pliers",
})
"""Names that are already plural: they have no separate plural query form."""

IRREGULAR_PLURALS = {"mouse": "mice", "kitchen knife": "kitchen knives", "dvd": "dvds"}

DISPLAY_OVERRIDES = {"dvd": "DVD", "t-shirt": "T-Shirt"}
"""Leaf names whose catalog display form is not plain word capitalisation."""


@dataclass(frozen=True)
class Leaf:
    """One leaf category; `index` is its position in the tree (0-based) and `leaf_id` its stable id."""

    index: int
    leaf_id: str
    domain: str
    group: str
    name_en: str
    name_zh: str
    synonyms: tuple[str, ...]

    @property
    def display_name(self) -> str:
        """The leaf as a catalog shows it: "Sofa", "Mobile Phone", "DVD"."""
        return DISPLAY_OVERRIDES.get(self.name_en) or " ".join(w[:1].upper() + w[1:] for w in self.name_en.split())

    @property
    def path_en(self) -> str:
        return f"{self.domain} > {self.group} > {self.display_name}"

    @property
    def plural(self) -> str | None:
        """The English plural of the name, or None when the name is already plural."""
        return None if self.name_en in PLURAL_NAMES else pluralize(self.name_en)


def pluralize(name: str) -> str:
    """Plural of a one- or two-word noun: the last word takes the English plural ending."""
    if name in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[name]
    head, _, last = name.rpartition(" ")
    if last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        last = last[:-1] + "ies"
    elif last.endswith("fe"):
        last = last[:-2] + "ves"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def build_leaves(tree: tuple = TREE) -> list[Leaf]:
    """All leaves of the tree in tree order, with ids c001, c002, ...; checked by `check_leaves`."""
    leaves: list[Leaf] = []
    for domain, groups in tree:
        for group, items in groups:
            for name_en, name_zh, synonyms in items:
                index = len(leaves)
                leaves.append(Leaf(index, f"c{index + 1:03d}", domain, group, name_en, name_zh, tuple(synonyms)))
    check_leaves(leaves)
    return leaves


def check_leaves(leaves: list[Leaf]) -> None:
    """Refuse a tree whose names collide: each English name, synonym and Chinese name names one leaf only."""
    owner: dict[str, str] = {}
    for leaf in leaves:
        if not leaf.name_zh or len(leaf.synonyms) > 3:
            raise ValueError(f"leaf '{leaf.name_en}': needs a Chinese name and at most 3 synonyms")
        for term in (leaf.name_en, *leaf.synonyms, leaf.name_zh):
            key = term.casefold()
            if key in owner:
                raise ValueError(f"'{term}' names both '{owner[key]}' and '{leaf.name_en}'; "
                                 "give each leaf its own names")
            owner[key] = leaf.name_en
