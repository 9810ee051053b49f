"""The shard reader: manifest and class index, shard checks, and the sample stream (coverage, ranks,
determinism, exact resume through a real DataLoader) and sample decoding.

Datasets here are written by `publish` below, which follows the issue-3 contract byte for byte: USTAR tars of
`<key>.jpg` then `<key>.json` plain members (mtime 0, uid/gid 0, mode 0o644), classes.json, manifest.json last.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import pickle
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import get_worker_info

from tagmill.trainer.reader import (
    CorruptShard,
    DatasetError,
    ShardReadError,
    ShardStream,
    _shuffle,
    check_shards,
    make_loader,
    read_manifest,
    resume_plan,
    split_evenly,
    worker_plan,
)
from tagmill.trainer.transforms import MEAN, STD, decode_sample, load_image_tensor

SIZES = (7, 3, 11, 2, 5)
"""Uneven shards: 28 samples; with repeats 1 + i % 3 the epoch has 55 positions."""
NUM_CLASSES = 4

# 3 workers on a 2-core test machine is the point (uneven worker layouts), not a mistake
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes:UserWarning")


# ---- writing datasets the way the contract says ----

def jpeg(size=(4, 3), color=(200, 100, 50)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG", quality=95)
    return out.getvalue()


TINY = jpeg()


def key_of(i: int) -> str:
    return f"{i:020x}"


def repeats_of(i: int) -> int:
    return 1 + i % 3


def member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def sample_json(key: str, class_ids: list[int], repeats: int) -> bytes:
    labels = [{"class_id": c, "name": f"class-{c}", "confidence": 0.9, "source": "search_log", "tier": "click",
               "evidence": {"clicks": 2, "contacts": 0, "in_conversations": 0, "sessions": 2}} for c in class_ids]
    meta = {"key": key, "product_id": f"p-{key[-4:]}", "split": "train", "class_ids": class_ids,
            "labels": labels, "title": "grey sofa", "repeats": repeats}
    return json.dumps(meta, sort_keys=True).encode("utf-8")


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> dict:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            member(tar, name, data)
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def publish(root: Path, sizes=SIZES, *, bad_members: dict[int, list[tuple[str, bytes]]] | None = None) -> Path:
    """A dataset of len(sizes) train shards; sample i has key key_of(i), class [i % 4] (none when i % 5 == 4)
    and repeats repeats_of(i). `bad_members` replaces a shard's members. Returns the dataset folder."""
    (root / "shards").mkdir(parents=True)
    entries, i = [], 0
    for seq, size in enumerate(sizes):
        members, repeats = [], 0
        for _ in range(size):
            key = key_of(i)
            members += [(f"{key}.jpg", TINY),
                        (f"{key}.json", sample_json(key, [] if i % 5 == 4 else [i % NUM_CLASSES], repeats_of(i)))]
            repeats += repeats_of(i)
            i += 1
        rel = f"shards/train-00000-{seq:03d}.tar"
        written = write_shard(root / rel, (bad_members or {}).get(seq, members))
        entries.append({"path": rel, "split": "train", "samples": size, "repeats": repeats, **written})
    classes = [{"id": c, "name": f"class-{c}", "path": ["things"], "support": {"train": 1, "validation": 0, "test": 0}}
               for c in range(NUM_CLASSES)]
    (root / "classes.json").write_text(json.dumps({"classes": classes}))
    manifest = {"format": "tagmill.shards/1", "dataset": "2026-11-20", "tagmill_version": "0.1.0",
                "config_sha256": "0" * 64, "num_classes": NUM_CLASSES, "class_index": "classes.json",
                "image": {"max_side": 256, "format": "jpeg", "quality": 90},
                "splits": {"train": {"samples": sum(sizes), "repeats": sum(e["repeats"] for e in entries),
                                     "shards": len(sizes), "bytes": sum(e["bytes"] for e in entries)}},
                "shards": entries}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


def expanded(use_repeats: bool, sizes=SIZES) -> list[str]:
    """The epoch in manifest and file order: each key repeats_of(i) times (once without repeats)."""
    return [key_of(i) for i in range(sum(sizes)) for _ in range(repeats_of(i) if use_repeats else 1)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return publish(tmp_path_factory.mktemp("dataset"))


def key_draw(jpg: bytes, meta: dict, rng) -> dict:
    """A decode for stream tests: the key, one draw of the sample's RNG, the worker that decoded it."""
    info = get_worker_info()
    return {"key": meta["key"], "draw": int(rng.integers(1 << 62)), "worker": -1 if info is None else info.id}


def stream_of(dataset: Path, **kw) -> ShardStream:
    options = {"num_classes": NUM_CLASSES, "decode": key_draw, "seed": 7, "batch_size": 3, "shuffle_buffer": 8} | kw
    return ShardStream(read_manifest(dataset).shards_for("train"), **options)


def loader_batches(stream: ShardStream) -> list[list[tuple[str, int]]]:
    """[(key, draw) per sample] per batch, as make_loader delivers them."""
    return [list(zip(b["key"], b["draw"].tolist())) for b in make_loader(stream)]


def keys(batches) -> list[str]:
    return [k for batch in batches for k, _ in batch]


# ---- layout arithmetic and the shuffle stage, on literals ----

def test_split_evenly_gives_near_equal_contiguous_sizes_larger_first():
    assert split_evenly(10, 3) == [4, 3, 3]
    assert split_evenly(2, 3) == [1, 1, 0]
    assert split_evenly(0, 2) == [0, 0]


def test_worker_plan_maps_positions_to_shard_ranges_and_wraps():
    assert worker_plan([7, 3, 11, 1, 5], 5, 12) == [(0, 5, 7), (1, 0, 3), (2, 0, 2)]
    assert worker_plan([7, 3, 11, 1, 5], 21, 22) == [(3, 0, 1)]
    # positions 4..6 of a 5-long epoch: the last one, then the first two again (padding)
    assert worker_plan([3, 0, 2], 4, 7) == [(2, 1, 2), (0, 0, 2)]
    assert worker_plan([], 0, 3) == []


def test_resume_plan_replays_round_robin_over_active_workers():
    # 5, 5, 4 samples in batches of 2 -> 3, 3, 2 batches: w0 w1 w2 w0 w1 w2 w0 w1
    counts = [5, 5, 4]
    assert resume_plan(counts, 2, 0) == (0, (0, 0, 0))
    assert resume_plan(counts, 2, 4) == (1, (4, 2, 2))
    assert resume_plan(counts, 2, 6) == (0, (4, 4, 4))
    assert resume_plan(counts, 2, 7) == (1, (5, 4, 4))  # worker 2 has run out
    assert resume_plan(counts, 2, 8) == (0, (5, 5, 4))


def test_shuffle_stage_keeps_order_without_buffer_and_stays_within_the_buffer_window():
    rng = np.random.default_rng(0)
    assert list(_shuffle(range(10), 0, rng)) == list(range(10))
    assert list(_shuffle(range(10), 1, rng)) == list(range(10))
    out = list(_shuffle(range(50), 4, np.random.default_rng(1)))
    assert sorted(out) == list(range(50)) and out != list(range(50))
    assert all(item <= i + 3 for i, item in enumerate(out))  # emitted i-th after reading item i + bufsize - 1
    assert out == list(_shuffle(range(50), 4, np.random.default_rng(1)))


# ---- manifest ----

def test_read_manifest_reads_the_published_layout(dataset):
    manifest = read_manifest(dataset)
    assert manifest == read_manifest(dataset / "manifest.json")
    assert manifest.root == dataset and manifest.dataset == "2026-11-20" and manifest.num_classes == NUM_CLASSES
    assert [c["id"] for c in manifest.classes] == list(range(NUM_CLASSES))
    assert [(s.path, s.samples, s.repeats) for s in manifest.shards] == [
        (dataset / f"shards/train-00000-{i:03d}.tar", n, sum(repeats_of(j) for j in range(sum(SIZES[:i]),
                                                                                              sum(SIZES[:i + 1]))))
        for i, n in enumerate(SIZES)]
    assert manifest.shards_for("train") == manifest.shards and manifest.shards_for("test") == ()
    assert manifest.image["max_side"] == 256 and manifest.splits["train"]["repeats"] == 55
    assert manifest.raw["format"] == "tagmill.shards/1"


def test_read_manifest_without_manifest_says_the_dataset_is_not_published(tmp_path):
    with pytest.raises(DatasetError, match=re.escape(f"no manifest.json in {tmp_path}: the dataset is not "
                                                     "published; run `tagmill shards`")):
        read_manifest(tmp_path)


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_read_manifest_rejects_an_unknown_format(tmp_path):
    root = publish(tmp_path / "d")
    edit_json(root / "manifest.json", lambda m: m.update(format="tagmill.shards/2"))
    with pytest.raises(DatasetError, match=r"format 'tagmill.shards/2' is not 'tagmill.shards/1'"):
        read_manifest(root)


def test_read_manifest_needs_the_class_index(tmp_path):
    root = publish(tmp_path / "d")
    (root / "classes.json").unlink()
    with pytest.raises(DatasetError, match=re.escape(f"no class index classes.json in {root}")):
        read_manifest(root)


def test_read_manifest_rejects_class_ids_out_of_order(tmp_path):
    root = publish(tmp_path / "d")
    edit_json(root / "classes.json", lambda c: c["classes"][2].update(id=3))
    with pytest.raises(DatasetError, match=r"class ids must be 0\.\.3 in order; entry 2 has id 3"):
        read_manifest(root)


def test_read_manifest_rejects_a_class_count_that_differs_from_the_manifest(tmp_path):
    root = publish(tmp_path / "d")
    edit_json(root / "classes.json", lambda c: c["classes"].pop())
    with pytest.raises(DatasetError, match=r"3 classes, the manifest says num_classes=4"):
        read_manifest(root)


# ---- check_shards ----

@pytest.fixture
def damaged(tmp_path):
    """Shards 0..3 of a fresh dataset: 0 deleted, 1 truncated, 2 with one byte flipped, 3 intact."""
    shards = read_manifest(publish(tmp_path / "d", sizes=(2, 2, 2, 2))).shards
    shards[0].path.unlink()
    shards[1].path.write_bytes(shards[1].path.read_bytes()[:1000])
    data = bytearray(shards[2].path.read_bytes())
    data[700] ^= 0xFF
    shards[2].path.write_bytes(bytes(data))
    return shards


def test_check_shards_skip_returns_the_good_shards_and_each_problem(damaged):
    good, bad = check_shards(damaged, policy="skip")
    assert good == [damaged[3]]
    assert [b["path"] for b in bad] == [str(s.path) for s in damaged[:3]]
    assert bad[0]["problem"] == "missing"
    assert bad[1]["problem"] == f"size 1000 != manifest {damaged[1].bytes}"
    assert re.fullmatch(rf"sha256 mismatch \(file [0-9a-f]{{64}}, manifest {damaged[2].sha256}\)", bad[2]["problem"])
    json.dumps(bad)  # goes into the trainer's metrics report as it is


@pytest.mark.parametrize("which, problem", [(0, "missing"), (1, "size 1000 != manifest"), (2, "sha256 mismatch")])
def test_check_shards_fail_raises_with_the_path_the_problem_and_the_fix(damaged, which, problem):
    with pytest.raises(CorruptShard) as err:
        check_shards([damaged[3], damaged[which]])
    message = str(err.value)
    assert message.startswith(f"{damaged[which].path}: {problem}")
    assert "`tagmill shards`" in message and "`--set train.on_bad_shard=skip`" in message


def test_check_shards_passes_intact_shards_and_rejects_unknown_policies(dataset):
    shards = read_manifest(dataset).shards
    assert check_shards(shards) == (list(shards), [])
    with pytest.raises(ValueError, match="expected one of"):
        check_shards(shards, policy="ignore")


# ---- the stream through a real DataLoader ----

@pytest.mark.parametrize("use_repeats", [False, True])
def test_every_key_comes_its_number_of_times_for_any_worker_count(dataset, use_repeats):
    expected = Counter(expanded(use_repeats))
    seen = {}
    for workers in (0, 1, 2, 3):
        stream = stream_of(dataset, num_workers=workers, use_repeats=use_repeats)
        batches = loader_batches(stream)
        assert Counter(keys(batches)) == expected, workers
        assert len(batches) == stream.batches_per_epoch()
        assert stream.samples_per_epoch() == sum(expected.values())
        seen[workers] = Counter(s for b in batches for s in b)
    # augmentation draws follow (seed, epoch, key, copy), not the worker layout; copies differ
    assert seen[0] == seen[1] == seen[2] == seen[3]
    assert Counter(k for k, _ in seen[0]) == expected  # distinct (key, draw) pairs: one per copy


def test_without_shuffling_the_stream_is_manifest_order_then_file_order(dataset):
    stream = stream_of(dataset, shuffle_buffer=0, num_workers=0)
    assert keys(loader_batches(stream)) == expanded(True)
    stream.set_epoch(3)
    assert keys(loader_batches(stream)) == expanded(True)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_cover_the_epoch_with_equal_counts_padding_from_the_start(dataset, world_size):
    # without shuffling and with one worker, ranks read consecutive ranges of the epoch, the last padded
    per_rank = [keys(loader_batches(stream_of(dataset, shuffle_buffer=0, rank=r, world_size=world_size)))
                for r in range(world_size)]
    epoch = expanded(True)
    length = -(-len(epoch) // world_size)
    assert [len(k) for k in per_rank] == [length] * world_size
    assert sum(per_rank, []) == (epoch + epoch)[:length * world_size]
    # shuffled, with two workers per rank: the same counts, the same number of batches, every key covered
    streams = [stream_of(dataset, num_workers=2, rank=r, world_size=world_size) for r in range(world_size)]
    batches = [loader_batches(s) for s in streams]
    assert {len(b) for b in batches} == {streams[0].batches_per_epoch()}
    assert {len(keys(b)) for b in batches} == {length}
    union = Counter(k for b in batches for k in keys(b))
    assert set(union) == set(epoch) and sum(union.values()) == length * world_size
    assert all(union[k] >= n for k, n in Counter(epoch).items())


def test_same_seed_and_epoch_give_the_same_order_another_epoch_another(dataset):
    first = loader_batches(stream_of(dataset, num_workers=2))
    assert loader_batches(stream_of(dataset, num_workers=2)) == first
    stream = stream_of(dataset, num_workers=2)
    stream.set_epoch(1)
    second = loader_batches(stream)
    assert keys(second) != keys(first) and Counter(keys(second)) == Counter(keys(first))
    assert loader_batches(stream_of(dataset, num_workers=2, seed=8)) != first


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_resume_continues_batch_by_batch_as_the_uninterrupted_epoch(dataset, workers):
    stream = stream_of(dataset, num_workers=workers)
    stream.set_epoch(2)
    full_loader = [(list(zip(b["key"], b["draw"].tolist())), set(b["worker"].tolist())) for b in make_loader(stream)]
    full = [b for b, _ in full_loader]
    total = len(full)
    assert total == stream.batches_per_epoch()
    # where each worker delivered its last batch: resume points past the first worker to run out matter
    last_batch = {}
    for i, (_, worker) in enumerate(full_loader):
        (w,) = worker
        last_batch[w] = i
    points = {0, 1, 4, total - 1, total}
    if workers >= 2:
        ran_out = min(last_batch.values())
        assert ran_out < total - 1  # the layout does have a worker that runs out early
        points |= {ran_out + 1, ran_out + 2}
    for b in sorted(points):
        stream.resume_at(b)
        assert loader_batches(stream) == full[b:], b
    stream.set_epoch(2)  # set_epoch forgets the resume point
    assert loader_batches(stream) == full


@pytest.mark.parametrize("workers", [0, 2])
def test_held_out_samples_never_come_and_the_epoch_counts_and_resumes_without_them(dataset, workers):
    # a fold model's held-out images (trainer.folds): a whole shard's and scattered ones, repeats counted
    held = frozenset(key_of(i) for i in (*range(SIZES[0]), SIZES[0] + 1, sum(SIZES) - 1))
    for use_repeats in (False, True):
        stream = stream_of(dataset, num_workers=workers, use_repeats=use_repeats, held_out=held)
        expected = Counter(k for k in expanded(use_repeats) if k not in held)
        batches = loader_batches(stream)
        assert Counter(keys(batches)) == expected
        assert stream.samples_per_epoch() == sum(expected.values()) and len(batches) == stream.batches_per_epoch()
        # the draws are those of the whole stream's copies of the same keys: holding out changes nothing else
        whole = Counter(s for b in loader_batches(stream_of(dataset, num_workers=workers, use_repeats=use_repeats))
                        for s in b)
        assert Counter(s for b in batches for s in b) == Counter({s: n for s, n in whole.items() if s[0] not in held})
        for b in (1, len(batches) - 1):
            stream.resume_at(b)
            assert loader_batches(stream) == batches[b:], b
        stream.set_epoch(0)


class CountingDecode:
    def __init__(self):
        self.calls = 0

    def __call__(self, jpg, meta, rng):
        self.calls += 1
        return key_draw(jpg, meta, rng)


def test_resume_decodes_only_the_samples_it_yields(dataset):
    decode = CountingDecode()
    stream = stream_of(dataset, decode=decode)
    stream.resume_at(5)
    assert len(keys(loader_batches(stream))) == 55 - 15 and decode.calls == 40


def test_resume_rejects_a_point_outside_the_epoch(dataset):
    stream = stream_of(dataset, num_workers=2)
    with pytest.raises(ValueError, match=r"an epoch has 0\.\.19 batches"):
        stream.resume_at(20)


def test_a_stream_iterated_with_other_workers_than_it_was_built_for_refuses(dataset):
    stream = stream_of(dataset, num_workers=2)
    with pytest.raises(RuntimeError, match=r"num_workers=2 runs in a loader with 0 workers"):
        next(iter(stream))


# ---- strictness on shard content ----

def stream_over(root: Path) -> ShardStream:
    return ShardStream(read_manifest(root).shards, num_classes=NUM_CLASSES, decode=key_draw, seed=0, batch_size=2,
                       shuffle_buffer=0)


def test_invalid_sample_json_names_the_shard_and_member(tmp_path):
    root = publish(tmp_path / "d", sizes=(1, 2), bad_members={1: [(f"{key_of(1)}.jpg", TINY),
                                                                  (f"{key_of(1)}.json", b"{not json")]})
    path = root / "shards/train-00000-001.tar"
    with pytest.raises(ShardReadError, match=re.escape(f"{path}: member {key_of(1)}.json is not valid UTF-8 JSON")):
        list(stream_over(root))


def test_a_jpg_without_its_json_names_the_shard_and_member(tmp_path):
    root = publish(tmp_path / "d", sizes=(2,), bad_members={0: [(f"{key_of(0)}.jpg", TINY),
                                                                (f"{key_of(1)}.jpg", TINY)]})
    path = root / "shards/train-00000-000.tar"
    with pytest.raises(ShardReadError, match=re.escape(f"{path}: member {key_of(0)}.jpg is followed by member "
                                                       f"{key_of(1)}.jpg, not {key_of(0)}.json")):
        list(stream_over(root))


def test_a_shard_shorter_than_its_manifest_entry_raises(tmp_path):
    short = [(f"{key_of(0)}.jpg", TINY), (f"{key_of(0)}.json", sample_json(key_of(0), [0], 1))]
    root = publish(tmp_path / "d", sizes=(3,), bad_members={0: short})
    with pytest.raises(ShardReadError, match=r"train-00000-000\.tar: ends after 1 samples"):
        list(stream_over(root))


def test_a_class_id_outside_the_class_index_names_the_member(tmp_path):
    bad = [(f"{key_of(0)}.jpg", TINY), (f"{key_of(0)}.json", sample_json(key_of(0), [NUM_CLASSES], 1))]
    root = publish(tmp_path / "d", sizes=(1,), bad_members={0: bad})
    with pytest.raises(ShardReadError, match=re.escape(f"member {key_of(0)}.json: \"class_ids\" must be a list of "
                                                       "ids in 0..3")):
        list(stream_over(root))


def test_a_rank_opens_only_the_shards_of_its_range(tmp_path):
    # 2 + 2 samples, 2 ranks, no repeats: rank 0 is shard 0 alone and never sees that shard 1 is broken
    root = publish(tmp_path / "d", sizes=(2, 2), bad_members={1: [(f"{key_of(2)}.jpg", TINY)]})
    shards = read_manifest(root).shards
    ranks = [ShardStream(shards, num_classes=NUM_CLASSES, decode=key_draw, seed=0, batch_size=2, use_repeats=False,
                         shuffle_buffer=0, rank=r, world_size=2) for r in (0, 1)]
    assert [s["key"] for s in ranks[0]] == [key_of(0), key_of(1)]
    with pytest.raises(ShardReadError, match=r"train-00000-001\.tar: member 00000000000000000002\.jpg is followed "
                                             r"by the end of the tar"):
        list(ranks[1])


def test_a_tar_that_cannot_be_opened_names_the_shard(tmp_path):
    root = publish(tmp_path / "d", sizes=(1,))
    (root / "shards/train-00000-000.tar").write_bytes(b"")
    with pytest.raises(ShardReadError, match=r"train-00000-000\.tar: cannot be opened as a tar"):
        list(stream_over(root))


def test_iterating_a_loader_leaves_the_global_torch_rng_alone(dataset):
    before = torch.get_rng_state()
    loader_batches(stream_of(dataset, num_workers=2))
    assert torch.equal(torch.get_rng_state(), before)


# ---- decoding ----

def gradient_jpeg(width=40, height=30) -> bytes:
    """Dark on the left, bright on the right: a flip shows as a falling row."""
    row = np.linspace(0, 255, width).astype(np.uint8)
    pixels = np.repeat(np.repeat(row[None, :, None], height, axis=0), 3, axis=2)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


META = {"key": key_of(1), "class_ids": [1, 3], "repeats": 1}


def test_eval_decode_normalizes_a_solid_image_and_builds_the_multi_hot_target():
    out = decode_sample(jpeg((20, 10), (200, 100, 50)), META, None, num_classes=5, image_size=8, train=False)
    assert out["key"] == key_of(1)
    assert out["target"].dtype == torch.float32 and out["target"].tolist() == [0, 1, 0, 1, 0]
    image = out["image"]
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, 8, 8)
    expected = [(c / 255 - m) / s for c, m, s in zip((200, 100, 50), MEAN, STD)]
    assert torch.allclose(image.mean(dim=(1, 2)), torch.tensor(expected), atol=0.05)
    assert torch.equal(load_image_tensor(jpeg((20, 10), (200, 100, 50)), 8), image)


def test_eval_decode_center_crops_the_shorter_side():
    # a wide image whose outer thirds are red: the center crop of the shorter side holds only the blue middle
    pixels = np.zeros((30, 90, 3), np.uint8)
    pixels[:, :30] = pixels[:, 60:] = (255, 0, 0)
    pixels[:, 30:60] = (0, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")  # lossless, so colors are exact
    image = load_image_tensor(buf.getvalue(), 6)
    red = (0 - MEAN[0]) / STD[0]
    assert tuple(image.shape) == (3, 6, 6) and torch.allclose(image[0, 1:-1, 1:-1], torch.tensor(red), atol=0.02)


def test_train_decode_depends_only_on_the_rng_and_flips_about_half_the_time():
    jpg = gradient_jpeg()
    decode = functools.partial(decode_sample, num_classes=5, image_size=16, train=True)
    first = decode(jpg, META, np.random.default_rng(3))["image"]
    assert torch.equal(first, decode(jpg, META, np.random.default_rng(3))["image"])
    flips = 0
    crops = set()
    for seed in range(40):
        image = decode(jpg, META, np.random.default_rng(seed))["image"]
        assert tuple(image.shape) == (3, 16, 16)
        flips += bool(image[0, :, 0].mean() > image[0, :, -1].mean())
        crops.add(round(float(image[0].std()), 4))
    assert 10 <= flips <= 30 and len(crops) > 20
    with pytest.raises(ValueError, match="needs a numpy Generator"):
        decode(jpg, META, None)


def test_decode_rejects_class_ids_outside_the_index_and_pickles_bound():
    with pytest.raises(ValueError, match=r"class ids \[5\] are outside 0\.\.4"):
        decode_sample(TINY, {"key": "k", "class_ids": [5]}, None, num_classes=5, image_size=4, train=False)
    bound = pickle.loads(pickle.dumps(functools.partial(decode_sample, num_classes=5, image_size=4, train=False)))
    assert bound(TINY, META, None)["target"].tolist() == [0, 1, 0, 1, 0]


def test_loader_with_workers_yields_image_and_target_batches(dataset):
    manifest = read_manifest(dataset)
    stream = ShardStream(manifest.shards, num_classes=NUM_CLASSES, seed=1, batch_size=8, num_workers=2,
                         decode=functools.partial(decode_sample, num_classes=NUM_CLASSES, image_size=8, train=True))
    batches = list(make_loader(stream))
    assert [len(b["key"]) for b in batches] == [8, 8, 8, 8, 8, 8, 4, 3]  # 28 and 27 samples per worker
    assert all(tuple(b["image"].shape[1:]) == (3, 8, 8) and b["image"].dtype == torch.float32 for b in batches)
    targets = {k: t.tolist() for b in batches for k, t in zip(b["key"], b["target"])}
    assert targets[key_of(6)] == [0, 0, 1, 0] and targets[key_of(4)] == [0, 0, 0, 0]
