"""Image input without Spark: path resolution, reading, hashing and decoding every pixel mode to RGB."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from tagmill.dataset.shards import ImageOptions, encode_image
from tagmill.labeling.images import (IMAGE_REASONS, ImageProblem, content_hash, open_image, read_bytes,
                                     resolve_path)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def _filled(mode: str, pixels: list) -> Image.Image:
    img = Image.new(mode, (len(pixels), 1))
    img.putdata(pixels)
    return img


def _rgb(img: Image.Image) -> list:
    return [tuple(p) for p in np.asarray(img).reshape(-1, 3).tolist()]


def _reason(data: bytes, **kw) -> str:
    with pytest.raises(ImageProblem) as err:
        open_image(data, **kw)
    return err.value.reason


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and ends where its pixel data (IDAT) starts: it opens, never decodes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + struct.pack(">I", 1000) + b"IDAT")


def _corrupt_png() -> bytes:
    """A complete PNG (IEND and all) with one byte of its compressed pixels flipped."""
    data = bytearray(_encode(Image.fromarray(np.arange(48 * 48 * 3, dtype=np.uint8).reshape(48, 48, 3)), "PNG"))
    data[data.index(b"IDAT") + 40] ^= 0xFF
    return bytes(data)


WIDE16 = np.array([[0, 255, 256, 0x1234, 65535]], np.uint16)
GRAYS16 = [(0, 0, 0), (0, 0, 0), (1, 1, 1), (0x12, 0x12, 0x12), (255, 255, 255)]
PALETTE = [255, 0, 0, 0, 255, 0, 0, 0, 255]

MODES = {
    "RGB": (lambda: _encode(_filled("RGB", [(10, 20, 30), (200, 100, 50)]), "PNG"),
            [(10, 20, 30), (200, 100, 50)]),
    "L": (lambda: _encode(_filled("L", [0, 77, 255]), "PNG"), [(0, 0, 0), (77, 77, 77), (255, 255, 255)]),
    "LA on white": (lambda: _encode(_filled("LA", [(100, 255), (100, 0), (0, 128)]), "PNG"),
                    [(100, 100, 100), (255, 255, 255), (127, 127, 127)]),
    "RGBA on white": (lambda: _encode(_filled("RGBA", [(255, 0, 0, 0), (0, 0, 255, 255), (0, 0, 0, 128)]), "PNG"),
                      [(255, 255, 255), (0, 0, 255), (127, 127, 127)]),
    "P": (lambda: _encode(_palette(), "PNG"), [(255, 0, 0), (0, 255, 0), (0, 0, 255)]),
    "P with a transparent index": (lambda: _encode(_palette(), "PNG", transparency=0),
                                   [(255, 255, 255), (0, 255, 0), (0, 0, 255)]),
    "CMYK": (lambda: _encode(_filled("CMYK", [(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255), (0, 255, 255, 0)]),
                             "TIFF"), [(255, 255, 255), (0, 255, 255), (0, 0, 0), (255, 0, 0)]),
    "I;16 (16-bit PNG)": (lambda: _encode(Image.fromarray(WIDE16), "PNG"), GRAYS16),
    "I;16B (big-endian TIFF)": (lambda: _encode(Image.frombytes("I;16B", (5, 1), WIDE16.astype(">u2").tobytes()),
                                                "TIFF"), GRAYS16),
    "I (32-bit TIFF, taken as 16-bit)": (
        lambda: _encode(Image.fromarray(np.array([[-5, 0, 256, 0x1234, 70000]], np.int32)), "TIFF"),
        [(0, 0, 0), (0, 0, 0), (1, 1, 1), (0x12, 0x12, 0x12), (255, 255, 255)]),
    "F (float TIFF)": (lambda: _encode(Image.fromarray(np.array([[-1.0, 0.4, 126.6, 300.0]], np.float32)), "TIFF"),
                       [(0, 0, 0), (0, 0, 0), (127, 127, 127), (255, 255, 255)]),
    "1 (bilevel)": (lambda: _encode(_filled("1", [0, 255, 0]), "PNG"), [(0, 0, 0), (255, 255, 255), (0, 0, 0)]),
}


def _palette() -> Image.Image:
    img = _filled("P", [0, 1, 2])
    img.putpalette(PALETTE)
    return img


@pytest.mark.parametrize("name", list(MODES))
def test_every_mode_decodes_to_exact_rgb(name):
    build, expected = MODES[name]
    img = open_image(build())
    assert (img.mode, img.size) == ("RGB", (len(expected), 1))
    assert _rgb(img) == expected


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animations_give_their_first_frame(fmt):
    frames = [Image.new("RGB", (8, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **kw)
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.n_frames == 3  # really animated
    img = open_image(data)
    assert img.size == (8, 6)
    assert set(_rgb(img)) == {(255, 0, 0)}


def test_exif_orientation_is_applied():
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show the stored picture turned 90 degrees clockwise
    img = open_image(_encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert img.size == (20, 40)
    top, bottom = img.getpixel((10, 5)), img.getpixel((10, 34))  # the stored left half is now on top
    assert max(abs(a - b) for a, b in zip(top, (255, 0, 0))) <= 8, top
    assert max(abs(a - b) for a, b in zip(bottom, (0, 0, 255))) <= 8, bottom


@pytest.mark.parametrize("data, reason", [
    (b"", "empty_image"),
    (b"just some text, saved as photo.jpg\n", "undecodable_image"),
    (np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(), "undecodable_image"),
    (_corrupt_png(), "undecodable_image"),
])
def test_unusable_bytes_get_their_reason(data, reason):
    assert _reason(data) == reason


@pytest.mark.parametrize("fmt, keep", [("JPEG", 0.6), ("JPEG", 0.05), ("PNG", 0.6), ("WEBP", 0.6)])
def test_a_file_cut_short_is_truncated(fmt, keep):
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = _encode(noise, fmt)
    assert _reason(data[: int(len(data) * keep)]) == "truncated_image"


def test_too_many_pixels_are_refused_before_decoding():
    assert _reason(_encode(Image.new("RGB", (20, 20)), "PNG"), max_pixels=100) == "image_too_large"
    assert _rgb(open_image(_encode(Image.new("RGB", (10, 10), (1, 2, 3)), "PNG"), max_pixels=100)) == [(1, 2, 3)] * 100
    header = _png_header(20, 20)  # no pixel data at all: decoding it would say truncated
    assert _reason(header) == "truncated_image"
    assert _reason(header, max_pixels=399) == "image_too_large"
    assert _reason(_png_header(100_000, 100_000)) == "image_too_large"


def test_pillows_global_limit_is_left_alone(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    filters = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would raise here
        img = open_image(_encode(Image.new("RGB", (10, 10), (7, 8, 9)), "PNG"), max_pixels=1000)
    assert _rgb(img) == [(7, 8, 9)] * 100
    # beyond 2 * MAX_IMAGE_PIXELS Pillow refuses to open the file at all (the documented limitation)
    assert _reason(_encode(Image.new("RGB", (20, 20)), "PNG"), max_pixels=1000) == "image_too_large"
    assert Image.MAX_IMAGE_PIXELS == 50 and warnings.filters == filters


@pytest.mark.parametrize("path", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "..", "a/./../../b/x.jpg"])
def test_paths_that_leave_the_root_are_refused(tmp_path, path):
    with pytest.raises(ImageProblem) as err:
        resolve_path(str(tmp_path), path)
    assert err.value.reason == "bad_image_path"
    with pytest.raises(ImageProblem) as err:
        read_bytes(str(tmp_path), path)
    assert err.value.reason == "bad_image_path"


def test_paths_resolve_under_the_root():
    assert resolve_path("/data/images", "a/../b.jpg") == "/data/images/b.jpg"
    assert resolve_path("/data/images", "./a//b.jpg") == "/data/images/a/b.jpg"
    assert resolve_path("s3://bucket/images/", "a/../b/c.jpg") == "s3://bucket/images/b/c.jpg"
    assert resolve_path("/data/images", "gs://other/x.jpg") == "gs://other/x.jpg"
    assert resolve_path("/data/images", "file:///tmp/x.jpg") == "file:///tmp/x.jpg"


def test_read_bytes_locally_and_through_fsspec(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"\x01\x02x")
    root = str(tmp_path)
    assert read_bytes(root, "a/x.jpg") == b"\x01\x02x"
    assert read_bytes(root, "b/../a/x.jpg") == b"\x01\x02x"
    assert read_bytes("/nowhere", f"file://{tmp_path}/a/x.jpg") == b"\x01\x02x"
    assert read_bytes(f"file://{tmp_path}", "a/x.jpg") == b"\x01\x02x"
    for where, path, reason in [(root, "a/missing.jpg", "missing_image"), (root, "a/x.jpg/y.jpg", "missing_image"),
                                (f"file://{tmp_path}", "a/missing.jpg", "missing_image"),
                                (root, "a", "unreadable_image"), (f"file://{tmp_path}", "a", "unreadable_image")]:
        with pytest.raises(ImageProblem) as err:
            read_bytes(where, path)
        assert err.value.reason == reason, (where, path)


def test_a_scheme_without_a_filesystem_says_what_to_install():
    with pytest.raises(ImageProblem) as err:
        read_bytes("nosuchfs://bucket", "x.jpg")
    assert err.value.reason == "unreadable_image"
    assert "nosuchfs://" in err.value.detail and "install" in err.value.detail


def test_content_hash_is_the_sha256_of_the_bytes():
    data = bytes(range(256)) * 3
    assert content_hash(data) == hashlib.sha256(data).hexdigest()
    assert content_hash(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_image_problem_carries_its_reason():
    err = ImageProblem("missing_image", "x.jpg: No such file")
    assert (err.reason, err.detail, str(err)) == ("missing_image", "x.jpg: No such file",
                                                   "missing_image: x.jpg: No such file")
    assert len(set(IMAGE_REASONS)) == 7
    with pytest.raises(ValueError, match="unknown image problem"):
        ImageProblem("blurry", "too soft")


def test_encode_image_keeps_a_jpeg_as_is_and_reencodes_the_rest():
    jpeg = _encode(Image.new("RGB", (30, 20), (200, 10, 10)), "JPEG")
    assert encode_image(jpeg, ImageOptions(max_side=0)) == jpeg
    png = encode_image(_encode(_filled("RGBA", [(0, 0, 0, 0)] * 4), "PNG"), ImageOptions(max_side=0, quality=95))
    with Image.open(io.BytesIO(png)) as img:
        assert (img.format, img.size) == ("JPEG", (4, 1))
        assert all(v >= 250 for p in _rgb(img.convert("RGB")) for v in p)  # transparent became white
    with pytest.raises(ImageProblem) as err:
        encode_image(jpeg[: len(jpeg) * 6 // 10], ImageOptions(max_side=0))
    assert err.value.reason == "truncated_image"
    with pytest.raises(ImageProblem) as err:
        encode_image(jpeg, ImageOptions(max_side=64, max_pixels=599))
    assert err.value.reason == "image_too_large"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_a_file_without_read_permission_is_unreadable(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"x")
    (tmp_path / "x.jpg").chmod(0)
    with pytest.raises(ImageProblem) as err:
        read_bytes(str(tmp_path), "x.jpg")
    assert err.value.reason == "unreadable_image"
