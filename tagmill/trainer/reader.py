"""Reading a published dataset: manifest.json -> checked shards -> a deterministic stream of decoded samples.

A folder is a dataset only once its manifest is written (tagmill.dataset.publish writes it last), so
everything starts from `read_manifest`. `check_shards` compares each shard's size and sha256 with the
manifest before training starts. `ShardStream` is the sample stream, laid out so that a run can stop
anywhere and continue exactly:

- sample space: the shards in a per-epoch shuffled order, each sample repeated `repeats` times (a held-out
  sample none: its shard's length is counted once, up front, without it);
- ranks: that sequence cut into equal contiguous ranges, wrapping to the start to pad (DistributedSampler);
- workers: each rank's range cut into near-equal contiguous ranges; a worker opens only its shards;
- per worker: a seeded shuffle buffer over the raw items, then decoding of the items it emits;
- the DataLoader batches round robin over its workers, which `resume_at` replays from sample counts alone.

Everything is a function of (seed, epoch, rank, world size, workers, batch size): never of timing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, default_collate, get_worker_info

from tagmill.checksums import file_problem
from tagmill.config import BAD_SHARD_POLICIES
from tagmill.manifest import FORMAT, MANIFEST, parse_manifest
from tagmill.trainer.side_info import pad_token_ids
from tagmill.trainer.transforms import decode_sample, load_image_tensor
from tagmill.word_vector_files import WordVectors, load_word_vectors

__all__ = ["FORMAT", "MANIFEST", "BAD_SHARD_POLICIES", "DatasetError", "CorruptShard", "ShardReadError", "ShardInfo",
           "Manifest", "read_manifest", "check_shards", "ShardStream", "make_loader", "decode_sample",
           "load_image_tensor", "TITLE_MAX_LEN", "collate_titles", "load_dataset_word_vectors", "sample_metas"]

TITLE_MAX_LEN = 32
"""Longest title the trainer feeds the semantic stream, in word ids: a batch's titles are padded to its
longest title, capped here (later words are dropped). Marketplace titles rarely pass 20 words."""

# Separate seed streams for the three random choices, so that no two of them ever share draws.
_SHARD_ORDER, _BUFFER, _SAMPLE = 1, 2, 3


class DatasetError(ValueError):
    """A dataset folder, its manifest or its class index is not what this reader expects."""


class CorruptShard(DatasetError):
    """A shard file is missing or differs from what the manifest recorded."""


class ShardReadError(DatasetError):
    """A shard's content does not follow the layout (`<key>.jpg` then `<key>.json`, valid JSON)."""


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    """Absolute path of the tar."""
    split: str
    samples: int
    repeats: int
    """Sum of the samples' repeat factors: the shard's length in the stream when repeats are used."""
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    root: Path
    """The dataset folder (the manifest's folder), absolute."""
    dataset: str
    num_classes: int
    classes: list[dict]
    """classes.json's entries in id order: {"id", "name", "path", "taxonomy_id", "support"}; "id" is the dense
    index of the model's outputs, "taxonomy_id" the class's id in the taxonomy's tables (null without one)."""
    splits: dict
    shards: tuple[ShardInfo, ...]
    image: dict
    raw: dict
    """manifest.json as read."""
    word_vectors: dict | None = None
    """The build's word vectors, when it made them: {"path": absolute folder, "sha256": {file name: hex}}
    (manifest entry "word_vectors"); None otherwise. Loaded by `load_dataset_word_vectors`."""

    def shards_for(self, split: str) -> tuple[ShardInfo, ...]:
        """The shards of one split ("train", "validation", "test"), in manifest order."""
        return tuple(s for s in self.shards if s.split == split)


def read_manifest(path: str | Path) -> Manifest:
    """Read a published dataset's manifest.json (or the dataset folder holding it) and its class index.

    Raises DatasetError when there is no manifest (the dataset is not published), when the manifest is not
    JSON or has another "format" than FORMAT, when a shard entry lacks a field, or when the class index is
    missing or its ids are not 0..num_classes-1 in order."""
    path = Path(path).absolute()
    file = path / MANIFEST if path.is_dir() else path
    if not file.is_file():
        folder = path if path.is_dir() else path.parent
        raise DatasetError(f"no {MANIFEST} in {folder}: the dataset is not published; "
                           f"run `tagmill shards` (or `tagmill build`)")
    raw = _read_json(file)
    if raw.get("format") != FORMAT:
        raise DatasetError(f"{file}: format {raw.get('format')!r} is not {FORMAT!r}, the one this tagmill reads; "
                           f"rebuild the dataset with this version's `tagmill shards`")
    try:
        parsed = parse_manifest(raw)
    except ValueError as err:
        raise DatasetError(f"{file}: {err}; rebuild the dataset with `tagmill shards`") from None
    root = file.parent
    shards = tuple(ShardInfo(path=root / s.path, split=s.split, samples=s.samples, repeats=s.repeats, bytes=s.bytes,
                             sha256=s.sha256) for s in parsed.shards)
    vectors = parsed.word_vectors
    return Manifest(root=root, dataset=parsed.dataset, num_classes=parsed.num_classes,
                    classes=_read_classes(root / parsed.class_index, parsed.num_classes),
                    splits={split: totals.model_dump() for split, totals in parsed.splits.items()}, shards=shards,
                    image=dict(parsed.image), raw=raw,
                    word_vectors=None if vectors is None else {"path": root / vectors.path,
                                                               "sha256": dict(vectors.sha256)})


def load_dataset_word_vectors(manifest: Manifest) -> WordVectors:
    """The dataset's word vectors (the titles' `title_ids` index them), after checking every file the manifest
    names against its sha256.

    Raises DatasetError when the manifest has no "word_vectors" entry (the build ran without side
    information), or naming the file that is missing, differs from its recorded sha256, or does not load."""
    if manifest.word_vectors is None:
        raise DatasetError(f"{manifest.root / MANIFEST}: the dataset has no word vectors, so there are no titles "
                           f"for the semantic stream; rebuild it with side_info.enabled = true (`tagmill build`), "
                           f"or train on images alone with train.side_info_weight = 0")
    folder = Path(manifest.word_vectors["path"])
    for name, expected in sorted(manifest.word_vectors["sha256"].items()):
        problem = file_problem(folder / name, expected)
        if problem == "missing":
            raise DatasetError(f"{folder / name}: missing, the manifest lists it under \"word_vectors\"; rebuild "
                               f"the dataset with `tagmill shards`")
        if problem:
            raise DatasetError(f"{folder / name}: {problem}; the word vectors were changed after publishing, "
                               f"rebuild the dataset with `tagmill shards`")
    try:
        return load_word_vectors(folder, verify=False)  # every file was just checked against the manifest
    except (OSError, ValueError) as err:
        raise DatasetError(f"{folder}: the word vectors do not load ({err}); rebuild the dataset with "
                           f"`tagmill shards`") from None


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{file}: cannot be read as JSON ({err}); rebuild the dataset with `tagmill shards`"
                           ) from None
    if not isinstance(data, dict):
        raise DatasetError(f"{file}: expected a JSON object, found {type(data).__name__}")
    return data


def _read_classes(file: Path, num_classes: int) -> list[dict]:
    if not file.is_file():
        raise DatasetError(f"no class index {file.name} in {file.parent}; rebuild the dataset with `tagmill shards`")
    classes = _read_json(file).get("classes")
    if not isinstance(classes, list):
        raise DatasetError(f"{file}: expected {{\"classes\": [...]}}")
    ids = [c.get("id") if isinstance(c, dict) else None for c in classes]
    if ids != list(range(len(classes))):
        wrong = next(i for i, c in enumerate(ids) if c != i)
        raise DatasetError(f"{file}: class ids must be 0..{len(classes) - 1} in order; entry {wrong} has id "
                           f"{ids[wrong]!r}; rebuild the dataset with `tagmill shards`")
    if len(classes) != num_classes:
        raise DatasetError(f"{file}: {len(classes)} classes, the manifest says num_classes={num_classes}; "
                           f"rebuild the dataset with `tagmill shards`")
    return classes


def check_shards(shards: Iterable[ShardInfo], policy: str = "fail") -> tuple[list[ShardInfo], list[dict]]:
    """Verify that each shard exists, has the manifest's byte size and sha256 (read in 1 MiB chunks).

    policy "fail" (default) raises CorruptShard at the first bad shard; "skip" goes on. Returns (the good
    shards in the order given, [{"path": str, "problem": str} for each bad one]); the second list is
    empty under "fail"."""
    if policy not in BAD_SHARD_POLICIES:
        raise ValueError(f"train.on_bad_shard {policy!r}: expected one of {BAD_SHARD_POLICIES}")
    good, bad = [], []
    for shard in shards:
        problem = shard_problem(shard)
        if problem is None:
            good.append(shard)
        elif policy == "fail":
            raise CorruptShard(f"{shard.path}: {problem}; rebuild the dataset with `tagmill shards`, or pass "
                               f"`--set train.on_bad_shard=skip` to train without this shard")
        else:
            bad.append({"path": str(shard.path), "problem": problem})
    return good, bad


def shard_problem(shard: ShardInfo) -> str | None:
    """What is wrong with one shard file ("missing", "size X != manifest Y", "sha256 mismatch ..."), or None."""
    return file_problem(shard.path, shard.sha256, shard.bytes)


class ShardStream(IterableDataset):
    """The samples of some shards, one epoch per iteration, laid out as the module docstring says.

    `decode(jpg_bytes, meta, rng)` makes what is yielded from one sample (meta: the sample's JSON; rng: a
    numpy Generator seeded from (seed, epoch, key, copy index)); it must pickle for num_workers > 0 (a
    functools.partial of a module-level function does). Iterate it through `make_loader(stream)`, which
    uses the stream's batch_size and num_workers: the resume arithmetic assumes exactly that DataLoader.

    shuffle_buffer=0 turns shuffling off entirely (shards in the order given, samples in file order);
    use_repeats=False gives each sample once. rank/world_size pick this process's share; every rank gets
    the same number of samples and batches (the last ranks are padded from the start of the epoch).
    held_out: sample keys the stream never yields (a fold model's held-out images, trainer.folds); the shards
    that hold some are read once here to count the stream without them, so resumption stays exact."""

    def __init__(self, shards: Sequence[ShardInfo], *, num_classes: int, decode: Callable[[bytes, dict, Any], Any],
                 seed: int, batch_size: int, num_workers: int = 0, shuffle_buffer: int = 1000,
                 use_repeats: bool = True, rank: int = 0, world_size: int = 1, augment: bool = True,
                 held_out: frozenset[str] = frozenset()):
        super().__init__()
        if seed < 0 or batch_size < 1 or num_workers < 0 or shuffle_buffer < 0 or num_classes < 0:
            raise ValueError(f"ShardStream: expected seed >= 0, batch_size >= 1, num_workers >= 0, "
                             f"shuffle_buffer >= 0, num_classes >= 0; got seed={seed}, batch_size={batch_size}, "
                             f"num_workers={num_workers}, shuffle_buffer={shuffle_buffer}, num_classes={num_classes}")
        if not 0 <= rank < world_size:
            raise ValueError(f"ShardStream: rank {rank} is outside 0..world_size-1 (world_size={world_size})")
        self.shards = tuple(shards)
        self.num_classes = num_classes
        self.decode = decode
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.use_repeats = use_repeats
        self.rank = rank
        self.world_size = world_size
        self.augment = augment
        self.held_out = frozenset(held_out)
        self._sizes = {s.path: _stream_size(s, use_repeats) for s in self.shards}
        if self.held_out:
            for s in self.shards:
                self._sizes[s.path] -= sum(meta["repeats"] if use_repeats else 1
                                           for meta in sample_metas(s, num_classes, self.held_out))
        self.epoch = 0
        self._rotation, self._skips = 0, (0,) * self._workers()

    def set_epoch(self, epoch: int) -> None:
        """Lay out epoch `epoch` (>= 0); the next iteration starts at its beginning."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch
        self._rotation, self._skips = 0, (0,) * self._workers()

    def resume_at(self, batches_done: int) -> None:
        """Make iterations of the current epoch start right after the first `batches_done` batches that
        make_loader(self) delivers (0..batches_per_epoch()); holds until the next set_epoch or resume_at.

        Replays the DataLoader's round robin over the workers to find how many samples each worker had
        handed out; those still pass through its shuffle buffer (undecoded), so what follows is unchanged.
        The loader starts its round robin at worker 0, so the workers take each other's places: worker p
        plays the part of worker (p + r) % W, where r is the worker that delivered batch `batches_done`."""
        total = self.batches_per_epoch()
        if not 0 <= batches_done <= total:
            raise ValueError(f"resume_at({batches_done}): an epoch has 0..{total} batches")
        self._rotation, self._skips = resume_plan(self._worker_counts(), self.batch_size, batches_done)

    def samples_per_epoch(self) -> int:
        """Samples this rank yields per epoch: ceil(E / world_size), E = the epoch's expanded length."""
        return math.ceil(self._epoch_length() / self.world_size)

    def batches_per_epoch(self) -> int:
        """Batches make_loader(self) yields per epoch on this rank (the last batch of each worker may be short)."""
        return sum(math.ceil(n / self.batch_size) for n in self._worker_counts())

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        slot, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if workers != self._workers():
            raise RuntimeError(f"ShardStream built for num_workers={self.num_workers} runs in a loader with "
                               f"{workers if info else 0} workers; iterate it through make_loader(stream)")
        worker = (slot + self._rotation) % workers
        return self._worker_samples(worker, self._skips[worker])

    def _workers(self) -> int:
        return max(1, self.num_workers)

    def _epoch_length(self) -> int:
        return sum(self._sizes.values())

    def _worker_counts(self) -> list[int]:
        return split_evenly(self.samples_per_epoch(), self._workers())

    def _epoch_shards(self) -> list[ShardInfo]:
        if self.shuffle_buffer == 0:
            return list(self.shards)
        order = np.random.default_rng([self.seed, self.epoch, _SHARD_ORDER]).permutation(len(self.shards))
        return [self.shards[i] for i in order]

    def _worker_samples(self, worker: int, skip: int) -> Iterator[Any]:
        counts = self._worker_counts()
        if skip >= counts[worker]:
            return iter(())
        shards = self._epoch_shards()
        start = self.rank * self.samples_per_epoch() + sum(counts[:worker])
        plan = worker_plan([self._sizes[s.path] for s in shards], start, start + counts[worker])
        items = _read_plan(((shards[i], lo, hi) for i, lo, hi in plan), self.use_repeats, self.num_classes,
                           self.held_out)
        if self.shuffle_buffer:
            rng = np.random.default_rng([self.seed, self.epoch, _BUFFER, self.rank, worker])
            items = _shuffle(items, self.shuffle_buffer, rng)
        return _decode(itertools.islice(items, skip, None), self.decode, self.seed, self.epoch, self.augment)


def make_loader(stream: ShardStream, collate_fn: Callable[[list], Any] | None = None) -> DataLoader:
    """The DataLoader the stream's layout assumes: its batch_size and num_workers, last batch kept, no
    persistent workers, no pinned memory. Its own torch.Generator seeds the workers, so creating and
    iterating loaders never draws from the global torch RNG (a resumed run's RNG state stays exact).
    collate_fn: None for torch's default (the image-only batches); `collate_titles` for samples that carry
    `title_ids` (`decode_sample_with_title`). It changes how a batch is assembled, never which samples."""
    return DataLoader(stream, batch_size=stream.batch_size, num_workers=stream.num_workers,
                      persistent_workers=False, pin_memory=False, collate_fn=collate_fn,
                      generator=torch.Generator().manual_seed(stream.seed))


def collate_titles(samples: list[dict]) -> dict:
    """A batch of samples that carry "title_ids" (lists of word ids): every other field collated as torch does
    by default, "title_ids" as a long tensor (B, L) right-padded with 0 (`pad_token_ids`), L = the batch's
    longest title capped at TITLE_MAX_LEN (at least 1, so a batch without titles is (B, 1) of padding)."""
    titles = [sample["title_ids"] for sample in samples]
    batch = default_collate([{k: v for k, v in sample.items() if k != "title_ids"} for sample in samples])
    batch["title_ids"] = pad_token_ids(titles, max_len=min(TITLE_MAX_LEN, max([1, *map(len, titles)])))
    return batch


# ---- layout arithmetic (pure; positions are indices into the epoch's expanded sample sequence) ----

def split_evenly(total: int, parts: int) -> list[int]:
    """`total` cut into `parts` contiguous sizes that differ by at most 1, the larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def worker_plan(sizes: Sequence[int], start: int, stop: int) -> list[tuple[int, int, int]]:
    """Which part of which shard covers positions start..stop-1, taken modulo sum(sizes) (the wrap pads
    the last ranks): [(shard index, first, end)] in stream order, positions local to the shard."""
    total = sum(sizes)
    plan = []
    while start < stop and total:
        begin = start % total
        end = begin + min(stop - start, total - begin)
        offset = 0
        for i, size in enumerate(sizes):
            lo, hi = max(begin, offset), min(end, offset + size)
            if lo < hi:
                plan.append((i, lo - offset, hi - offset))
            offset += size
        start += end - begin
    return plan


def resume_plan(counts: Sequence[int], batch_size: int, batches_done: int) -> tuple[int, tuple[int, ...]]:
    """(worker that delivers batch `batches_done`, samples each worker has handed out by then), replaying a
    DataLoader that takes batch i from the i-th still-active worker in round robin. counts: samples per
    worker. The first number is 0 when the epoch is over."""
    batches = [math.ceil(n / batch_size) for n in counts]
    taken = [0] * len(counts)
    done = 0
    for round_ in range(max(batches, default=0)):
        for w, n in enumerate(batches):
            if n <= round_:
                continue
            if done == batches_done:
                return w, tuple(min(t * batch_size, c) for t, c in zip(taken, counts))
            taken[w] += 1
            done += 1
    return 0, tuple(counts)


# ---- stages (generators taking their input first) ----

class _Raw(NamedTuple):
    key: str
    copy: int
    """Which of the sample's `repeats` copies this is (0-based)."""
    jpg: bytes
    meta: dict
    where: str
    """`<shard path>:<member>`, for error messages."""


def _read_plan(plan: Iterable[tuple[ShardInfo, int, int]], use_repeats: bool, num_classes: int,
               held_out: frozenset[str] = frozenset()) -> Iterator[_Raw]:
    for shard, lo, hi in plan:
        yield from _read_shard(shard, lo, hi, use_repeats, num_classes, held_out)


def _open_shard(path: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:")
    except (tarfile.TarError, OSError) as err:
        raise ShardReadError(f"{path}: cannot be opened as a tar ({err}); run check_shards first, or rebuild "
                             f"with `tagmill shards`") from None


def sample_metas(shard: ShardInfo, num_classes: int, keys: frozenset[str] | None = None) -> Iterator[dict]:
    """The sample JSON of each of the shard's samples in file order (only those keyed in `keys` when given; the
    others' JSON is not read), checked as the stream checks it."""
    path, key = str(shard.path), None
    with _open_shard(path) as tar:
        while (pair := _next_pair(tar, path, key)) is not None:
            key, _, json_member = pair
            if keys is None or key in keys:
                yield _read_meta(tar, json_member, key, path, num_classes)


def _read_shard(shard: ShardInfo, lo: int, hi: int, use_repeats: bool, num_classes: int,
                held_out: frozenset[str] = frozenset()) -> Iterator[_Raw]:
    """The items at positions lo..hi-1 of one shard (a sample with repeats r fills r positions; a held-out
    sample none). Members before `lo` are skipped by seeking; their JSON is read only when repeats are needed
    to count positions."""
    path = str(shard.path)
    pos, samples, key = 0, 0, None
    with _open_shard(path) as tar:
        while pos < hi:
            pair = _next_pair(tar, path, key)
            if pair is None:
                raise ShardReadError(f"{path}: ends after {samples} samples ({pos} stream positions), the manifest "
                                     f"says {shard.samples} samples ({_stream_size(shard, use_repeats)}); run "
                                     f"check_shards first, or rebuild with `tagmill shards`")
            key, jpg_member, json_member = pair
            samples += 1
            if key in held_out:
                continue
            meta = _read_meta(tar, json_member, key, path, num_classes) if use_repeats or pos + 1 > lo else None
            copies = meta["repeats"] if use_repeats else 1
            first, end = max(pos, lo), min(pos + copies, hi)
            if first < end:
                jpg = _read_member(tar, jpg_member, path)
                for position in range(first, end):
                    yield _Raw(key, position - pos, jpg, meta, f"{path}:{jpg_member.name}")
            pos += copies


def _next_pair(tar: tarfile.TarFile, path: str,
               previous: str | None = None) -> tuple[str, tarfile.TarInfo, tarfile.TarInfo] | None:
    """(key, `<key>.jpg` member, `<key>.json` member), or None at the end of the tar. Further members of the
    previous sample (its `.cls`, or any other extension: WebDataset keeps a sample's files together) are
    skipped."""
    jpg = _next_member(tar, path, None)
    while jpg is not None and previous is not None and jpg.name.startswith(f"{previous}.") \
            and not jpg.name.endswith(".jpg"):
        jpg = _next_member(tar, path, jpg.name)
    if jpg is None:
        return None
    if not (jpg.isfile() and jpg.name.endswith(".jpg")):
        raise ShardReadError(f"{path}: member {jpg.name} where a `<key>.jpg` file was expected")
    key = jpg.name[:-len(".jpg")]
    meta = _next_member(tar, path, jpg.name)
    if meta is None or not meta.isfile() or meta.name != f"{key}.json":
        found = "the end of the tar" if meta is None else f"member {meta.name}"
        raise ShardReadError(f"{path}: member {jpg.name} is followed by {found}, not {key}.json")
    return key, jpg, meta


def _next_member(tar: tarfile.TarFile, path: str, previous: str | None) -> tarfile.TarInfo | None:
    try:
        return tar.next()
    except (tarfile.TarError, OSError, EOFError) as err:
        where = f"after member {previous}" if previous else "at a member boundary"
        raise ShardReadError(f"{path}: cannot read the tar header {where} ({err})") from None


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> bytes:
    try:
        data = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ShardReadError(f"{path}: cannot read member {member.name} ({err})") from None
    if len(data) != member.size:
        raise ShardReadError(f"{path}: member {member.name} is truncated ({len(data)} of {member.size} bytes)")
    return data


def _read_meta(tar: tarfile.TarFile, member: tarfile.TarInfo, key: str, path: str, num_classes: int) -> dict:
    where = f"{path}: member {member.name}"
    try:
        meta = json.loads(_read_member(tar, member, path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShardReadError(f"{where} is not valid UTF-8 JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("key") != key:
        found = meta.get("key") if isinstance(meta, dict) else type(meta).__name__
        raise ShardReadError(f"{where}: expected an object with \"key\": {key!r}, found {found!r}")
    repeats, class_ids = meta.get("repeats"), meta.get("class_ids")
    if not isinstance(repeats, int) or repeats < 1:
        raise ShardReadError(f"{where}: \"repeats\" must be an integer >= 1, found {repeats!r}")
    if not isinstance(class_ids, list) or not all(isinstance(c, int) and 0 <= c < num_classes for c in class_ids):
        raise ShardReadError(f"{where}: \"class_ids\" must be a list of ids in 0..{num_classes - 1}, "
                             f"found {class_ids!r}")
    return meta


def _shuffle(data: Iterable[Any], bufsize: int, rng: np.random.Generator) -> Iterator[Any]:
    """Buffered shuffle (webdataset's): once `bufsize` items are held, emit a random one per item read;
    drain in random order at the end. bufsize 0 or 1 keeps the order."""
    buf: list = []
    for item in data:
        buf.append(item)
        if len(buf) >= bufsize:
            yield _pop_random(buf, rng)
    while buf:
        yield _pop_random(buf, rng)


def _pop_random(buf: list, rng: np.random.Generator) -> Any:
    k = int(rng.integers(len(buf)))
    buf[k], buf[-1] = buf[-1], buf[k]
    return buf.pop()


def _decode(items: Iterable[_Raw], decode: Callable[[bytes, dict, Any], Any], seed: int,
            epoch: int, augment: bool) -> Iterator[Any]:
    """decode(jpg, meta, rng) per item, rng seeded from (seed, epoch, key, copy): the same sample copy gets
    the same augmentation whichever worker or rank handles it. Without augmentation rng is None (seeding
    a generator per sample costs about 5% of an eval pass)."""
    for item in items:
        rng = np.random.default_rng([seed, epoch, _SAMPLE, _key_entropy(item.key), item.copy]) if augment else None
        try:
            out = decode(item.jpg, item.meta, rng)
        except Exception as err:
            err.add_note(f"while decoding {item.where}")
            raise
        yield out


def _key_entropy(key: str) -> int:
    # A stable 128-bit integer of any key (image keys are hex, but nothing here relies on it).
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest(), "little")


def _stream_size(shard: ShardInfo, use_repeats: bool) -> int:
    return shard.repeats if use_repeats else shard.samples
