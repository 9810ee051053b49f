"""The one typed configuration of tagmill: every default lives here.

A config file is TOML with one table per section below (`[run]`, `[spark]`, `[inputs]`, ...). Any key
left out keeps its default; an unknown key, a wrong type or an out-of-range value is refused on load
with a message that names the key and the fix. `tagmill config show` prints the effective config.

Each section is a frozen pydantic model: a key's type, bounds (`Field`) and choices (`Literal`) are its
declaration, its attribute docstring is its description; `Says` words the refusal of a bound or choice.
"""

import datetime as dt
import difflib
import re
import textwrap
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

Tier = Literal["click", "contact", "in_conversation"]
TIERS = get_args(Tier)
"""Positive interaction tiers, weakest first. A stronger tier implies the weaker ones (MSURU 5.2)."""
EventFormat = Literal["jsonl", "parquet", "csv"]
EVENT_FORMATS = get_args(EventFormat)
Split = Literal["train", "validation", "test"]
SPLITS = get_args(Split)
LabelSpace = Literal["classes", "query_clusters"]
LABEL_SPACES = get_args(LabelSpace)
CodeMethod = Literal["itq", "pca"]
CODE_METHODS = get_args(CodeMethod)
Loss = Literal["asl", "bce", "softmax", "sampled_softmax"]
LOSSES = get_args(Loss)
Architecture = Literal["resnet18", "resnet50", "resnext50_32x4d"]
ARCHITECTURES = get_args(Architecture)
Pooling = Literal["max", "avg"]
POOLINGS = get_args(Pooling)
BadShardPolicy = Literal["fail", "skip"]
BAD_SHARD_POLICIES = get_args(BadShardPolicy)
Nonlinearity = Literal["tanh", "relu", "sigmoid"]
NONLINEARITIES = get_args(Nonlinearity)


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key and how to fix it."""

    def __init__(self, key: str, problem: str, fix: str):
        self.key = key
        super().__init__(f"config key '{key}': {problem}. Fix: {fix}")


class Says(NamedTuple):
    """How a key's `Field` bound or `Literal` choice refuses a value: `{value}` and `{choices}` are filled in;
    `key` reports it under another key of the section (several keys checked as one)."""

    problem: str
    fix: str
    key: str = ""


class _Refused(ValueError):
    """A check of `_check` failed; pydantic adds the key's location."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem, self.fix = problem, fix


def _check(test, problem: str, fix: str) -> AfterValidator:
    """A check of one key beyond a bound: a value failing `test` is refused; `problem` may name it as {value}."""
    def check(value):
        if not test(value):
            raise _Refused(problem.format(value=value), fix)
        return value
    return AfterValidator(check)


def _is_date(text: str) -> bool:
    try:
        return bool(dt.date.fromisoformat(text))
    except ValueError:
        return False


_LIST = BeforeValidator(lambda value: tuple(value) if isinstance(value, list) else value)  # TOML arrays
_Positive = Annotated[int, Field(ge=1), Says("must be at least 1", "set a positive whole number")]
_UNSUPPORTED = Says("'{value}' is not supported", "use one of {choices}")
_FORMAT = Says("'{value}' is not a supported format", "use one of {choices}")
_LR = Says("lr must be positive, weight_decay and warmup_epochs not negative", "use e.g. lr = 0.01", key="lr")


class Section(BaseModel):
    """A config section: immutable, unknown keys refused, types strict (a float key also takes an int)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True)


class RunConfig(Section):
    date: Annotated[str, _check(lambda d: not d or _is_date(d), "'{value}' is not a date",
                                "write it as YYYY-MM-DD, e.g. 2026-11-20")] = ""
    """Run date YYYY-MM-DD; outputs are partitioned by it. Empty means today (UTC)."""
    seed: int = 20261121
    """Seed for every random choice of a build (resampling rounding, splits)."""

    def run_date(self) -> dt.date:
        return dt.date.fromisoformat(self.date) if self.date else dt.datetime.now(dt.UTC).date()


def _is_master(url: str) -> bool:
    local = re.fullmatch(r"local(\[(\*|\d+)(,\s*\d+)?\])?", url)
    return bool(local or url == "yarn" or url.startswith(("spark://", "k8s://")))


_LOG_LEVELS = ("ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")


class SparkConfig(Section):
    master: Annotated[str, _check(_is_master, "'{value}' is not a Spark master URL",
                                  "use local[*], spark://HOST:PORT, yarn or k8s://https://HOST:PORT")] = "local[*]"
    """local[*], local[N], spark://host:port, yarn or k8s://... (also `--master` on the command line)."""
    app_name: str = "tagmill"
    """Spark application name (shown by the cluster manager)."""
    shuffle_partitions: Annotated[int, Field(ge=0), Says("must be 0 (fit to machine) or positive",
                                                         "set a positive number or 0")] = 0
    """0 fits them to the machine: 2 per core of a local master, Spark's default otherwise."""
    log_level: Annotated[str, _check(lambda level: level.upper() in _LOG_LEVELS, "'{value}' is not a log level",
                                     "use one of DEBUG, INFO, WARN, ERROR")] = "WARN"
    """Spark's own log level (its console output; tagmill's logging is set by `-q`/`-v`)."""
    driver_memory: str = ""
    """JVM heap when tagmill starts Spark itself (local runs, where the driver is also the executor).
    Empty fits it to the machine: a third of physical memory, between 1g and 16g."""
    settings: dict[str, str] = {}
    """Any further Spark settings, passed through unchanged (e.g. spark.executor.memory)."""


class InputsConfig(Section):
    events: str = ""
    """Search-log events: a folder of files, optionally partitioned as date=YYYY-MM-DD/."""
    events_format: Annotated[EventFormat, _FORMAT] = "jsonl"
    """File format of the events: jsonl, parquet or csv (csv needs a header row)."""
    catalog: str = ""
    """Listing catalog: product_id, title, image_paths, optional category_path."""
    catalog_format: Annotated[EventFormat, _FORMAT] = "jsonl"
    """File format of the catalog: jsonl, parquet or csv."""
    image_root: str = ""
    """Folder that image_paths are relative to."""
    allowed_image_roots: Annotated[tuple[str, ...], _LIST] = ()
    """Further folders an image may resolve into once symlinks are followed (e.g. a storage mount the image
    folders link to). Any other image outside image_root is quarantined as bad_image_path."""
    event_columns: dict[str, str] = {}
    """The events' own column names for ours, applied when reading: e.g. {ts = "time", sid = "session_id"}
    (their name = our name). Ours: session_id, time, query, action, product_id (mine-logs' required columns)."""
    catalog_columns: dict[str, str] = {}
    """The catalog's own column names for ours: e.g. {images = "image_paths", id = "product_id"}. Ours:
    product_id, title, image_paths, optional category_path."""
    max_quarantined_share: Annotated[float, Field(ge=0, le=1), Says("must be in [0, 1]", "use e.g. 0.5")] = 0.5
    """A stage whose quarantined rows pass this share of its input fails before publishing (exit status 6),
    printing its top reasons with a count and an example row each; rows a rule leaves out by design (expired
    or bot events) count neither way. 1 turns the check off."""


class OutputsConfig(Section):
    root: str = "out"
    """Every table is written under ROOT/<stage>/<table>/run_date=YYYY-MM-DD/."""


class TextConfig(Section):
    wordnet_dir: str = "/usr/share/wordnet"
    """WordNet 3.0 database folder (Debian: wordnet-base + wordnet-sense-index)."""
    stopwords: Annotated[tuple[str, ...], _LIST] = (
        "a", "an", "the", "for", "and", "or", "of", "with", "in", "on", "to", "buy", "sale",
        "cheap", "used", "new", "的", "了", "和", "与", "出售", "二手", "全新",
    )
    """Query words dropped by normalization (the original query is kept as an alias)."""


class MiningConfig(Section):
    retention_days: _Positive = 90
    """Events older than this many days before the run date are ignored and counted."""
    label_tier: Annotated[Tier, Says("'{value}' is not a tier", "use one of {choices}")] = "in_conversation"
    """Weakest interaction that makes a query a label: click, contact or in_conversation (MSURU 5.2-5.3)."""
    min_label_images: _Positive = 10
    """K of MSURU 3.2/5.6: a label on fewer images than this is removed."""
    bot_max_events: _Positive = 500
    """A session with more events than this is a bot; all its events are dropped and counted."""
    bot_max_actions: _Positive = 100
    """A session with more clicks, contacts and in-conversations together than this is a bot."""
    max_query_chars: _Positive = 200
    """Longer queries are quarantined as oversized_field."""
    max_id_chars: _Positive = 128
    """Longer session, user or product ids are quarantined as oversized_field."""
    max_title_chars: _Positive = 1000
    """Longer titles are quarantined as oversized_field."""
    tier_weights: Annotated[dict[str, float], _check(
        lambda w: set(w) == set(TIERS) and all(0 < v < 1 for v in w.values()), "got {value}",
        "give click, contact and in_conversation each a weight strictly between 0 and 1")] = {
        "click": 0.3, "contact": 0.6, "in_conversation": 0.9}
    """Chance that one session's action at a tier means the query names the product; a label's confidence
    is the noisy-or over its sessions."""


_Share = Annotated[float, Field(ge=0, le=1), Says("must be in [0, 1]",
                                                  "use e.g. 0.0005 for min_share, 0.9 for the conditionals")]
_Count = Annotated[int, Field(ge=0), Says("must be at least 0", "use 0 to turn it off")]


_Whole = Annotated[int, Field(ge=1), Says("must be at least 1", "use a positive whole number")]


class DatasetConfig(Section):
    """assemble + gate + shards: how samples are split and written."""

    seller_categories: bool = True
    """Label every image of a listing with the category its seller picked (category_path's leaf; its ancestors
    too with taxonomy.propagate_to_ancestors), a label source next to the search log and the teacher ..."""
    seller_category_confidence: _Share = 0.9
    """... with this confidence."""
    min_train_samples: _Whole = 1
    """A class with fewer training samples after the split folds into its parent class in the taxonomy (or is
    dropped without one): a class the model never trains on can only be wrong in validation and test."""
    resample_factor: Annotated[float, _check(lambda f: not (f != 0 and f < 1), "{value} would shrink the data",
                                             "use 0 to turn resampling off, or a factor of at least 1")] = 2.0
    """Square-root resampling over the dataset's classes, every source's labels counted: the training split's
    repeats total factor x its samples (MSURU 5.4 doubled the data). 0 = off. The trainer shows each sample
    its repeats times per epoch with train.use_repeats."""
    label_space: Annotated[LabelSpace, Says("'{value}' is not a label space", "use one of {choices}")] = "classes"
    """classes: the taxonomy's classes (raw tags without the taxonomy stage); query_clusters: each search-log
    label becomes its query's K-means cluster (side-info stage, MSURU 5.5), teacher tags are left out."""
    split_ratios: Annotated[dict[str, float], _check(
        lambda r: set(r) == set(SPLITS) and not any(v < 0 for v in r.values())
        and abs(sum(r.values()) - 1.0) <= 1e-9 and r["train"] > 0, "got {value}",
        "give train, validation and test shares that sum to 1, train above 0")] = {
        "train": 0.8, "validation": 0.1, "test": 0.1}
    """Share of products in each split; a stable hash of the product decides, so a product never crosses."""
    image_max_side: Annotated[int, _check(lambda s: s == 0 or s >= 16, "{value} is too small",
                                          "use 0 to keep original bytes, or a side of at least 16 pixels")] = 256
    """Images are re-encoded as JPEG so their longer side is at most this; 0 keeps the original bytes."""
    jpeg_quality: Annotated[int, Field(ge=1, le=100), Says("must be in 1..100", "use e.g. 90")] = 90
    """JPEG quality of the images re-encoded into the shards (1-100)."""
    teacher_adds_to_labeled_images: bool = False
    """Keep a teacher tag that adds a class to an image the search log or its seller already labeled. Off: on
    such an image a tag is kept only where one of those labels names the same tag (it confirms), since nothing
    can check an addition (the teacher's calibration counts it wrong) and, where a product has one category,
    it is mostly a look-alike class: on the demo 5 of the 49 such tags that reached the dataset were right.
    Images without those labels (cold start) keep every calibrated tag either way."""
    drop_label_issues: bool = False
    """Drop the search-log labels that the teacher's out-of-fold scores flag as likely wrong (cleanlab's
    multi-label find_label_issues; table `label_issues` of assemble lists them either way)."""
    shard_max_samples: _Positive = 1000
    """A shard is rolled over after this many samples ..."""
    shard_max_bytes: _Positive = 64 * 1024 * 1024
    """... or once it holds this many bytes, whichever comes first."""


class ImagePassConfig(Section):
    """image-pass: one decode and one teacher forward per unique image -> tags, embedding, compact code
    (58.com pseudo-labels; MSURU 3.2 compressed embedding)."""

    teacher: str = ""
    """The teacher model: a TorchScript file, a `tagmill train` output folder, or a `tagmill train`
    checkpoint.pt. Empty: the image pass still reads, hashes, codes and deduplicates every image (pixels
    alone verify a pair); no teacher tags, embeddings or cold-start tagging."""
    vocabulary: str = ""
    """The teacher's labels in the Open Images format (MID,DisplayName; header optional). Empty: the
    classes.json beside a tagmill model."""
    teacher_id: str = ""
    """Name recorded with every tag; empty: the model file's name."""
    prototypes: bool = True
    """Score a `tagmill train` teacher by its embedding's nearness to each class's prototype (trainer.prototypes),
    not by its logits. On the demo its cold-start listing images' top class was right 0.87 of the time, not
    0.64: a class learned from few images scores low on its head, while its images' embeddings lie together.
    The scores are a softmax over the classes, one class per image: where images carry several classes
    (taxonomy.propagate_to_ancestors), they share it, and a class's calibrated threshold falls with it. A
    teacher trained elsewhere has no prototypes and scores by its logits either way."""
    target_precision: Annotated[float, Field(ge=0, lt=1), Says("{value} is not in [0, 1)", "use e.g. 0.9")] = 0.9
    """Each teacher class gets the lowest threshold at which its tags are right this often, estimated on the
    search-log (and seller-category) labeled images the teacher never trained on, reweighted to the label mix of
    the cold-start images it tags (labeling.calibration); a class that cannot reach it gets no tags. 0: no
    calibration, `threshold` or `thresholds_file` for every class."""
    calibration_min_positives: _Positive = 5
    """Right checks a class needs above its own threshold; with fewer it takes the threshold of all classes
    pooled (unless its few checks already fall short of the target)."""
    pool_listing_images: bool = True
    """Score a listing's images together: each class's score of an image is the mean of its out-of-fold scores
    over the scored images of its listing (a class an image's top_k did not hold counts 0), since a listing's
    photos show one product. Views that agree add up; one odd view is outvoted. Calibration and the tags use
    the pooled scores (only with `target_precision`: without it, tags are cut per image in the forward pass). On
    the demo (same teacher and images), the cold-start images' top class was right 0.886
    of the time pooled, 0.829 alone, and the calibrated tags reached 0.794 of them at precision 0.967 against
    0.722 at 0.923. Off for a marketplace whose listings mix products (bundles, lots)."""
    keep_unchecked_tags: bool = False
    """Keep, at `threshold`, the tags of classes no search-log label names (an external teacher's vocabulary),
    whose precision nothing can estimate."""
    threshold: Annotated[float, Field(gt=0, le=1), Says("{value} is not in (0, 1]", "use e.g. 0.5")] = 0.5
    """Without calibration, a tag is kept when the teacher's score reaches this ..."""
    thresholds_file: str = ""
    """... or the per-tag threshold in this CSV (MID or display name, threshold)."""
    top_k: _Positive = 10
    """At most this many tags per image, highest scores first."""
    image_size: Annotated[int, _check(lambda s: s == 0 or s >= 16, "{value} is too small",
                                      "use 0 (from the model) or at least 16")] = 0
    """Side of the teacher's input; 0 takes it from the model's model.json, else 224."""
    batch_size: _Positive = 32
    """Images decoded and forwarded through the teacher together."""
    bf16: bool = False
    """Run the forward pass under bfloat16 autocast (only where the CPU supports bf16)."""
    max_pixels: _Positive = 89_478_485
    """Decompression-bomb limit: images with more pixels are quarantined unread (Pillow's default)."""
    code_bits: Annotated[int, Field(ge=8, le=1024, multiple_of=8),
                         Says("{value} is not a multiple of 8 in 8..1024", "use 64, 128 or 256")] = 64
    """Length of the compact binary code of each embedding."""
    code_method: Annotated[CodeMethod, Says("'{value}' is unknown", "use one of {choices}")] = "itq"
    """itq (PCA then an iterative rotation, Gong & Lazebnik) or pca (sign of the top components)."""
    code_fit_sample: _Positive = 20000
    """Embeddings sampled to fit the code's projection."""
    thumbnail_size: Annotated[int, Field(ge=16, le=256), Says("{value} is outside 16..256", "use 64")] = 64
    """Side of the small image kept for pixel-level verification of near-duplicate candidates."""


_Similarity = Annotated[float, Field(ge=-1, le=1), Says("must be in [-1, 1]", "use e.g. 0.85")]


class DedupConfig(Section):
    """Near-duplicate removal (MSURU 3.2): Hamming candidates on the codes, then verified pairs only."""

    max_hamming: Annotated[int, Field(ge=0), Says("must be at least 0", "use e.g. 12")] = 12
    """Layout-code pairs within this Hamming distance become candidates ..."""
    exact_hamming: Annotated[int, Field(ge=0), Says("must be at least 0", "use e.g. 5")] = 5
    """... of which all within this distance are certain to be found; farther ones up to max_hamming are found
    when the search's tables catch them (for random 64-bit codes about 90, 72, 53, 36, 23 % at 6-10 bits),
    unless the set is small enough for an exact search up to max_hamming (~30,000 codes; 7 bits at 100,000,
    6 at 300,000). Exact search costs grow steeply with the radius: 5 keeps 10M 64-bit codes near 20 s on 2
    cores."""
    shortlist: Annotated[int, Field(ge=1), Says("must be at least 1", "use e.g. 8")] = 8
    """... each image's nearest few of them by the layout descriptors' cosine are verified, a pair when it is
    among either image's (bounds the verifier's work to about this many pairs per image;
    labeling.near_duplicates.code_candidates). Real-photo set (benchmarks/near_duplicates_real.py, seed 5:
    Fashion-MNIST articles of one class are dozens of look-alikes within a few bits), true pairs reaching
    verification: 8 -> 0.89 (5.2 pairs per image), 12 -> 0.90 (7.5) with the ringing-tolerant trimming of
    labeling.layout (before it: 8 -> 0.82, 12 -> 0.84, 24 -> 0.85); ranked by Hamming distance instead,
    8 -> 0.82. With the parts below and the trimming down to a quarter that cuts off captions in a margin:
    8 -> 0.973 (7.4 pairs per image), 12 -> 0.976 (9.4). The descriptor and the radius bound it: 0.93 of
    true pairs are within 12 bits at all, and a partner is among the other's 8 nearest of all images by
    cosine for 0.90 (crops, turns and copies of copies 0.81-0.87); the parts of the picture below lift it
    to 0.95. Planted set: 8 -> 0.98 of the duplicate pairs."""
    region_shortlist: Annotated[int, Field(ge=0), Says("must be at least 0", "use e.g. 3, or 0 for none")] = 3
    """Candidates from parts of the picture too (labeling.layout.REGIONS: top, bottom, left and right halves
    and the centre, each with a code of its own): each image's nearest this many by the part's cosine among
    the pairs within region_hamming bits of that part's code; 0 turns them off ..."""
    region_hamming: Annotated[int, Field(ge=0), Says("must be at least 0", "use e.g. 8")] = 8
    """... Real-photo set (benchmarks/near_duplicates_real.py, seed 5), true pairs reaching verification:
    0.888 without the parts (5.2 pairs per image), 0.939 at 6 bits (7.0), 0.946 at 8 (7.4), 0.951 at 10
    (7.8); a caption, a crop, padding or a turn moves the whole descriptor but leaves some part close
    (labeling.candidates.layout_candidates). End to end without a teacher at 8 bits: precision 1.000,
    recall 0.919 (0.860 without the parts); planted set 0.998 / 0.970. With the verification and trimming
    of today: 1.000 / 0.972, every re-upload kind at 0.91 or more; planted set 0.995 / 0.975. Cost: at
    100,000 simulated codes 12.8 pairs per image to verify (5.8 without) and 99 s for all candidates on 2
    cores (30 s without)."""
    min_cosine: _Similarity = 0.85
    """With a teacher, a candidate pair is a duplicate only if the float embeddings agree this well (or its
    fine detail is shared, see below) ... Measured with the demo's teacher (benchmarks/near_duplicates_real.py
    --teacher): on the real-photo and planted sets the pixel check below lets no pair through that the
    embeddings stop, and the embeddings cost recall (true pairs' cosines spread down to 0.75 and 0.59 at the
    1st percentile; a classifier's embedding is not made brightness-invariant): pixel-verified true pairs
    kept at 0.85: 2,569 of 2,645 real, 703 of 770 planted (brightness copies 0.56); at 0.3: 2,645 / 769. But
    at 0.3, 0.6 and 0.7 a drawn look-alike pair of a small demo market passed the pixels
    (tests/test_image_pass_job.py::test_a_catalog_without_any_duplicate_builds), so 0.85 stays. Instead a
    pair whose fine detail is shared (labeling.verification._SHARED_DETAIL) needs no agreeing embedding:
    end to end with the demo's teacher, real set precision 1.000, recall 0.955 -> 0.968 (brightened
    copies 0.903 -> 0.969); planted set 1.000, 0.901 -> 0.970 (brightened 0.571 -> 0.929)."""
    min_pixel_similarity: _Similarity = 0.96
    """... and the aligned thumbnails agree this well: the share of pixels whose luma agrees within 20 levels,
    0 for a fine-detail veto (labeling.verification). Real-photo set (benchmarks/near_duplicates_real.py,
    seed 5, 64 px thumbnails, pixels alone; true pairs and the look-alikes among each image's 12 nearest
    candidates): 0.88 -> true pairs verified 0.952, 176 of 22,592 look-alikes passed; 0.90 -> 0.950 / 59;
    0.92 -> 0.946 / 9 (per kind: padding 0.89, rotation 0.91, jpeg 0.94, the rest 0.96-0.98). Planted set (seed 7):
    0.92 -> 0.972, 1 of 3,987 look-alikes. End to end at 0.96 (the benchmark, candidates included): real set
    precision 1.000 recall 0.860 (0.92: 0.994 / 0.864), planted set 0.997 / 0.966; on the demo market's own
    image pass 0.92 let 37 look-alike pairs through (pixel similarity 0.90-0.99, median 0.944) next to 94
    planted ones (median 1.0): 0.96 keeps 90 of those and 6 look-alikes. With the tone fit, the weak-detail
    exception and the longer turn refinement of today, the real set's best look-alike candidate scores
    0.944 and its true candidate pairs are verified 0.968 (2,817 of 2,910)."""
    split_guard: _Similarity = 1.0
    """Candidate pairs whose thumbnails agree this well stay in one split even when not verified as
    duplicates (only the split grouping grows); 1 turns it off. Look-alike candidates chain through it
    (measured at 0.6 on the demo before pairs never compared on pixels were told apart: one component
    held most products), so it is off by default."""




class TaxonomyConfig(Section):
    """Raw tags of both label sources -> classes (58.com 3; Tencent ML-Images): rare filter, co-occurrence
    rules, WordNet synonym merge, hierarchy and domains. Every drop and merge is recorded with its numbers."""

    enabled: bool = True
    """Off: assemble uses every raw tag as its own class, as before the taxonomy stage existed."""
    min_share: _Share = 0.0005
    """Tags on fewer than this share of labeled images are dropped (58.com: 0.05 %) ..."""
    min_images: _Count = 10
    """... and tags on fewer than this many images (MSURU's K, for teacher tags too)."""
    isolated_max_conditional: _Share = 0.0
    """A tag whose strongest partner co-occurs with it on less than this share of its images is noise and
    dropped (only tags that share images with other tags at all); 0 turns the rule off."""
    isolated_min_images: _Count = 20
    """... judged only for tags on at least this many images."""
    merge_min_conditional: _Share = 0.9
    """Two tags with P(a|b) and P(b|a) both at least this are merge candidates ..."""
    merge_cooccurring: bool = False
    """... merged only when this is on (off: listed in the report for an analyst to decide)."""
    child_min_conditional: _Share = 0.95
    """A tag implied by another (P(parent|child) at least this) is a child candidate, for the report."""
    max_tags_per_image: Annotated[int, Field(ge=2), Says("must be at least 2", "use e.g. 64")] = 64
    """Images with more distinct tags are left out of the co-occurrence matrix (its cost is quadratic)."""
    merge_synonyms: bool = True
    """Tags that map to one WordNet synset become one class with aliases."""
    canonicalize: bool = True
    """Fold the surface forms of one thing (misspellings, plurals, translations, WordNet synonyms, modifier
    phrases) into the most frequent one, each backed by co-click evidence (taxonomy.canonical) ..."""
    fold_min_conditional: _Share = 0.6
    """... a form t folds into T only when at least this share of t's products were also clicked under T (of
    its images, for a tag no search labeled): shoppers treat the two as one thing ..."""
    fold_min_shared: _Count = 1
    """... over at least this many shared products (images) ..."""
    spelling_ratio: Annotated[float, Field(ge=1), Says("must be at least 1", "use e.g. 2")] = 2.0
    """... and a misspelling only when the word is on at least this many times its images ..."""
    fold_strong_conditional: _Share = 0.9
    """... or when at least this share of the misspelling's products were clicked under the word ..."""
    fold_strong_shared: _Count = 3
    """... over at least this many products."""
    domain_roots: Annotated[tuple[str, ...], _LIST] = ()
    """WordNet noun synsets that collapse leaves into domains (58.com: 17); empty: the 21 of
    taxonomy.synsets.DEFAULT_DOMAIN_ROOTS, documented there with the rule that picks one per path."""
    zh_table: str = ""
    """CSV of Chinese -> English terms (zh,en) for mapping Chinese tags to synsets; empty: none."""
    propagate_to_ancestors: bool = False
    """Assemble also labels each image with the ancestors of its classes (Tencent ML-Images)."""




class SideInfoConfig(Section):
    """Titles as side information (SICoT 3.2; MSURU 5.5): title tokens, word vectors trained in the build,
    query clusters. The vectors and each sample's token ids ship with the dataset; the trainer co-trains on
    them when train.side_info_weight > 0."""

    enabled: bool = True
    """Off: no title tokens, word vectors or query clusters (and no co-training on titles)."""
    noise_phrases: Annotated[tuple[str, ...], _LIST] = ()
    """Title boilerplate removed before tokenizing ("free shipping", "包邮"); empty: the built-in list of
    labeling.titles.DEFAULT_NOISE_PHRASES."""
    max_title_words: _Whole = 32
    """Token ids kept per title (the rest are cut)."""
    vector_dim: _Whole = 64
    """Length of each word vector."""
    window: _Whole = 5
    """Context words on each side of a word (Word2Vec window)."""
    min_count: _Whole = 2
    """Words seen fewer times get the unknown id."""
    epochs: _Whole = 5
    """Passes of Word2Vec over the titles and queries."""
    query_clusters: Annotated[int, Field(ge=0), Says("must be at least 0", "use 0 to turn clustering off")] = 50
    """K of the K-means over query embeddings (MSURU 5.5), at most half the distinct queries; 0: none."""
    query_embeddings: str = ""
    """A user-provided query embedding table (CSV/TSV "query,v1,...", or .npy beside a .txt of queries) to
    cluster instead of the mean word vectors."""


_NotNegative = Annotated[int, Field(ge=0), Says("must not be negative", "set 0 or more")]


class TrainConfig(Section):
    """`tagmill train`: the bundled trainer (58.com, OLX, MSURU 3.3-3.4, SICoT)."""

    arch: Annotated[Architecture, _UNSUPPORTED] = "resnet50"
    """resnet18, resnet50 or resnext50_32x4d (58.com moved to ResNeXt-50)."""
    pooling: Annotated[Pooling, _UNSUPPORTED] = "max"
    """Global pooling before the head: max (58.com's choice) or avg."""
    init_weights: str = ""
    """A state-dict file with published ResNet/ResNeXt weights to start from (nothing is downloaded), or the
    checkpoint.pt of a model of ours (its head rows are carried over by class name; the demo's final model
    starts from its teacher)."""
    loss: Annotated[Loss, _UNSUPPORTED] = "asl"
    """asl (sigmoid + Asymmetric Loss), bce, softmax, or sampled_softmax (MSURU 3.4)."""
    asl_gamma_neg: float = 4.0
    """Asymmetric Loss focusing of negatives (gamma-, 58.com: 4)."""
    asl_gamma_pos: float = 0.0
    """Asymmetric Loss focusing of positives (gamma+, 0: plain cross-entropy on positives)."""
    asl_clip: float = 0.05
    """Asymmetric Loss probability margin: negatives scored below this cost nothing."""
    sampling_ratio: Annotated[float, Field(gt=0, le=1), Says("{value} is not in (0, 1]", "use e.g. 0.8")] = 0.8
    """sampled_softmax: share of all classes in each example's candidate set (MSURU 5.7 found 0.8 best)."""
    image_size: _Positive = 224
    """Side of the square crop the model trains and predicts on."""
    epochs: _Positive = 10
    """Passes over the training split."""
    fold_epochs: _Positive = 1
    """Cold-start fold teachers (`tagmill train --folds K --cold-start`, trainer.folds): the last epochs, which
    each fold model trains on from the shared trunk; the trunk trains the others without any fold's images."""
    freeze_epochs: _NotNegative = 1
    """OLX: train only the head for this many epochs, then unfreeze the backbone."""
    batch_size: _Positive = 64
    """Images per optimizer step (per process)."""
    eval_batch_size: _Positive = 128
    """Images per forward pass of validation and of the prototype pass (no gradients, so a larger batch than
    training's fits, and runs faster on a CPU: at the demo's 64 px, 128 images a batch took 0.8x the time of 64)."""
    optimizer: Annotated[Literal["sgd", "adamw"], _UNSUPPORTED] = "sgd"
    """sgd (Nesterov momentum 0.9, MSURU 3.3) or adamw."""
    lr: Annotated[float, Field(gt=0), _LR] = 0.01
    """Peak learning rate after the warm-up."""
    weight_decay: Annotated[float, Field(ge=0), _LR] = 1e-4
    """Weight decay of the optimizer (AdamW: decoupled)."""
    warmup_epochs: Annotated[float, Field(ge=0), _LR] = 0.5
    """Linear warm-up, then a cosine decay to zero over the remaining steps."""
    num_workers: _NotNegative = 2
    """DataLoader worker processes per training process (0: read in the training process)."""
    shuffle_buffer: _NotNegative = 1000
    """Samples held by the shuffle buffer of each worker."""
    use_repeats: bool = True
    """Show each sample `repeats` times per epoch (square-root resampling, MSURU 5.4)."""
    on_bad_shard: Annotated[BadShardPolicy, _UNSUPPORTED] = "fail"
    """A shard that is missing or fails its checksum: fail (clear error) or skip (counted)."""
    threshold: float = 0.5
    """Score threshold of the Hamming loss."""
    knn_k: _Positive = 10
    """k of P@k and C@k (MSURU 5.1)."""
    head_tail_boundary: _Positive = 200
    """Classes with at least this many training images are head classes (SICoT 4.1)."""
    prototypes: bool = True
    """Write the class prototypes (prototypes.npy: one more pass over the train split after training, ~15 s of
    the demo's; their temperature is fitted on the last validation's embeddings) that an image pass scores this
    model by when it is a teacher. Off for a model no image pass will use, e.g. the demo's final and co-trained
    models; a model without them scores by its logits."""
    validate_every: _NotNegative = 1
    """Validate after every this many epochs, and always after the last (0: after the last only). An earlier
    epoch's validation only fills its log line and metrics/epoch-NNN.json (a learning curve), at one pass over
    the validation split each. A cold-start fold trunk, which stops before the last epoch, validates on every
    validate_every-th only. The demo's models validate after their last epoch only."""
    checkpoint_every: _NotNegative = 0
    """Also checkpoint every this many steps inside an epoch (0: only at epoch ends)."""
    device: Annotated[str, _check(lambda d: d == "cpu" or re.fullmatch(r"cuda(:\d+)?", d),
                                  "'{value}' is not a device", "use cpu, cuda or cuda:0")] = "cpu"
    """cpu, cuda or cuda:N."""
    max_steps: _NotNegative = 0
    """Stop after this many optimizer steps in this run (0: no limit); a later run resumes."""
    side_info_weight: Annotated[float, Field(ge=0), Says("must not be negative", "use 0 (images only) or e.g. 1")] = 0.0
    """SICoT's lambda: loss = L(visual) + lambda * L(mixed) with the titles' semantic stream; 0 trains on
    images alone. Needs a dataset with word vectors (side_info.enabled in the build)."""
    side_info_nonlinearity: Annotated[Nonlinearity, _UNSUPPORTED] = "tanh"
    """The word attention's nonlinearity: tanh, relu or sigmoid."""


_DemoShare = Annotated[float, Field(ge=0, lt=1), Says("must be a share in [0, 1)", "set e.g. 0.05")]


class DemoConfig(Section):
    """Sizes and shares of the generated demo marketplace (`tagmill demo-data`)."""

    seed: int = 7
    """Seed of every random choice of the demo generator (same seed, same market, byte for byte)."""
    run_date: str = "2026-11-20"
    """The demo's events end on this date, and the demo build runs for it (so the demo is reproducible)."""
    listings: _Positive = 2400
    """Listings in the demo catalog."""
    images_per_listing: Annotated[tuple[int, int], _LIST, _check(
        lambda r: 1 <= r[0] <= r[1], "{value} is not a range", "give [min, max] with 1 <= min <= max")] = (1, 5)
    """Images per listing: [min, max], drawn uniformly."""
    image_size: _Positive = 96
    """Side of the drawn demo images, in pixels."""
    sessions: _Positive = 30000
    """Search sessions simulated over the days."""
    days: _Positive = 14
    """Events span this many days up to the run date."""
    zipf_exponent: float = 1.1
    """Query popularity over categories follows Zipf with this exponent: a long tail of rare categories."""
    chinese_share: _DemoShare = 0.2
    """Share of titles and queries written in Chinese."""
    misspelling_share: _DemoShare = 0.05
    """Share of queries typed with one swapped or dropped letter."""
    reupload_share: _DemoShare = 0.06
    """Share of listings that reuse an image of another listing (exact or near copy)."""
    stock_photo_groups: int = 25
    """Stock photos shared by several sellers of one category."""
    bot_sessions: int = 6
    """Sessions of bots (far more events than a person; mine-logs drops them)."""
    expired_share: _DemoShare = 0.01
    """Share of events dated before the retention window."""
    bad_row_share: _DemoShare = 0.01
    """Share of event and catalog rows that are malformed in one of the ways mine-logs quarantines."""
    bad_image_share: _DemoShare = 0.01
    """Share of image files that are corrupt, truncated, empty or missing."""


class Config(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    inputs: InputsConfig = Field(default_factory=InputsConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    mining: MiningConfig = Field(default_factory=MiningConfig)
    image_pass: ImagePassConfig = Field(default_factory=ImagePassConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    taxonomy: TaxonomyConfig = Field(default_factory=TaxonomyConfig)
    side_info: SideInfoConfig = Field(default_factory=SideInfoConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)

    def replace(self, section: str, **values) -> "Config":
        """A copy with some values of one section changed (validated like a file)."""
        merged = to_dict(self)
        merged[section].update(values)
        return config_from_dict(merged)


def load_config(path: Path | str | None = None, overrides: dict | None = None) -> Config:
    """Read a TOML config file (or none: all defaults), apply `overrides` ({"run": {"date": ...}}), validate."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError("--config", f"no file at {path}", "pass the path of a TOML config file")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError("--config", f"{path} is not valid TOML ({err})", "fix the file's syntax") from None
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    return config_from_dict(data)


def config_from_dict(data: dict) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise _config_error(err.errors(include_url=False)) from None


def to_dict(config) -> dict:
    """The config (or one section) as plain TOML-ready data (tuples become lists)."""
    return {name: _plain(getattr(config, name)) for name in type(config).model_fields}


def to_toml(config: Config, documented: bool = False) -> str:
    """Effective config as TOML text that `load_config` reads back to the same config. `documented` puts each
    section's and key's description above it as # comments (what `tagmill config show` prints)."""
    lines: list[str] = []
    for section, values in to_dict(config).items():
        model = type(getattr(config, section))
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines += _comment(model.__doc__ if documented else None) + [f"[{section}]"]
        for key, value in [*((k, v) for k, v in values.items() if k not in nested), *nested.items()]:
            lines += _comment(model.model_fields[key].description if documented else None)
            if key in nested:
                value = f"{{ {', '.join(f'{_toml_key(k)} = {_toml_value(v)}' for k, v in value.items())} }}"
            else:
                value = _toml_value(value)
            lines.append(f"{key} = {value}")
        lines.append("")
    return "\n".join(lines)


def _comment(text: str | None) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), 110, initial_indent="# ", subsequent_indent="# ",
                         break_on_hyphens=False) if text else []


def _plain(value):
    if isinstance(value, BaseModel):
        return to_dict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


_TYPES = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "bool"}


def _precedence(error: dict) -> tuple:
    """Order of the old loader: unknown sections, then section by section its unknown keys, wrong types, checks."""
    loc, kind = error["loc"], error["type"]
    if loc and loc[0] not in Config.model_fields:
        return (0,)
    step = 0 if kind in ("extra_forbidden", "model_type") else 1 if kind in (
        *_TYPES, "tuple_type", "dict_type", "too_long", "too_short", "missing") else 2
    if kind == "literal_error" and not isinstance(error["input"], str):
        step = 1
    return (1, list(Config.model_fields).index(loc[0]) if loc else -1, step)


MOVED = {"mining.resample_factor": "dataset.resample_factor"}
"""Keys that moved to another section: a config that still sets one is told where it went."""


def _config_error(errors: list[dict[str, Any]]) -> ConfigError:
    """The ConfigError for the error the old hand-written loader met first."""
    error = min(errors, key=_precedence)
    loc, kind, value = error["loc"], error["type"], error["input"]
    key = ".".join(str(part) for part in loc if isinstance(part, str))
    model: type[BaseModel] = Config if len(loc) < 2 else Config.model_fields[loc[0]].annotation
    if kind == "extra_forbidden":
        if key in MOVED:
            return ConfigError(key, "moved", f"write it as {MOVED[key]}")  # e.g. an older release's config
        names = list(model.model_fields)
        near = difflib.get_close_matches(loc[-1], names, n=1)
        where = ".".join(loc[:-1]) or "the config file"
        return ConfigError(key, "unknown key", f"did you mean '{near[0]}'?" if near else
                           f"valid keys in {where}: {', '.join(names)}")
    if kind == "model_type":
        return ConfigError(key, f"expected a table, got {value!r}", f"write [{key}] as a TOML table")
    if kind == "literal_error" and not isinstance(value, str):
        kind = "string_type"
    if kind in _TYPES:
        return ConfigError(key, f"expected {_TYPES[kind]}, got {type(value).__name__} {value!r}",
                           f"write a {_TYPES[kind]} value")
    if kind == "tuple_type":
        return ConfigError(key, f"expected a list, got {value!r}", "write it as [a, b, ...]")
    if kind == "dict_type":
        return ConfigError(key, f"expected a table, got {value!r}", "write it as { name = value, ... }")
    field = model.model_fields[loc[1]] if len(loc) >= 2 else None
    if kind in ("too_long", "too_short", "missing") and field is not None:
        size = len(get_args(field.annotation))
        return ConfigError(key, f"expected {size} values, got {len(value)}", f"give exactly {size}")
    if isinstance(error.get("ctx", {}).get("error"), _Refused):
        return ConfigError(key, error["ctx"]["error"].problem, error["ctx"]["error"].fix)
    says = next((m for m in field.metadata if isinstance(m, Says)), None) if field is not None else None
    if says is not None:
        if field.annotation is float and isinstance(value, int):
            value = float(value)
        choices = ", ".join(get_args(field.annotation))
        return ConfigError(f"{loc[0]}.{says.key}" if says.key else key, says.problem.format(value=value),
                           says.fix.format(choices=choices))
    return ConfigError(key, f"{error['msg'].lower()}, got {value!r}", "see `tagmill config show` for the defaults")
