"""The published dataset's manifest (`manifest.json`): one model that the shard publisher writes
(tagmill.dataset.publish) and every reader parses (tagmill.trainer.reader). No Spark, no torch.

A dataset folder holds `manifest.json` (written last: a folder without it is not a dataset), the class index
`classes.json`, `shards/<split>-<bucket>-<seq>.tar`, the dataset card `README.md` (Hugging Face YAML header),
one `wids` shard index per split with shards (`<split>.wids.json`), one stats file per shard
(`stats/<split>-<bucket>-<seq>.json`) and, when the build made them, `word_vectors/`.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FORMAT = "tagmill.shards/1"
MANIFEST = "manifest.json"
CLASS_INDEX = "classes.json"
WORD_VECTORS = "word_vectors"
"""Folder of the build's word vectors inside a dataset (tagmill.word_vector_files.FILES)."""
CARD = "README.md"
"""The dataset card: a Hugging Face YAML header (configs, splits, class names) and a page for people."""
SHARD_STATS_DIR = "stats"
"""Folder of the per-shard stats files (tagmill.dataset.publish.shard_stats)."""
WIDS_INDEX = "{split}.wids.json"
"""A split's shard index in the `wids` format (wids-shard-index-v1), shard URLs relative to the dataset folder."""


class _Entry(BaseModel):
    # Fields a later tagmill adds are kept (not refused), so an older reader still reads what it knows.
    model_config = ConfigDict(frozen=True, extra="allow", strict=True)


class ShardEntry(_Entry):
    path: str
    """The tar, relative to the dataset folder (shards/train-00000-000.tar)."""
    split: str
    samples: int
    repeats: int
    """Sum of the samples' repeat factors: the shard's length in an epoch when repeats are used."""
    bytes: int
    sha256: str
    stats: str | None = None
    """The shard's stats file (samples handed to it, written, quarantined per reason, classes, labels per
    source), relative to the dataset folder; None in datasets made before it."""


class SplitTotals(_Entry):
    samples: int = 0
    repeats: int = 0
    shards: int = 0
    bytes: int = 0


class WordVectorsEntry(_Entry):
    path: str
    """The folder, relative to the dataset folder."""
    sha256: dict[str, str] = Field(min_length=1)
    """File name -> hex sha256 of each word-vector file."""


class DatasetManifest(_Entry):
    format: str = FORMAT
    dataset: str = ""
    """The dataset version (the run date)."""
    tagmill_version: str = ""
    config_sha256: str = ""
    """Hash of the settings that shape the dataset's content."""
    image: dict = Field(default_factory=dict)
    """How images were stored (max_side, format, quality)."""
    num_classes: int = -1
    class_index: str = CLASS_INDEX
    splits: dict[str, SplitTotals] = Field(default_factory=dict)
    shards: list[ShardEntry] = Field(default_factory=list)
    word_vectors: WordVectorsEntry | None = None
    card: str | None = None
    """The dataset card's file (CARD), relative to the dataset folder; None in datasets made before it."""
    wids_index: dict[str, str] | None = None
    """Split -> its wids shard index file (WIDS_INDEX), for each split with shards."""
    cls_entries: bool | None = None
    """True when every single-class sample has a `<key>.cls` member (its class id as ASCII digits)."""

    def to_json(self) -> bytes:
        """The manifest file's bytes: keys sorted, so equal manifests are equal bytes."""
        data = self.model_dump(mode="json", exclude_none=True)
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"


def parse_manifest(data: object) -> DatasetManifest:
    """A manifest from its parsed JSON. Raises ValueError naming the first field that is missing or of the
    wrong type (e.g. "shards[3].sha256: Field required")."""
    try:
        return DatasetManifest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        raise ValueError(f"{where or 'the manifest'}: {first['msg']}") from None
