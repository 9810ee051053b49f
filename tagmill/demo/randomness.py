"""Named, independent random streams derived from the one demo seed.

Each part of the generator draws from its own stream (`stream(seed, "catalog")`,
`stream(seed, "image", 17)`), so changing how many numbers one part draws never shifts another part's
output, and an image drawn by any worker process is the same image. Names are turned into integers with
CRC-32, never with Python's per-process salted `hash()`.
"""

from __future__ import annotations

import random
import zlib

import numpy as np


def _key(part: str | int) -> int:
    return zlib.crc32(part.encode("utf-8")) if isinstance(part, str) else int(part)


def seed_sequence(seed: int, *parts: str | int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), *(_key(p) for p in parts)])


def stream(seed: int, *parts: str | int) -> np.random.Generator:
    """A numpy generator (PCG64) for the stream named by `parts`."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, *parts)))


def py_stream(seed: int, *parts: str | int) -> random.Random:
    """A stdlib generator for the stream named by `parts`: faster than numpy for many scalar draws."""
    state = seed_sequence(seed, *parts).generate_state(2, dtype=np.uint64)
    return random.Random(int(state[0]) << 64 | int(state[1]))
