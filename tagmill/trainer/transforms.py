"""Decoding one sample: JPEG bytes + its JSON -> {"image", "target", "key"} tensors for the trainer.

Augmentation draws come only from the numpy Generator the caller passes (the shard reader seeds one per
sample from seed, epoch, key and copy index), so the same sample gets the same crop and flip however the
loader spreads the work over processes. Bind the keyword arguments with functools.partial: a partial of a
module-level function pickles into DataLoader workers, a lambda does not.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
"""ImageNet normalization, as the published backbone weights expect."""

CROP_SCALE = (0.35, 1.0)
"""Random resized crop: the crop's share of the image area."""
CROP_RATIO = (3 / 4, 4 / 3)
"""Random resized crop: the crop's width / height."""

_MEAN_255 = np.array(MEAN, dtype=np.float32) * 255
_STD_255 = np.array(STD, dtype=np.float32) * 255


def decode_sample(jpg: bytes, meta: dict, rng: np.random.Generator | None, *, num_classes: int, image_size: int,
                  train: bool) -> dict:
    """One sample as the loader yields it: {"image": float32 [3, image_size, image_size] normalized with
    MEAN/STD, "target": float32 [num_classes] multi-hot of meta["class_ids"], "key": meta["key"]}.

    train=True: random resized crop (area share CROP_SCALE, aspect CROP_RATIO) and a horizontal flip with
    probability 0.5, all drawn from `rng`. train=False: shorter side resized to image_size, then center crop
    (`rng` may be None). Raises ValueError naming the key for a class id outside 0..num_classes-1."""
    key = meta["key"]
    if train and rng is None:
        raise ValueError(f"sample {key}: train=True needs a numpy Generator for its augmentations, got None")
    with Image.open(io.BytesIO(jpg)) as img:
        rgb = img.convert("RGB")
    if train:
        image = _random_resized_crop(rgb, image_size, rng)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    else:
        image = _resize_center_crop(rgb, image_size)
    return {"image": _to_tensor(image), "target": multi_hot(meta["class_ids"], num_classes, key), "key": key}


def decode_sample_with_title(jpg: bytes, meta: dict, rng: np.random.Generator | None, *, num_classes: int,
                             image_size: int, train: bool, vocab_size: int) -> dict:
    """`decode_sample` plus "title_ids": the sample's title as word ids (meta["title_ids"], [] when the sample
    has none), for SICoT co-training; batch such samples with reader.collate_titles. The image, target and
    augmentation draws are exactly those of `decode_sample`.

    Raises ValueError naming the key when title_ids is not a list of ints in 0..vocab_size-1 (the ids index
    the dataset's word vectors, whose size is vocab_size)."""
    sample = decode_sample(jpg, meta, rng, num_classes=num_classes, image_size=image_size, train=train)
    ids = meta.get("title_ids", [])
    if not isinstance(ids, list) or not all(isinstance(t, int) and 0 <= t < vocab_size for t in ids):
        raise ValueError(f"sample {meta['key']}: \"title_ids\" must be a list of word ids in 0..{vocab_size - 1} "
                         f"(the dataset's word vectors), found {ids!r}; the shards and word_vectors/ disagree "
                         f"(rebuild the dataset with `tagmill shards`)")
    return {**sample, "title_ids": ids}


def load_image_tensor(jpg: bytes, image_size: int) -> torch.Tensor:
    """The eval view of one JPEG (as decode_sample with train=False): float32 [3, image_size, image_size]."""
    with Image.open(io.BytesIO(jpg)) as img:
        rgb = img.convert("RGB")
    return _to_tensor(_resize_center_crop(rgb, image_size))


def eval_view(rgb: Image.Image, image_size: int, mean=MEAN, std=STD) -> np.ndarray:
    """The eval view of a decoded RGB image as float32 [3, image_size, image_size], normalized with mean/std
    (fractions of 1): what a model trained here sees at validation, for any model's own normalization."""
    pixels = np.asarray(_resize_center_crop(rgb, image_size), dtype=np.float32)
    normalized = (pixels - np.float32(255) * np.asarray(mean, np.float32)) / (np.float32(255) * np.asarray(std, np.float32))
    return np.ascontiguousarray(normalized.transpose(2, 0, 1))


def multi_hot(class_ids, num_classes: int, key: str = "?") -> torch.Tensor:
    """float32 [num_classes] with 1.0 at each of `class_ids` (an empty list gives all zeros)."""
    target = np.zeros(num_classes, dtype=np.float32)
    ids = np.asarray(class_ids, dtype=np.int64)
    bad = ids[(ids < 0) | (ids >= num_classes)].tolist()
    if bad:
        raise ValueError(f"sample {key}: class ids {bad} are outside 0..{num_classes - 1}; the shards and the "
                         f"class index disagree (rebuild the dataset with `tagmill shards`)")
    target[ids] = 1.0
    return torch.from_numpy(target)


def _random_resized_crop(img: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    # torchvision's RandomResizedCrop: up to 10 draws of a box that fits, else the largest center box
    # with the aspect ratio clamped into range. PIL's resize(box=...) crops and resizes in one pass.
    width, height = img.size
    area = width * height
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(10):
        target_area = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target_area * ratio))
        h = round(math.sqrt(target_area / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            break
    else:
        in_ratio = width / height
        if in_ratio < CROP_RATIO[0]:
            w, h = width, round(width / CROP_RATIO[0])
        elif in_ratio > CROP_RATIO[1]:
            w, h = round(height * CROP_RATIO[1]), height
        else:
            w, h = width, height
        top, left = (height - h) // 2, (width - w) // 2
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))


def _resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    # Resize-shorter-side-then-center-crop equals resizing the centered square of side min(w, h).
    width, height = img.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))


def _to_tensor(img: Image.Image) -> torch.Tensor:
    pixels = np.asarray(img, dtype=np.float32)
    normalized = (pixels - _MEAN_255) / _STD_255
    return torch.from_numpy(np.ascontiguousarray(normalized.transpose(2, 0, 1)))
