"""Tag -> WordNet noun synset: the sense picked for each raw tag, so that synonyms merge into one class.

58.com (../shared/seeds/000_f75818d8242f0064.txt, "Data construction") merges "semantically similar tags using
WordNet" into a ~720-class taxonomy over 17 domains. This module does the first half: every raw tag (an English
query, an Open Images display name such as "Sofa bed", or a Chinese query) gets one WordNet noun synset, or is
reported as unmapped. Tags that get the same synset are the synonyms the taxonomy stage merges ("couch" and
"sofa" -> sofa.n.01; "cell phone" and "Mobile phone" -> cellular_telephone.n.01). `hierarchy.py` turns the
synsets into a tree under the domain roots defined here.

Nothing is dropped: a tag that cannot be mapped comes back with `mapped_by="unmapped"` and a sentence saying why.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from tagmill.labeling.text import HAN, HAN_CLASS
from tagmill.taxonomy.hierarchy import resolve_domain_roots

NOUN = "n"

DEFAULT_DOMAIN_ROOTS: tuple[str, ...] = (
    "furniture.n.01",            # sofa, sofa bed (convertible), chair, table.n.02, bed
    "clothing.n.01",             # dress, jeans, hat, necktie
    "footwear.n.02",             # shoe, boot, gym_shoe (sneakers); footwear.n.02 is the "covering" sense shoes hang from
    "jewelry.n.01",              # necklace, earring
    "home_appliance.n.01",       # refrigerator, washer, microwave, toaster
    "electronic_equipment.n.01",  # cellular_telephone, television_receiver, computer_keyboard
    "computer.n.01",             # laptop, desktop (under machine.n.01, not electronic_equipment)
    "conveyance.n.03",           # vehicle.n.01 (car, bicycle, boat) and public_transport.n.01 (bus)
    "toy.n.01",                  # WordNet's plaything.n.01: teddy, doll
    "sports_equipment.n.01",     # skis' bindings, baseball gear; balls sit under game_equipment (-> "other")
    "musical_instrument.n.01",   # guitar, piano
    "tool.n.01",                 # drill, hammer
    "toiletry.n.01",             # perfume, cosmetic
    "container.n.01",            # handbag (bag.n.04), backpack, suitcase, bottle, mug
    "food.n.01",                 # dishes, pizza, beverages
    "food.n.02",                 # solid food: produce, fruit, vegetables (also domain "food")
    "animal.n.01",               # pets, wildlife
    "plant.n.02",                # tree, flower
    "structure.n.01",            # building, house, tower, tent
    "device.n.01",               # catch-all for other devices (watch, lamp, earphone); listed late
    "equipment.n.01",            # catch-all for other equipment (camera, ball via game_equipment); listed last
)
"""WordNet 3.0 noun synsets that a marketplace's product domains hang from (58.com ended with 17 domains; food
has two roots that share the domain name "food", so these 21 roots give 20 domain names, "other" aside; the
last two, device and equipment, are catch-alls a deployment may drop to get closer to 58.com's 17).

A synset's domain is decided per hypernym path: on one path the deepest root wins (it is the most specific:
a guitar's path passes device.n.01 and then musical_instrument.n.01, and musical_instrument wins); across a
synset's several paths (multiple inheritance) the path whose root comes first in this tuple wins (a car is both
a container and a conveyance in WordNet; conveyance.n.03 is listed first). `hierarchy.hypernym_path` applies it."""

# Weights of the disambiguation score (see `_score`). Frequency lies in [0, 1], context similarity in [0, 1].
CONTEXT_WEIGHT = 3.0
DOMAIN_BONUS = 0.75
QUALIFIER_BONUS = 1.0
SENSE_PRIOR = 1.0  # pseudo-count spread over WordNet's sense order, 1/(rank+1)
PRODUCT_PRIOR = 0.75
"""Bonus of a sense that is a thing a marketplace sells and a photo shows (PRODUCT_LEXNAMES) over an abstract
sense: "racket" the sports implement, not the noise; "book" the bound sheets, not the written work; "cucumber"
the vegetable, not the vine. Measured on the 119 Open Images names Tencent ML-Images keys to one WordNet id
(tests/test_synsets.py): agreement 0.857 without it, 0.891 with it, 0.9496 (113/119) with `_is_product`'s
exceptions, 0.958 (114/119) with the zero-count sense order of `_Mapper._candidates_of`."""
PRODUCT_LEXNAMES = frozenset({"noun.artifact", "noun.object", "noun.food", "noun.animal"})
_NOT_A_THING_GLOSSES = ("informal term for", "slang for", "(slang)", "(informal)", "an amount of", "a quantity of")
ANIMAL = "animal.n.01"

_QUALIFIER = re.compile(r"\(([^()]*)\)")
_HAN_GAP = re.compile(f"(?<=[{HAN_CLASS}])\\s+(?=[{HAN_CLASS}])")
_WORD = re.compile(r"[a-z0-9]+(?:['.\-][a-z0-9]+)*")


@dataclass(frozen=True)
class TagSense:
    """The sense picked for one raw tag.

    tag: the raw tag as given. synset: e.g. "sofa.n.01"; None when unmapped. mapped_by: "wordnet" (an English
    tag), "chinese_table" (a Chinese tag translated through the zh->en table) or "unmapped". english: the English
    phrase looked up (the tag itself, or its translation); None when nothing could be translated. score: the
    winning sense's score (0 when unmapped). detail: one sentence saying why this sense, or why unmapped.
    exact: whether the synset names the whole phrase; False when it came from a head-noun or qualifier
    fallback ("electric bicycle" -> bicycle.n.01): such a tag is a kind of the synset, not a synonym.
    """

    tag: str
    synset: str | None
    mapped_by: str
    english: str | None
    score: float
    detail: str
    exact: bool = True


def read_zh_table(path: str) -> dict[str, str]:
    """The zh->en mapping table: a UTF-8 CSV of rows "zh,en" (e.g. "沙发,sofa").

    A first row "zh,en" is taken as a header; blank lines and lines starting with "#" are ignored; cells are
    stripped. Output: {zh: en}. Raises ValueError naming the file and the 1-based row for a row without exactly
    two non-empty cells, or a zh that appears twice with different translations.
    """
    table: dict[str, str] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            cells = [cell.strip() for cell in row]
            if number == 1 and [cell.lower() for cell in cells] == ["zh", "en"]:
                continue
            if len(cells) != 2 or not cells[0] or not cells[1]:
                raise ValueError(f"{path}, row {number}: expected two non-empty cells 'zh,en', found {row!r}. "
                                 "Fix: one Chinese tag and its English phrase per row, comma-separated")
            zh, en = cells
            if table.get(zh, en) != en:
                raise ValueError(f"{path}, row {number}: {zh!r} is mapped twice ({table[zh]!r} and {en!r}). "
                                 "Fix: keep one translation per Chinese tag")
            table[zh] = en
    return table


def map_tags(tags: Iterable[str], wn, *, context: Mapping[str, Sequence[str]] | None = None,
             domain_roots: Sequence[str] = DEFAULT_DOMAIN_ROOTS,
             zh_table: Mapping[str, str] | None = None) -> dict[str, TagSense]:
    """Map each raw tag to one WordNet noun synset.

    Inputs: `tags`, raw tags (English phrases, Open Images display names, Chinese queries; duplicates collapse);
    `wn`, a WordNet reader (`tagmill.wordnet.load_wordnet()`); `context`, optional {tag: co-occurring
    tags}, used to disambiguate (co-occurring tags need not be in `tags`); `domain_roots`, synset names whose
    descendants get a bonus (default DEFAULT_DOMAIN_ROOTS); `zh_table`, optional {zh: en} (`read_zh_table`).
    Output: {tag: TagSense} with one entry for every distinct input tag, unmapped ones included.

    English: lowercased, accents folded, a parenthesised qualifier ("Seal (animal)") taken out and used as
    context, words joined with "_" ("Mobile phone" -> mobile_phone; hyphens also tried both ways), looked up
    with WordNet's morphology (plurals); when the whole phrase has no noun synset, ever shorter tails of it are
    tried ("red leather sofa" -> leather_sofa -> sofa: the head noun); when not even the head noun is a WordNet
    noun, the qualifier is looked up instead ("Enduro (Motorcycle)" -> motorcycle). Chinese (any CJK character): the whole tag
    in `zh_table`, else its jieba tokens each through `zh_table`, the translations joined and looked up as
    English; tokens without an entry are named in `detail`.
    """
    mapper = _Mapper(wn, tuple(resolve_domain_roots(domain_roots, wn)), dict(zh_table or {}))
    context = context or {}
    return {tag: mapper.map(tag, context.get(tag, ())) for tag in dict.fromkeys(tags)}


@dataclass(frozen=True)
class _Scored:
    score: float
    rank: int
    synset: object
    freq: float
    context: float
    domain: str
    qualified: bool


class _Mapper:
    """Caches shared by one `map_tags` call: lookups by phrase, hypernym closures and similarities by synset."""

    def __init__(self, wn, domain_roots: tuple[str, ...], zh_table: dict[str, str]):
        self.wn = wn
        self.domain_roots = domain_roots
        self.zh_table = zh_table
        self._zh_longest = max((len(key) for key in zh_table), default=0)
        self._candidates: dict[str, list[tuple[object, int]]] = {}
        self._closure: dict[object, frozenset] = {}
        self._closure_lemmas: dict[object, frozenset] = {}
        self._domain: dict[object, str | None] = {}
        self._wup: dict[tuple, float] = {}
        self._plain: dict[str, tuple[object | None, str]] = {}

    # ---- one tag ----

    def map(self, tag: str, context_tags: Sequence[str]) -> TagSense:
        text = tag.strip()
        if HAN.search(text):
            return self._map_chinese(tag, text, context_tags)
        english, qualifiers = _split_qualifier(text)
        if not _words(english):
            return _unmapped(tag, None, f"no English word in {tag!r}")
        return self._map_english(tag, english, "wordnet", list(context_tags), qualifiers, "")

    def _map_chinese(self, tag: str, text: str, context_tags: Sequence[str]) -> TagSense:
        # query normalization puts spaces between jieba's tokens ("台式 电脑"); the table has the word whole
        text = _HAN_GAP.sub("", text)
        if text in self.zh_table:
            english = self.zh_table[text]
            return self._map_english(tag, english, "chinese_table", list(context_tags), [],
                                     f"zh table: {text!r} -> {english!r}; ")
        tokens, missing = [], []
        for token in _jieba_tokens(text):
            if token in self.zh_table:
                tokens.append(self.zh_table[token])
            elif HAN.search(token):
                # jieba keeps words it knows whole ("皮沙发"); the longest table entries inside it still count
                for piece, translated in _max_match(token, self.zh_table, self._zh_longest):
                    (tokens if translated else missing).append(self.zh_table.get(piece, piece))
            elif _words(token):  # Latin letters or digits inside a Chinese query ("iphone手机")
                tokens.append(token)
        if not tokens:
            return _unmapped(tag, None, f"no zh table entry for {text!r} nor for its jieba tokens "
                                        f"{', '.join(repr(t) for t in missing)}")
        english = " ".join(tokens)
        note = f"jieba tokens via zh table -> {english!r}"
        if missing:
            note += f" (no entry for {', '.join(repr(t) for t in missing)})"
        return self._map_english(tag, english, "chinese_table", list(context_tags), [], note + "; ")

    def _map_english(self, tag: str, english: str, mapped_by: str, context_tags: list[str],
                     qualifiers: list[str], prefix: str) -> TagSense:
        found = self._lookup(english)
        how = ""
        if found is None and qualifiers:
            # "Enduro (Motorcycle)": the name is unknown to WordNet, the qualifier names its kind
            found = next((f for f in map(self._lookup, qualifiers) if f is not None), None)
            if found is not None:
                how = f"qualifier fallback {found[0]!r} (no synset for {_phrase(english)!r} nor its head noun); "
                qualifiers = []
        if found is None:
            return _unmapped(tag, english, f"{prefix}no noun synset for {_phrase(english)!r} nor its head noun")
        lemma, dropped, candidates = found
        if dropped:
            how = f"head-noun fallback {lemma!r} (no synset for {_phrase(english)!r}); "
        qualifier_words = {_phrase(q) for q in qualifiers} - {""}
        if qualifier_words and not any(self._qualified(s, qualifier_words) for s, _, _ in candidates):
            context_tags = context_tags + qualifiers  # no sense sits under the qualifier: use it as context
            qualifier_words = set()
        # a partner that is the same word (its translation, "鼠标" next to "mouse") says nothing about the sense
        own = _phrase(english)
        context_synsets = [s for s, phrase in (self._plain_sense(t) for t in context_tags)
                           if s is not None and phrase != own]
        scored = sorted((self._score(s, count, rank, candidates, context_synsets, qualifier_words)
                         for s, count, rank in candidates), key=lambda x: (-x.score, x.rank))
        best = scored[0]
        why = f"frequency {best.freq:.2f}"
        if context_synsets:
            why += f", context similarity {best.context:.2f} over {len(context_synsets)} co-occurring tag(s)"
        if best.qualified:
            why += f", under the qualifier {', '.join(sorted(qualifier_words))!r}"
        why += f", under domain root {best.domain}" if best.domain else ", under no domain root"
        runner = f"; runner-up {scored[1].synset.name()} {scored[1].score:.2f}" if len(scored) > 1 else ""
        detail = (f"{prefix}{how}{best.synset.name()} ({best.synset.definition()}) scored {best.score:.2f}: {why}; "
                  f"{len(candidates)} noun sense(s){runner}")
        return TagSense(tag, best.synset.name(), mapped_by, english, round(best.score, 6), detail, exact=not how)

    # ---- disambiguation ----

    def _score(self, synset, count: int, rank: int, candidates, context_synsets,
               qualifier_words: set[str]) -> _Scored:
        """score = frequency + CONTEXT_WEIGHT * context + DOMAIN_BONUS * in_domain + QUALIFIER_BONUS * qualified
        + PRODUCT_PRIOR * product (a sense whose lexicographer file is one of PRODUCT_LEXNAMES).

        frequency = (count + SENSE_PRIOR/(rank+1)) / sum over the phrase's candidate senses of the same, where
        count is the sense-tagged corpus count of the matching lemma (WordNet's cntlist, `Lemma.count()`) and
        rank is WordNet's sense order (senses never seen in the corpus that the word names first moved ahead of
        those where it is a lesser synonym), a small prior that also breaks ties between senses never seen in the
        corpus. context = mean over the co-occurring tags of the Wu-Palmer similarity between the candidate and
        that tag's own sense (picked without context), in [0, 1]; its weight lets two clearly related neighbours
        outvote a dominant frequency ("mouse" next to "keyboard" and "laptop" is the device, next to "rat" the
        rodent). in_domain = 1 when a domain root is the candidate or one of its hypernyms: in a product
        marketplace the furniture "table" is more likely than the data table. qualified = 1 when a parenthesised
        qualifier names one of the candidate's hypernyms ("Seal (animal)"). Ties go to WordNet's sense order.
        """
        total = sum(c + SENSE_PRIOR / (r + 1) for _, c, r in candidates)
        freq = (count + SENSE_PRIOR / (rank + 1)) / total
        ctx = 0.0
        if context_synsets:
            ctx = sum(self._similarity(synset, other) for other in context_synsets) / len(context_synsets)
        domain = self.domain_of(synset)
        qualified = bool(qualifier_words) and self._qualified(synset, qualifier_words)
        score = (freq + CONTEXT_WEIGHT * ctx + (DOMAIN_BONUS if domain else 0.0)
                 + (QUALIFIER_BONUS if qualified else 0.0)
                 + (PRODUCT_PRIOR if self._is_product(synset, candidates) else 0.0))
        return _Scored(score, rank, synset, freq, ctx, domain or "", qualified)

    def _is_product(self, synset, candidates) -> bool:
        """Whether the sense earns PRODUCT_PRIOR: its lexicographer file is one of PRODUCT_LEXNAMES, and
        - a noun.animal sense is an animal (under animal.n.01), not one of the file's parts, eggs, genera or
          microbes ("egg": the ovum is noun.animal; a photo of an egg shows the food);
        - it is not the meat of an animal the same word names ("chicken", "lobster", "shellfish": a photo under
          the animal's name shows the animal, as Open Images and Tencent ML-Images label it);
        - WordNet does not define it as an amount ("fruit": "an amount of a product") nor call it slang ("tin
          can": "informal term for a destroyer"; a listing names a thing by its everyday name)."""
        lexname = synset.lexname()
        if lexname not in PRODUCT_LEXNAMES or synset.definition().startswith(_NOT_A_THING_GLOSSES):
            return False
        if lexname == "noun.animal":
            return self._is_animal(synset)
        return not (lexname == "noun.food" and any(self._is_animal(s) for s, _, _ in candidates))

    def _is_animal(self, synset) -> bool:
        return ANIMAL in self.closure(synset)

    def _qualified(self, synset, qualifier_words: set[str]) -> bool:
        return not qualifier_words.isdisjoint(self.closure_lemmas(synset))

    def _plain_sense(self, tag: str) -> tuple[object | None, str]:
        """(synset, looked-up phrase) of a co-occurring tag, its sense picked without context (so the result
        does not depend on order)."""
        if tag not in self._plain:
            sense = self.map(tag, ())
            self._plain[tag] = (self.wn.synset(sense.synset) if sense.synset else None,
                                _phrase(sense.english or ""))
        return self._plain[tag]

    def _similarity(self, a, b) -> float:
        key = (a, b) if a.name() <= b.name() else (b, a)
        if key not in self._wup:
            self._wup[key] = a.wup_similarity(b) or 0.0
        return self._wup[key]

    def domain_of(self, synset) -> str | None:
        """The first domain root (in `domain_roots` order) that is the synset or one of its hypernyms."""
        if synset not in self._domain:
            ancestors = self.closure(synset)
            self._domain[synset] = next((r for r in self.domain_roots if r in ancestors), None)
        return self._domain[synset]

    def closure_lemmas(self, synset) -> frozenset:
        """Lemma names (lowercase) of the synset's hypernyms, itself excluded."""
        if synset not in self._closure_lemmas:
            self._closure_lemmas[synset] = frozenset(
                lemma.lower() for name in self.closure(synset) - {synset.name()}
                for lemma in self.wn.synset(name).lemma_names())
        return self._closure_lemmas[synset]

    def closure(self, synset) -> frozenset:
        """Names of the synset and all its hypernyms (instance hypernyms included), memoized along the way."""
        if synset not in self._closure:
            names = {synset.name()}
            for parent in synset.hypernyms() + synset.instance_hypernyms():
                names |= self.closure(parent)
            self._closure[synset] = frozenset(names)
        return self._closure[synset]

    # ---- lookup ----

    def _lookup(self, english: str):
        """(lemma found, words dropped from the front, [(synset, count, rank)]) for the whole phrase, else for
        ever shorter tails ending in the head noun; None when not even the head noun is a WordNet noun."""
        words = _words(english)
        for start in range(len(words)):
            for lemma in _lemma_variants(words[start:]):
                candidates = self._candidates_of(lemma)
                if candidates:
                    return lemma, start, candidates
        return None

    def _candidates_of(self, lemma: str) -> list:
        if lemma not in self._candidates:
            synsets = self.wn.synsets(lemma, pos=NOUN)
            forms = {lemma}
            base = self.wn.morphy(lemma, NOUN)
            if base:
                forms.add(base)
            counted = [(s, _lemma_count(s, forms)) for s in synsets]
            # WordNet lists the senses never seen in its sense-tagged corpus in no meaningful order; among those,
            # a synset the word names first comes before one where it is a lesser synonym ("gondola": the boat,
            # named so, before gondola_car.n.01, the freight car)
            order = sorted(range(len(counted)),
                           key=lambda i: (counted[i][1] == 0 and not _names_first(counted[i][0], forms), i))
            self._candidates[lemma] = [(*counted[i], rank) for rank, i in enumerate(order)]
        return self._candidates[lemma]


def _names_first(synset, forms: set[str]) -> bool:
    return synset.lemma_names()[0].lower() in forms


def _lemma_count(synset, forms: set[str]) -> int:
    return max((lemma.count() for lemma in synset.lemmas() if lemma.name().lower() in forms), default=0)


def _split_qualifier(text: str) -> tuple[str, list[str]]:
    """("Seal (animal)") -> ("Seal", ["animal"]): the qualifier becomes a context tag."""
    qualifiers = [q.strip() for q in _QUALIFIER.findall(text) if q.strip()]
    return _QUALIFIER.sub(" ", text).strip(), qualifiers


def _words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", text.lower().replace("&", " and "))
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).replace("\u2019", "'")
    return _WORD.findall(folded)


def _phrase(english: str) -> str:
    return "_".join(_words(english))


def _lemma_variants(words: list[str]) -> list[str]:
    """WordNet spellings to try for a word sequence: as written ("t-shirt"), hyphens as "_", hyphens removed,
    a possessive "'s" removed, two words written as one or hyphenated, a possessive dropped by the shopper put
    back ("baby dummy" -> baby's_dummy)."""
    joined = "_".join(words)
    variants = [joined, joined.replace("-", "_"), joined.replace("-", ""), re.sub(r"'s(?=_|$)", "", joined)]
    if len(words) == 2:  # "cell phone" -> cellphone, "sun glasses" -> sunglasses, "t shirt" -> t-shirt
        variants += ["".join(words).replace("-", ""), "-".join(words), f"{words[0]}'s_{words[1]}"]
    return list(dict.fromkeys(v for v in variants if v))


def _max_match(token: str, table: Mapping[str, str], longest: int) -> list[tuple[str, bool]]:
    """Forward maximum matching of `token` over the table's keys (the longest `longest` characters):
    [(piece, in table)], unmatched runs merged."""
    pieces: list[tuple[str, bool]] = []
    i = 0
    while i < len(token):
        size = next((n for n in range(min(longest, len(token) - i), 0, -1) if token[i:i + n] in table), 0)
        if size:
            pieces.append((token[i:i + size], True))
            i += size
        else:
            if pieces and not pieces[-1][1]:
                pieces[-1] = (pieces[-1][0] + token[i], False)
            else:
                pieces.append((token[i], False))
            i += 1
    return pieces


def _jieba_tokens(text: str) -> list[str]:
    # jieba with its HMM, unlike labeling.text's segmenter: the HMM groups characters its dictionary lacks
    # into words instead of cutting them apart, so _max_match can still find a multi-character zh table
    # entry inside such a word
    import jieba  # imported on first Chinese tag: building its prefix dictionary takes about a second

    jieba.setLogLevel(60)  # silence "Building prefix dict ..." on stderr
    return [t.strip() for t in jieba.lcut(text) if t.strip()]


def _unmapped(tag: str, english: str | None, why: str) -> TagSense:
    return TagSense(tag, None, "unmapped", english, 0.0, why)


def is_chinese(tag: str) -> bool:
    """True when the tag holds any CJK ideograph (the rule `map_tags` uses to send a tag through the zh table)."""
    return bool(HAN.search(tag))


__all__ = ["DEFAULT_DOMAIN_ROOTS", "TagSense", "is_chinese", "map_tags", "read_zh_table"]
