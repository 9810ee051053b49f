"""Small published datasets with titles and word vectors, for training the trainer with side information.

The full demo build makes its datasets through every stage; these skip the stages and write samples straight
through the project's own writer (dataset.shards.write_shards, dataset.publish.finish_publish), so the
trainer's co-training can be tested and measured in seconds:

    vectors = title_vectors(names, seed=0)
    rows = titled_rows(signatures, names, [(30, 10), (3, 10)], size=32, seed=0, vocabulary=vectors.index())
    manifest = publish_titled(folder, rows, names, vectors)

`long_tail_set` is the long-tailed case SICoT is about (shape: `LongTail`): head classes with many images,
tail classes with few, and titles that name every class among noise words.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tagmill.config import SPLITS, SideInfoConfig, TrainConfig
from tagmill.dataset.publish import STAGING, finish_publish, start_publish
from tagmill.dataset.shards import ImageOptions, write_shards
from tagmill.demo.images import Signature, design_signatures, draw_image
from tagmill.demo.vocabulary import build_leaves
from tagmill.labeling.sources import SEARCH_LOG
from tagmill.labeling.word_vectors import train_word_vectors
from tagmill.word_vector_files import WordVectors, token_ids, word_vector_files

NOISE_WORDS = ("used", "cheap", "great", "black", "white", "red", "blue", "brand", "sale", "original")
"""The words around the class name in a title."""


_MAX_TITLE_WORDS = SideInfoConfig().max_title_words  # as the build cuts titles

LONG_TAIL_TRAIN = TrainConfig(arch="resnet18", image_size=32, epochs=15, freeze_epochs=0, batch_size=32,
                              optimizer="adamw", lr=0.001, weight_decay=0.01, loss="softmax", num_workers=0,
                              shuffle_buffer=32, use_repeats=False, head_tail_boundary=10)
"""Training settings for `long_tail_set` (image-only; set side_info_weight to co-train): long enough that an
image-only run converges on the head classes (top-1 1.0 on every seed tried), so what differs between two
runs is the titles, not an unfinished schedule. About 30 s per run on 2 cores."""


def title_vectors(names: list[str], seed: int, dim: int = 16) -> WordVectors:
    """Word2Vec vectors (labeling.word_vectors) of 300 generated titles over `names` and NOISE_WORDS."""
    rnd = random.Random(seed)
    sentences = [rnd.sample(NOISE_WORDS, 3) + [rnd.choice(names)] for _ in range(300)]
    return train_word_vectors(sentences, dim=dim, min_count=1, epochs=2, seed=seed)


def titled_rows(signatures: list[Signature], names: list[str], counts: list[tuple[int, int]], size: int, seed: int,
                vocabulary: dict[str, int], untitled_every: int = 0) -> list[dict]:
    """Rows {"key", "class_id", "split", "jpg", "title_ids"} of `counts[c]` = (train, validation) images of
    class c drawn from signatures[c] at `size` px; a title is 1-3 noise words around the class name, as
    word ids of `vocabulary`. Every `untitled_every`-th row (0: none) has no title (title_ids None)."""
    rnd = random.Random(seed)
    rows = []
    for class_id, (n_train, n_val) in enumerate(counts):
        for i in range(n_train + n_val):
            words = rnd.sample(NOISE_WORDS, rnd.randint(1, 3))
            words.insert(rnd.randint(0, len(words)), names[class_id])
            untitled = untitled_every and (class_id + i) % untitled_every == 0
            rows.append({"key": f"{class_id:04d}{i:016x}", "class_id": class_id,
                         "split": "train" if i < n_train else "validation",
                         "jpg": draw_image(signatures[class_id], size, seed, class_id * 1000 + i),
                         "title_ids": None if untitled else token_ids(words, vocabulary, _MAX_TITLE_WORDS)})
    return rows


def sample_record(key: str, class_id: int, name: str, split: str, product_id: str, title: str,
                  repeats: int = 1, **extra) -> dict:
    """One sample record as dataset.shards writes it, labeled `class_id` (`name`) once by the search log at
    tier in_conversation; image_path is the key unless `extra` gives one; `extra` also adds title_ids."""
    return {"image_key": key, "image_path": key, "product_id": product_id, "split": split, "title": title,
            "class_ids": [class_id], "repeats": repeats, **extra,
            "labels": [{"class_id": class_id, "name": name, "confidence": 0.9, "source": SEARCH_LOG,
                        "tier": "in_conversation", "clicks": 1, "contacts": 1, "in_conversations": 1, "sessions": 1}]}


def publish_samples(folder: str | Path, samples: list[dict], image_bytes, classes: list[dict], name: str,
                    word_vectors: WordVectors | None = None, shard_samples: int = 40) -> Path:
    """Publish sample records (dataset.shards' sample JSON: image_key, image_path, split, class_ids, labels,
    ...) of the train and validation splits with the project's own writer, as the build's shards stage does;
    returns the manifest path. image_bytes: image_path -> JPEG bytes; classes: {class_id, name, path} (and
    taxonomy_id, null when not given: these datasets have no taxonomy stage), the support per split is counted
    from the samples; word_vectors (None: none) go in through finish_publish."""
    folder = Path(folder)
    start_publish(str(folder))
    staged, shards = folder / STAGING / "shards", []
    for split in ("train", "validation"):
        chosen = [s for s in samples if s["split"] == split]
        for r in write_shards(chosen, f"{split}-00000", lambda shard: open(staged / shard, "wb"), image_bytes,
                              ImageOptions(max_side=0), shard_samples, 1 << 30):
            shards.append({**r, "split": split, "shard": f"shards/{r['shard']}"})
    index = [{"taxonomy_id": None, **c,
              **{f"support_{split}": sum(1 for s in samples if s["split"] == split and c["class_id"] in s["class_ids"])
                 for split in SPLITS}} for c in classes]
    finish_publish(str(folder), shards, index, {"dataset": name, "tagmill_version": "generated",
                                                "config_sha256": "0" * 64, "image": {"max_side": 0}},
                   word_vector_files(word_vectors) if word_vectors is not None else None)
    return folder / "manifest.json"


def publish_titled(folder: Path, rows: list[dict], class_names: list[str], word_vectors: WordVectors | None,
                   shard_samples: int = 40) -> Path:
    """Publish `titled_rows` rows as a dataset in `folder` (one product per image, the class name as title
    text and class path "demo > name"); returns the manifest path."""
    images = {r["key"]: r["jpg"] for r in rows}
    samples = [sample_record(r["key"], r["class_id"], class_names[r["class_id"]], r["split"], f"p-{r['key']}",
                             class_names[r["class_id"]], title_ids=r["title_ids"]) for r in rows]
    classes = [{"class_id": c, "name": name, "path": ["demo", name]} for c, name in enumerate(class_names)]
    return publish_samples(folder, samples, images.__getitem__, classes, Path(folder).name, word_vectors,
                           shard_samples)


@dataclass(frozen=True)
class LongTail:
    """The shape of a `long_tail_set`."""

    heads: int = 6
    tails: int = 6
    head_train: int = 30
    """Training images per head class."""
    tail_train: int = 3
    """Training images per tail class."""
    validation: int = 10
    """Validation images per class, head or tail."""
    size: int = 32
    """Image side in pixels."""

    def describe(self) -> str:
        return (f"{self.heads} head classes x {self.head_train} training images, {self.tails} tail x "
                f"{self.tail_train}, {self.validation} validation images per class, {self.size} px")


def long_tail_set(folder: Path, seed: int, shape: LongTail = LongTail()) -> Path:
    """A published long-tailed set of `shape`: head classes of many training images and tail classes of few,
    drawn from demo leaves spread over the tree (every leaf's look differs from the others'), each with a
    title naming its class ("head0", "tail2"). Returns the manifest path. The same seed gives the same
    images, titles and word vectors."""
    leaves = build_leaves()
    signatures = design_signatures(leaves, seed=7)
    classes = shape.heads + shape.tails
    picked = [signatures[leaf.index] for leaf in leaves[:: len(leaves) // classes][:classes]]
    names = [f"head{c}" for c in range(shape.heads)] + [f"tail{c}" for c in range(shape.tails)]
    vectors = title_vectors(names, seed=seed)
    counts = [(shape.head_train, shape.validation)] * shape.heads + [(shape.tail_train, shape.validation)] * shape.tails
    rows = titled_rows(picked, names, counts, shape.size, seed, vectors.index())
    return publish_titled(folder, rows, names, vectors)
