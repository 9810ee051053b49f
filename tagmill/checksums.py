"""Checksums every stage agrees on: the sha256 a manifest records and a reader checks (shards, word vectors,
teacher files)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_problem(path: str | Path, sha256: str, size: int | None = None) -> str | None:
    """What is wrong with a file a manifest lists: "missing", "size X != manifest Y" (when `size` is given),
    "sha256 mismatch (file A, manifest B)"; None when it is the file the manifest recorded."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    if size is not None and path.stat().st_size != size:
        return f"size {path.stat().st_size} != manifest {size}"
    digest = file_sha256(path)
    if digest != sha256:
        return f"sha256 mismatch (file {digest}, manifest {sha256})"
    return None
