"""The one typed configuration of tagmill: every default lives here.

A config file is TOML with one table per section below (`[run]`, `[spark]`, `[inputs]`, ...). Any key
left out keeps its default; an unknown key, a wrong type or an out-of-range value is refused on load
with a message that names the key and the fix. `tagmill config show` prints the effective config.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

TIERS = ("click", "contact", "in_conversation")
"""Positive interaction tiers, weakest first. A stronger tier implies the weaker ones (MSURU 5.2)."""

EVENT_FORMATS = ("jsonl", "parquet", "csv")


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key and how to fix it."""

    def __init__(self, key: str, problem: str, fix: str):
        self.key = key
        super().__init__(f"config key '{key}': {problem}. Fix: {fix}")


@dataclass(frozen=True)
class RunConfig:
    date: str = ""
    """Run date YYYY-MM-DD; outputs are partitioned by it. Empty means today (UTC)."""
    seed: int = 20261121
    """Seed for every random choice of a build (resampling rounding, splits)."""

    def run_date(self) -> dt.date:
        return dt.date.fromisoformat(self.date) if self.date else dt.datetime.now(dt.UTC).date()

    def check(self, prefix: str) -> None:
        if self.date:
            try:
                dt.date.fromisoformat(self.date)
            except ValueError:
                raise ConfigError(f"{prefix}.date", f"'{self.date}' is not a date",
                                  "write it as YYYY-MM-DD, e.g. 2026-11-20") from None


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"
    """local[*], local[N], spark://host:port, yarn or k8s://... (also `--master` on the command line)."""
    app_name: str = "tagmill"
    shuffle_partitions: int = 0
    """0 fits them to the machine: 2 per core of a local master, Spark's default otherwise."""
    log_level: str = "WARN"
    driver_memory: str = ""
    """JVM heap when tagmill starts Spark itself (local runs, where the driver is also the executor).
    Empty fits it to the machine: a third of physical memory, between 1g and 16g."""
    settings: dict[str, str] = field(default_factory=dict)
    """Any further Spark settings, passed through unchanged (e.g. spark.executor.memory)."""

    def check(self, prefix: str) -> None:
        local = re.fullmatch(r"local(\[(\*|\d+)(,\s*\d+)?\])?", self.master)
        if not (local or self.master == "yarn" or self.master.startswith(("spark://", "k8s://"))):
            raise ConfigError(f"{prefix}.master", f"'{self.master}' is not a Spark master URL",
                              "use local[*], spark://HOST:PORT, yarn or k8s://https://HOST:PORT")
        if self.shuffle_partitions < 0:
            raise ConfigError(f"{prefix}.shuffle_partitions", "must be 0 (fit to machine) or positive",
                              "set a positive number or 0")
        if self.log_level.upper() not in ("ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"):
            raise ConfigError(f"{prefix}.log_level", f"'{self.log_level}' is not a log level",
                              "use one of DEBUG, INFO, WARN, ERROR")


@dataclass(frozen=True)
class InputsConfig:
    events: str = ""
    """Search-log events: a folder of files, optionally partitioned as date=YYYY-MM-DD/."""
    events_format: str = "jsonl"
    catalog: str = ""
    """Listing catalog: product_id, title, image_paths, optional category_path."""
    catalog_format: str = "jsonl"
    image_root: str = ""
    """Folder that image_paths are relative to."""
    allowed_image_roots: tuple[str, ...] = ()
    """Further folders an image may resolve into once symlinks are followed (e.g. a storage mount the image
    folders link to). Any other image outside image_root is quarantined as bad_image_path."""

    def check(self, prefix: str) -> None:
        for key in ("events_format", "catalog_format"):
            value = getattr(self, key)
            if value not in EVENT_FORMATS:
                raise ConfigError(f"{prefix}.{key}", f"'{value}' is not a supported format",
                                  f"use one of {', '.join(EVENT_FORMATS)}")


@dataclass(frozen=True)
class OutputsConfig:
    root: str = "out"
    """Every table is written under ROOT/<stage>/<table>/run_date=YYYY-MM-DD/."""


@dataclass(frozen=True)
class TextConfig:
    wordnet_dir: str = "/usr/share/wordnet"
    """WordNet 3.0 database folder (Debian: wordnet-base + wordnet-sense-index)."""
    stopwords: tuple[str, ...] = (
        "a", "an", "the", "for", "and", "or", "of", "with", "in", "on", "to", "buy", "sale",
        "cheap", "used", "new", "的", "了", "和", "与", "出售", "二手", "全新",
    )
    """Query words dropped by normalization (the original query is kept as an alias)."""


@dataclass(frozen=True)
class MiningConfig:
    retention_days: int = 90
    """Events older than this many days before the run date are ignored and counted."""
    label_tier: str = "in_conversation"
    """Weakest interaction that makes a query a label: click, contact or in_conversation (MSURU 5.2-5.3)."""
    min_label_images: int = 10
    """K of MSURU 3.2/5.6: a label on fewer images than this is removed."""
    bot_max_events: int = 500
    """A session with more events than this is a bot; all its events are dropped and counted."""
    bot_max_actions: int = 100
    """A session with more clicks, contacts and in-conversations together than this is a bot."""
    max_query_chars: int = 200
    max_id_chars: int = 128
    max_title_chars: int = 1000
    tier_weights: dict[str, float] = field(default_factory=lambda: {
        "click": 0.3, "contact": 0.6, "in_conversation": 0.9})
    """Chance that one session's action at a tier means the query names the product; a label's confidence
    is the noisy-or over its sessions."""
    resample_factor: float = 2.0
    """Square-root resampling target: total repeats = factor x unique images (MSURU 5.4 doubled it). 0 = off."""

    def check(self, prefix: str) -> None:
        if self.label_tier not in TIERS:
            raise ConfigError(f"{prefix}.label_tier", f"'{self.label_tier}' is not a tier",
                              f"use one of {', '.join(TIERS)}")
        for key in ("retention_days", "min_label_images", "bot_max_events", "bot_max_actions",
                    "max_query_chars", "max_id_chars", "max_title_chars"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}", "must be at least 1", "set a positive whole number")
        if set(self.tier_weights) != set(TIERS) or not all(0 < w < 1 for w in self.tier_weights.values()):
            raise ConfigError(f"{prefix}.tier_weights", f"got {self.tier_weights}",
                              "give click, contact and in_conversation each a weight strictly between 0 and 1")
        if self.resample_factor != 0 and self.resample_factor < 1:
            raise ConfigError(f"{prefix}.resample_factor", f"{self.resample_factor} would shrink the data",
                              "use 0 to turn resampling off, or a factor of at least 1")


SPLITS = ("train", "validation", "test")
LABEL_SPACES = ("classes", "query_clusters")


@dataclass(frozen=True)
class DatasetConfig:
    """assemble + gate + shards: how samples are split and written."""

    label_space: str = "classes"
    """classes: the taxonomy's classes (raw tags without the taxonomy stage); query_clusters: each search-log
    label becomes its query's K-means cluster (side-info stage, MSURU 5.5), teacher tags are left out."""
    split_ratios: dict[str, float] = field(default_factory=lambda: {
        "train": 0.8, "validation": 0.1, "test": 0.1})
    """Share of products in each split; a stable hash of the product decides, so a product never crosses."""
    image_max_side: int = 256
    """Images are re-encoded as JPEG so their longer side is at most this; 0 keeps the original bytes."""
    jpeg_quality: int = 90
    shard_max_samples: int = 1000
    """A shard is rolled over after this many samples ..."""
    shard_max_bytes: int = 64 * 1024 * 1024
    """... or once it holds this many bytes, whichever comes first."""

    def check(self, prefix: str) -> None:
        if self.label_space not in LABEL_SPACES:
            raise ConfigError(f"{prefix}.label_space", f"'{self.label_space}' is not a label space",
                              f"use one of {', '.join(LABEL_SPACES)}")
        if set(self.split_ratios) != set(SPLITS) or any(r < 0 for r in self.split_ratios.values()) \
                or abs(sum(self.split_ratios.values()) - 1.0) > 1e-9 or self.split_ratios["train"] <= 0:
            raise ConfigError(f"{prefix}.split_ratios", f"got {self.split_ratios}",
                              "give train, validation and test shares that sum to 1, train above 0")
        if self.image_max_side != 0 and self.image_max_side < 16:
            raise ConfigError(f"{prefix}.image_max_side", f"{self.image_max_side} is too small",
                              "use 0 to keep original bytes, or a side of at least 16 pixels")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"{prefix}.jpeg_quality", "must be in 1..100", "use e.g. 90")
        for key in ("shard_max_samples", "shard_max_bytes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}", "must be at least 1", "set a positive whole number")


CODE_METHODS = ("itq", "pca")


@dataclass(frozen=True)
class ImagePassConfig:
    """image-pass: one decode and one teacher forward per unique image -> tags, embedding, compact code
    (58.com pseudo-labels; MSURU 3.2 compressed embedding)."""

    teacher: str = ""
    """The teacher model: a TorchScript file, a `tagmill train` output folder, or a `tagmill train`
    checkpoint.pt. Empty skips the image pass (assemble then splits by product alone)."""
    vocabulary: str = ""
    """The teacher's labels in the Open Images format (MID,DisplayName; header optional). Empty: the
    classes.json beside a tagmill model."""
    teacher_id: str = ""
    """Name recorded with every tag; empty: the model file's name."""
    threshold: float = 0.5
    """A tag is kept when the teacher's score reaches this ..."""
    thresholds_file: str = ""
    """... or the per-tag threshold in this CSV (MID or display name, threshold)."""
    top_k: int = 10
    """At most this many tags per image, highest scores first."""
    image_size: int = 0
    """Side of the teacher's input; 0 takes it from the model's model.json, else 224."""
    batch_size: int = 32
    bf16: bool = False
    """Run the forward pass under bfloat16 autocast (only where the CPU supports bf16)."""
    max_pixels: int = 89_478_485
    """Decompression-bomb limit: images with more pixels are quarantined unread (Pillow's default)."""
    code_bits: int = 64
    """Length of the compact binary code of each embedding."""
    code_method: str = "itq"
    """itq (PCA then an iterative rotation, Gong & Lazebnik) or pca (sign of the top components)."""
    code_fit_sample: int = 20000
    """Embeddings sampled to fit the code's projection."""
    thumbnail_size: int = 64
    """Side of the small image kept for pixel-level verification of near-duplicate candidates."""

    def check(self, prefix: str) -> None:
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"{prefix}.threshold", f"{self.threshold} is not in (0, 1]", "use e.g. 0.5")
        for key in ("top_k", "batch_size", "code_fit_sample", "max_pixels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}", "must be at least 1", "set a positive whole number")
        if self.image_size != 0 and self.image_size < 16:
            raise ConfigError(f"{prefix}.image_size", f"{self.image_size} is too small",
                              "use 0 (from the model) or at least 16")
        if self.code_bits % 8 or not 8 <= self.code_bits <= 1024:
            raise ConfigError(f"{prefix}.code_bits", f"{self.code_bits} is not a multiple of 8 in 8..1024",
                              "use 64, 128 or 256")
        if self.code_method not in CODE_METHODS:
            raise ConfigError(f"{prefix}.code_method", f"'{self.code_method}' is unknown",
                              f"use one of {', '.join(CODE_METHODS)}")
        if not 16 <= self.thumbnail_size <= 256:
            raise ConfigError(f"{prefix}.thumbnail_size", f"{self.thumbnail_size} is outside 16..256", "use 64")


@dataclass(frozen=True)
class DedupConfig:
    """Near-duplicate removal (MSURU 3.2): Hamming candidates on the codes, then verified pairs only."""

    max_hamming: int = 12
    """Layout-code pairs within this Hamming distance become candidates ..."""
    exact_hamming: int = 5
    """... of which all within this distance are certain to be found; farther ones up to max_hamming are found
    when the search's tables catch them (for random 64-bit codes about 90, 72, 53, 36, 23 % at 6-10 bits),
    unless the set is small enough for an exact search up to max_hamming (~30,000 codes; 7 bits at 100,000,
    6 at 300,000). Exact search costs grow steeply with the radius: 5 keeps 10M 64-bit codes near 20 s on 2
    cores."""
    shortlist: int = 5
    """... each image's nearest few of them are verified (bounds the verifier's work per image; on the
    planted set 5 found 0.97-0.99 of the duplicate pairs, 4 found 0.93-0.97)."""
    min_cosine: float = 0.85
    """A candidate pair is a duplicate only if the float embeddings agree this well ..."""
    min_pixel_similarity: float = 0.85
    """... and the aligned thumbnails agree this well (robust to crop, pad, rotation, re-encoding). True pairs
    score either at least 0.9 or below 0.8 (planted set: 98.9 % at least 0.9; small test market: 1.0 or 0);
    photos of one-shape look-alike listings on striped backgrounds, zoomed versions of each other, scored
    0.81-0.83 on the small test market."""
    split_guard: float = 1.0
    """Candidate pairs whose thumbnails agree this well stay in one split even when not verified as
    duplicates (only the split grouping grows); 1 turns it off. Look-alike candidates chain through it
    (measured at 0.6 on the demo before pairs never compared on pixels were told apart: one component
    held most products), so it is off by default."""

    def check(self, prefix: str) -> None:
        if self.max_hamming < 0:
            raise ConfigError(f"{prefix}.max_hamming", "must be at least 0", "use e.g. 12")
        if self.exact_hamming < 0:
            raise ConfigError(f"{prefix}.exact_hamming", "must be at least 0", "use e.g. 5")
        if self.shortlist < 1:
            raise ConfigError(f"{prefix}.shortlist", "must be at least 1", "use e.g. 4")
        for key in ("min_cosine", "min_pixel_similarity", "split_guard"):
            if not -1 <= getattr(self, key) <= 1:
                raise ConfigError(f"{prefix}.{key}", "must be in [-1, 1]", "use e.g. 0.85")


@dataclass(frozen=True)
class TaxonomyConfig:
    """Raw tags of both label sources -> classes (58.com 3; Tencent ML-Images): rare filter, co-occurrence
    rules, WordNet synonym merge, hierarchy and domains. Every drop and merge is recorded with its numbers."""

    enabled: bool = True
    """Off: assemble uses every raw tag as its own class, as before the taxonomy stage existed."""
    min_share: float = 0.0005
    """Tags on fewer than this share of labeled images are dropped (58.com: 0.05 %) ..."""
    min_images: int = 10
    """... and tags on fewer than this many images (MSURU's K, for teacher tags too)."""
    isolated_max_conditional: float = 0.0
    """A tag whose strongest partner co-occurs with it on less than this share of its images is noise and
    dropped (only tags that share images with other tags at all); 0 turns the rule off."""
    isolated_min_images: int = 20
    """... judged only for tags on at least this many images."""
    merge_min_conditional: float = 0.9
    """Two tags with P(a|b) and P(b|a) both at least this are merge candidates ..."""
    merge_cooccurring: bool = False
    """... merged only when this is on (off: listed in the report for an analyst to decide)."""
    child_min_conditional: float = 0.95
    """A tag implied by another (P(parent|child) at least this) is a child candidate, for the report."""
    max_tags_per_image: int = 64
    """Images with more distinct tags are left out of the co-occurrence matrix (its cost is quadratic)."""
    merge_synonyms: bool = True
    """Tags that map to one WordNet synset become one class with aliases."""
    domain_roots: tuple[str, ...] = ()
    """WordNet noun synsets that collapse leaves into domains (58.com: 17); empty: the 21 of
    taxonomy.synsets.DEFAULT_DOMAIN_ROOTS, documented there with the rule that picks one per path."""
    zh_table: str = ""
    """CSV of Chinese -> English terms (zh,en) for mapping Chinese tags to synsets; empty: none."""
    propagate_to_ancestors: bool = False
    """Assemble also labels each image with the ancestors of its classes (Tencent ML-Images)."""

    def check(self, prefix: str) -> None:
        for key in ("min_share", "isolated_max_conditional", "merge_min_conditional", "child_min_conditional"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"{prefix}.{key}", "must be in [0, 1]", "use e.g. 0.0005 for min_share, 0.9 "
                                  "for the conditionals")
        for key in ("min_images", "isolated_min_images"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{prefix}.{key}", "must be at least 0", "use 0 to turn it off")
        if self.max_tags_per_image < 2:
            raise ConfigError(f"{prefix}.max_tags_per_image", "must be at least 2", "use e.g. 64")


@dataclass(frozen=True)
class SideInfoConfig:
    """Titles as side information (SICoT 3.2; MSURU 5.5): title tokens, word vectors trained in the build,
    query clusters. The vectors and each sample's token ids ship with the dataset; the trainer co-trains on
    them when train.side_info_weight > 0."""

    enabled: bool = True
    noise_phrases: tuple[str, ...] = ()
    """Title boilerplate removed before tokenizing ("free shipping", "包邮"); empty: the built-in list of
    labeling.titles.DEFAULT_NOISE_PHRASES."""
    max_title_words: int = 32
    """Token ids kept per title (the rest are cut)."""
    vector_dim: int = 64
    window: int = 5
    min_count: int = 2
    """Words seen fewer times get the unknown id."""
    epochs: int = 5
    query_clusters: int = 50
    """K of the K-means over query embeddings (MSURU 5.5), at most half the distinct queries; 0: none."""
    query_embeddings: str = ""
    """A user-provided query embedding table (CSV/TSV "query,v1,...", or .npy beside a .txt of queries) to
    cluster instead of the mean word vectors."""

    def check(self, prefix: str) -> None:
        for key in ("max_title_words", "vector_dim", "window", "min_count", "epochs"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}", "must be at least 1", "use a positive whole number")
        if self.query_clusters < 0:
            raise ConfigError(f"{prefix}.query_clusters", "must be at least 0", "use 0 to turn clustering off")


LOSSES = ("asl", "bce", "softmax", "sampled_softmax")
ARCHITECTURES = ("resnet18", "resnet50", "resnext50_32x4d")


@dataclass(frozen=True)
class TrainConfig:
    """`tagmill train`: the bundled trainer (58.com, OLX, MSURU 3.3-3.4, SICoT)."""

    arch: str = "resnet50"
    """resnet18, resnet50 or resnext50_32x4d (58.com moved to ResNeXt-50)."""
    pooling: str = "max"
    """Global pooling before the head: max (58.com's choice) or avg."""
    init_weights: str = ""
    """A state-dict file with published ResNet/ResNeXt weights to start from (nothing is downloaded)."""
    loss: str = "asl"
    """asl (sigmoid + Asymmetric Loss), bce, softmax, or sampled_softmax (MSURU 3.4)."""
    asl_gamma_neg: float = 4.0
    asl_gamma_pos: float = 0.0
    asl_clip: float = 0.05
    sampling_ratio: float = 0.8
    """sampled_softmax: share of all classes in each example's candidate set (MSURU 5.7 found 0.8 best)."""
    image_size: int = 224
    epochs: int = 10
    freeze_epochs: int = 1
    """OLX: train only the head for this many epochs, then unfreeze the backbone."""
    batch_size: int = 64
    optimizer: str = "sgd"
    """sgd (Nesterov momentum 0.9, MSURU 3.3) or adamw."""
    lr: float = 0.01
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    """Linear warm-up, then a cosine decay to zero over the remaining steps."""
    num_workers: int = 2
    shuffle_buffer: int = 1000
    use_repeats: bool = True
    """Show each sample `repeats` times per epoch (square-root resampling, MSURU 5.4)."""
    on_bad_shard: str = "fail"
    """A shard that is missing or fails its checksum: fail (clear error) or skip (counted)."""
    threshold: float = 0.5
    """Score threshold of the Hamming loss."""
    knn_k: int = 10
    """k of P@k and C@k (MSURU 5.1)."""
    head_tail_boundary: int = 200
    """Classes with at least this many training images are head classes (SICoT 4.1)."""
    checkpoint_every: int = 0
    """Also checkpoint every this many steps inside an epoch (0: only at epoch ends)."""
    device: str = "cpu"
    """cpu, cuda or cuda:N."""
    max_steps: int = 0
    """Stop after this many optimizer steps in this run (0: no limit); a later run resumes."""
    side_info_weight: float = 0.0
    """SICoT's lambda: loss = L(visual) + lambda * L(mixed) with the titles' semantic stream; 0 trains on
    images alone. Needs a dataset with word vectors (side_info.enabled in the build)."""
    side_info_nonlinearity: str = "tanh"
    """The word attention's nonlinearity: tanh, relu or sigmoid."""

    def check(self, prefix: str) -> None:
        choices = {"arch": ARCHITECTURES, "pooling": ("max", "avg"), "loss": LOSSES,
                   "optimizer": ("sgd", "adamw"), "on_bad_shard": ("fail", "skip"),
                   "side_info_nonlinearity": ("tanh", "relu", "sigmoid")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{prefix}.{key}", f"'{getattr(self, key)}' is not supported",
                                  f"use one of {', '.join(allowed)}")
        for key in ("image_size", "epochs", "batch_size", "knn_k", "head_tail_boundary"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}", "must be at least 1", "set a positive whole number")
        for key in ("freeze_epochs", "num_workers", "shuffle_buffer", "checkpoint_every", "max_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{prefix}.{key}", "must not be negative", "set 0 or more")
        if not 0 < self.sampling_ratio <= 1:
            raise ConfigError(f"{prefix}.sampling_ratio", f"{self.sampling_ratio} is not in (0, 1]", "use e.g. 0.8")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ConfigError(f"{prefix}.lr", "lr must be positive, weight_decay and warmup_epochs not negative",
                              "use e.g. lr = 0.01")
        if self.side_info_weight < 0:
            raise ConfigError(f"{prefix}.side_info_weight", "must not be negative", "use 0 (images only) or e.g. 1")
        if not (self.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", self.device)):
            raise ConfigError(f"{prefix}.device", f"'{self.device}' is not a device", "use cpu, cuda or cuda:0")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and shares of the generated demo marketplace (`tagmill demo-data`)."""

    seed: int = 7
    run_date: str = "2026-11-20"
    """The demo's events end on this date, and the demo build runs for it (so the demo is reproducible)."""
    listings: int = 2400
    images_per_listing: tuple[int, int] = (1, 5)
    image_size: int = 96
    sessions: int = 30000
    days: int = 14
    """Events span this many days up to the run date."""
    zipf_exponent: float = 1.1
    """Query popularity over categories follows Zipf with this exponent: a long tail of rare categories."""
    chinese_share: float = 0.2
    """Share of titles and queries written in Chinese."""
    misspelling_share: float = 0.05
    reupload_share: float = 0.06
    """Share of listings that reuse an image of another listing (exact or near copy)."""
    stock_photo_groups: int = 25
    """Stock photos shared by several sellers of one category."""
    bot_sessions: int = 6
    expired_share: float = 0.01
    """Share of events dated before the retention window."""
    bad_row_share: float = 0.01
    """Share of event and catalog rows that are malformed in one of the ways mine-logs quarantines."""
    bad_image_share: float = 0.01
    """Share of image files that are corrupt, truncated, empty or missing."""

    def check(self, prefix: str) -> None:
        for key in ("listings", "sessions", "days", "image_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}", "must be at least 1", "set a positive whole number")
        low, high = self.images_per_listing
        if not 1 <= low <= high:
            raise ConfigError(f"{prefix}.images_per_listing", f"({low}, {high}) is not a range",
                              "give [min, max] with 1 <= min <= max")
        for key in ("chinese_share", "misspelling_share", "reupload_share", "expired_share",
                    "bad_row_share", "bad_image_share"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}", "must be a share in [0, 1)", "set e.g. 0.05")


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    inputs: InputsConfig = field(default_factory=InputsConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    text: TextConfig = field(default_factory=TextConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    image_pass: ImagePassConfig = field(default_factory=ImagePassConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    taxonomy: TaxonomyConfig = field(default_factory=TaxonomyConfig)
    side_info: SideInfoConfig = field(default_factory=SideInfoConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)

    def replace(self, section: str, **values) -> Config:
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
    return _build(Config, data, "")


def to_dict(config) -> dict:
    """The config as plain TOML-ready data (tuples become lists)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def to_toml(config: Config) -> str:
    """Effective config as TOML text that `load_config` reads back to the same config."""
    lines: list[str] = []
    for section, values in to_dict(config).items():
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if k not in nested]
        for key, table in nested.items():
            lines.append(f"{key} = {{ {', '.join(f'{_toml_key(k)} = {_toml_value(v)}' for k, v in table.items())} }}")
        lines.append("")
    return "\n".join(lines)


def _plain(value):
    if dataclasses.is_dataclass(value):
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


def _build(cls, data, prefix: str):
    where = prefix or "the config file"
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"expected a table, got {data!r}", f"write [{prefix}] as a TOML table")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            fix = f"did you mean '{near[0]}'?" if near else f"valid keys in {where}: {', '.join(names)}"
            raise ConfigError(f"{prefix}.{key}".lstrip("."), "unknown key", fix)
    values = {}
    for name in names:
        if name not in data:
            continue
        key = f"{prefix}.{name}".lstrip(".")
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, data[name], key)
        else:
            values[name] = _coerce(data[name], kind, key)
    built = cls(**values)
    if hasattr(built, "check"):
        built.check(prefix)
    return built


def _coerce(value, kind, key: str):
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {value!r}", "write it as [a, b, ...]")
        inner = args[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, inner, key) for v in value)
        if len(value) != len(args):
            raise ConfigError(key, f"expected {len(args)} values, got {len(value)}", f"give exactly {len(args)}")
        return tuple(_coerce(v, t, key) for v, t in zip(value, args))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a table, got {value!r}", "write it as { name = value, ... }")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"{key}: union types are not used in the config")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(key, f"expected {kind.__name__}, got {type(value).__name__} {value!r}",
                          f"write a {kind.__name__} value")
    return value
