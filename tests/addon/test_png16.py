"""The 16-bit PNG writer: exact 16-bit samples (read back by a small PNG reader written here from the PNG
specification), the file accepted by Pillow (which keeps the high byte of 16-bit RGB/RGBA), row order,
clipping, and refusals."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from addon.png16 import encode_png16, write_png16

RNG = np.random.default_rng(16)


def read_png16(data: bytes) -> np.ndarray:
    """(H, W, C) uint16 from a non-interlaced 16-bit RGB/RGBA PNG; checks the signature, every CRC and IHDR."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "bad signature"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC on {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data), "trailing bytes"
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    w, h, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, compression, filtering, interlace) == (16, 0, 0, 0)
    channels = {2: 3, 6: 4}[colour]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 1 + w * channels * 2
    assert len(raw) == h * stride
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride)
    assert not rows[:, 0].any(), "only filter type 0 (None) is decoded here"
    return rows[:, 1:].copy().view(">u2").reshape(h, w, channels).astype(np.uint16)


def exact_image(h: int, w: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Random 16-bit codes and float32 values k / 65535 that must encode back to exactly those codes."""
    q = RNG.integers(0, 65536, (h, w, c), dtype=np.uint16)
    q[0, 0] = 0
    q[-1, -1] = 65535
    return q, (q / 65535.0).astype(np.float32)


@pytest.mark.parametrize("channels", [3, 4])
def test_exact_16_bit_samples_round_trip(channels):
    q, image = exact_image(7, 11, channels)
    data = encode_png16(image)
    np.testing.assert_array_equal(read_png16(data), q)


@pytest.mark.parametrize(("channels", "mode"), [(3, "RGB"), (4, "RGBA")])
def test_pillow_reads_the_file_and_sees_the_high_bytes(channels, mode):
    q, image = exact_image(9, 5, channels)
    with Image.open(io.BytesIO(encode_png16(image))) as im:
        im.load()
        assert im.format == "PNG" and im.mode == mode and im.size == (5, 9)
        assert im.info.get("interlace", 0) == 0
        np.testing.assert_array_equal(np.asarray(im), (q >> 8).astype(np.uint8))


def test_rows_run_top_to_bottom():
    image = np.zeros((3, 2, 3), np.float32)
    image[0] = (1.0, 0.0, 0.0)  # top row red
    image[2] = (0.0, 0.0, 1.0)  # bottom row blue
    with Image.open(io.BytesIO(encode_png16(image))) as im:
        assert im.getpixel((0, 0)) == (255, 0, 0) and im.getpixel((1, 2)) == (0, 0, 255)
        assert im.getpixel((0, 1)) == (0, 0, 0)
    decoded = read_png16(encode_png16(image))
    assert decoded[0, 0].tolist() == [65535, 0, 0] and decoded[2, 1].tolist() == [0, 0, 65535]


def test_a_flipped_view_is_written_as_seen():
    q, image = exact_image(6, 4, 4)
    flipped = image[::-1]  # how colour.py hands Blender-ordered rows over
    assert not flipped.flags.c_contiguous
    np.testing.assert_array_equal(read_png16(encode_png16(flipped)), q[::-1])


def test_values_are_rounded_to_the_nearest_code():
    image = np.array([[[0.5, 0.25, 1.0 / 65535.0], [0.4 / 65535.0, 0.6 / 65535.0, 0.75]]], np.float32)
    decoded = read_png16(encode_png16(image))
    assert decoded.tolist() == [[[32768, 16384, 1], [0, 1, 49151]]]


def test_out_of_range_and_nan_are_clipped():
    image = np.array([[[-0.5, 1.5, np.nan], [np.inf, -np.inf, 1e30]]], np.float32)
    with np.errstate(all="ignore"):
        decoded = read_png16(encode_png16(image))
    assert decoded.tolist() == [[[0, 65535, 0], [65535, 0, 65535]]]


def test_float64_input_and_compression_levels_give_the_same_samples():
    q, image = exact_image(5, 8, 3)
    for level in (0, 1, 9):
        np.testing.assert_array_equal(read_png16(encode_png16(image.astype(np.float64), level)), q)


def test_write_png16_writes_the_same_bytes(tmp_path):
    _, image = exact_image(4, 3, 4)
    path = tmp_path / "out.png"
    write_png16(path, image)
    assert path.read_bytes() == encode_png16(image)
    with Image.open(path) as im:
        assert im.mode == "RGBA" and im.size == (3, 4)


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 1), (4, 4, 2), (4, 4, 5), (12,), (1, 4, 4, 3)])
def test_bad_shapes_raise_value_error(shape):
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\|4\) image, got shape"):
        encode_png16(np.zeros(shape, np.float32))


def test_float16_input_encodes_like_float32():
    image = np.array([[[0.0, 0.5, 1.0], [0.25, 0.75, 0.125]]], np.float16)
    with np.errstate(all="ignore"):
        got = read_png16(encode_png16(image))
    np.testing.assert_array_equal(got, read_png16(encode_png16(image.astype(np.float32))))


def test_an_empty_image_raises_value_error():
    with pytest.raises(ValueError):
        encode_png16(np.zeros((3, 0, 3), np.float32))


def test_level_zero_stores_the_same_pixels_uncompressed(tmp_path):
    image = np.random.default_rng(4).random((9, 7, 4), dtype=np.float32)
    stored, packed = encode_png16(image, level=0), encode_png16(image)
    np.testing.assert_array_equal(read_png16(stored), read_png16(packed))
    write_png16(tmp_path / "x.png", image, level=0)
    assert (tmp_path / "x.png").read_bytes() == stored
