"""Image input: where an image path points, its bytes, their content hash, and the decoded RGB picture.

Pure per-image functions, no Spark. Every way an image can be unusable raises `ImageProblem` with one of
`IMAGE_REASONS`, so callers quarantine the sample with its reason instead of stopping the run.

Paths are relative to an image root (a local folder or a URI such as s3://bucket/images); a path may also
be an absolute URI. Local files are read with open(), URIs through fsspec (imported on first use).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import struct
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_REASONS = ("bad_image_path", "missing_image", "unreadable_image", "empty_image",
                 "undecodable_image", "truncated_image", "image_too_large")
"""Why an image could not be used (`ImageProblem.reason`)."""

DEFAULT_MAX_PIXELS = 89_478_485
"""Pillow's default `Image.MAX_IMAGE_PIXELS`: about 0.25 GiB of 24-bit pixels."""

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
                  struct.error)
"""What Pillow raises for bytes it cannot identify or decode (UnidentifiedImageError is an OSError)."""
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_ADDRESS = re.compile(r" object at 0x[0-9A-Fa-f]+")


class ImageProblem(ValueError):
    """An image that cannot be used: `.reason` is one of IMAGE_REASONS, `.detail` a message for people."""

    def __init__(self, reason: str, detail: str):
        if reason not in IMAGE_REASONS:
            raise ValueError(f"unknown image problem {reason!r}; expected one of {IMAGE_REASONS}")
        # Pillow names the stream it read ("<_io.BytesIO object at 0x7f...>"): the address would make two
        # identical runs write different quarantine tables.
        self.reason, self.detail = reason, _ADDRESS.sub(" object", detail)
        super().__init__(f"{reason}: {self.detail}")


def resolve_path(root: str, path: str, allowed: Sequence[str] = ()) -> str:
    """Where `path` lives: `root` joined with `path`, or `path` itself when it is an absolute URI.

    Raises ImageProblem("bad_image_path") for an empty path, one with a NUL byte, an absolute local path
    ("/etc/passwd"), and one that leaves the root: lexically ("../x.jpg") or, for a local root, once every
    symlink is followed (a link inside the root to a file outside it). A local file must resolve inside the
    real path of `root` or of one of the `allowed` roots (folders the image folders link to, such as a storage
    mount); the resolved path is returned, so the file opened is the one checked. A URI root
    ("s3://bucket/images") is joined with "/"."""
    if not path or "\x00" in path:
        raise ImageProblem("bad_image_path", f"{path!r} is not a file path")
    if _URI.match(path):
        return path
    if os.path.isabs(path):
        raise ImageProblem("bad_image_path", f"{path!r} is an absolute path; image paths are relative to the "
                                             f"image root {root!r} or absolute URIs (s3://bucket/key)")
    relative = os.path.normpath(path)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        raise ImageProblem("bad_image_path", f"{path!r} leaves the image root {root!r}")
    if _URI.match(root):
        return f"{root.rstrip('/')}/{relative}"
    real = os.path.realpath(os.path.join(root, relative))
    if not any(real == base or real.startswith(base.rstrip(os.sep) + os.sep)
               for base in _real_roots(root, tuple(allowed))):
        raise ImageProblem("bad_image_path", f"{path!r} resolves to {real}, outside the image root {root!r}"
                                             + (f" and {', '.join(allowed)}" if allowed else "")
                                             + "; name further roots in inputs.allowed_image_roots")
    return real


@functools.lru_cache(maxsize=64)
def _real_roots(root: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(os.path.realpath(r) for r in (root, *allowed))


def read_bytes(root: str, path: str, allowed: Sequence[str] = ()) -> bytes:
    """The bytes of the image at `path` (see resolve_path); raises ImageProblem when it cannot be read.

    Reasons: "bad_image_path"; "missing_image" (no such file); "unreadable_image" (a directory, a symlink
    loop, no permission, any other I/O error, or a URI scheme with no filesystem installed). An empty file
    is returned as b"" (open_image calls it "empty_image")."""
    where = resolve_path(root, path, allowed)
    if _URI.match(where):
        return _read_uri(where)
    try:
        with open(where, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError) as err:
        raise ImageProblem("missing_image", f"{where}: {err.strerror}") from None
    except OSError as err:
        raise ImageProblem("unreadable_image", f"{where}: {err.strerror or err}") from None


def _read_uri(uri: str) -> bytes:
    scheme = uri.split("://", 1)[0]
    try:
        import fsspec
    except ImportError:
        raise ImageProblem("unreadable_image", f"{uri}: reading {scheme}:// paths needs fsspec; "
                                               "install it (pip install fsspec)") from None
    try:
        fs, fs_path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError, OSError) as err:
        raise ImageProblem("unreadable_image", f"{uri}: fsspec has no working filesystem for {scheme}:// ({err}); "
                                               "install its package (s3fs for s3://, gcsfs for gs://, "
                                               "aiohttp for http(s)://)") from None
    try:
        return fs.cat_file(fs_path)
    except FileNotFoundError as err:
        raise ImageProblem("missing_image", f"{uri}: {err}") from None
    except OSError as err:
        raise ImageProblem("unreadable_image", f"{uri}: {err}") from None


def content_hash(data: bytes) -> str:
    """The sha256 hex digest of an image's bytes (equal bytes, equal hash)."""
    return hashlib.sha256(data).hexdigest()


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The fully decoded picture of an image file's bytes, in mode "RGB", EXIF orientation applied.

    Animated GIF/WebP/PNG give their first frame. Transparent images (RGBA, LA, PA, P or L with a
    transparent colour) are composited on white; CMYK, P, L and 1 are converted; 16-bit grayscale
    (I;16, I;16B, I;16L, and I, taken as 16-bit) keeps its top 8 bits (value >> 8, negative values as 0);
    F is rounded and clipped to 0..255. A broken EXIF block leaves the picture as stored.

    Raises ImageProblem: "empty_image" (b""); "image_too_large" when the header declares more than
    `max_pixels` pixels (checked before any pixel is decoded); "truncated_image" when the file ends early;
    "undecodable_image" for anything else Pillow cannot identify or decode.

    Pillow's own limit is handled here (its DecompressionBombWarning is silenced for this call only), with
    one exception: Pillow refuses to open more than 2 * PIL.Image.MAX_IMAGE_PIXELS pixels whatever
    `max_pixels` says; such images are "image_too_large" too. Raise that global at start-up to go beyond."""
    if not data:
        raise ImageProblem("empty_image", "the file has 0 bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageProblem("image_too_large", f"{width}x{height} is {width * height} pixels, more "
                                                          f"than max_pixels={max_pixels}")
                img.load()
                return _to_rgb(_upright(img))
    except Image.DecompressionBombError as err:
        raise ImageProblem("image_too_large", f"{err} (Pillow's limit, 2 * PIL.Image.MAX_IMAGE_PIXELS)") from None
    except ImageProblem:
        raise
    except _DECODE_ERRORS as err:
        reason = "truncated_image" if _ends_early(data, err) else "undecodable_image"
        raise ImageProblem(reason, str(err) or type(err).__name__) from None


def _upright(img: Image.Image) -> Image.Image:
    """A copy of a loaded image turned as its EXIF orientation says (unturned when the EXIF is broken)."""
    try:
        return ImageOps.exif_transpose(img)
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error):
        return img.copy()


def _to_rgb(img: Image.Image) -> Image.Image:
    """`img` (a copy the caller owns) in mode RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        pixels = np.asarray(img).astype(np.int64)
        img = Image.fromarray((np.clip(pixels, 0, 65535) >> 8).astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.rint(np.asarray(img)), 0, 255).astype(np.uint8), "L")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _ends_early(data: bytes, err: Exception) -> bool:
    """Whether a failed decode is a file cut short: Pillow says "truncated", or a JPEG/PNG lacks its end
    marker, or a RIFF (WebP) file is shorter than its header declares. ("broken data stream" alone is not
    enough: Pillow says that of a corrupt zlib stream in a complete PNG too.)"""
    if "truncated" in str(err).lower():
        return True
    if data.startswith(b"\xff\xd8\xff"):
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return not data.endswith(b"IEND\xaeB`\x82")
    if data.startswith(b"RIFF") and len(data) >= 8:
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    return False
