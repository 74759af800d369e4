"""Cryptomatte decoding without Blender: the MurmurHash3 the ids are named with, the float32 id encoding, and
soft masks summed from synthetic multi-rank passes (anti-aliased edges included)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from addon.cryptomatte import coverage, murmurhash3_32, name_id

SEED = 0x9747B28C  # the seed most published MurmurHash3_x86_32 test vectors use

# Published MurmurHash3_x86_32 vectors (SMHasher's verification set as quoted around the web), each also
# checked once against the `mmh3` package (C reference implementation, mmh3.hash(data, seed, signed=False)).
REFERENCE = [
    (b"", 0, 0x00000000),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"\x21\x43\x65\x87", 0, 0xF55B516B),
    (b"\x21\x43\x65\x87", 0x5082EDEE, 0x2362F9DE),
    (b"\xff\xff\xff\xff", 0, 0x76293B50),
    (b"\x21\x43\x65", 0, 0x7E4A8634),  # 3-byte tail
    (b"\x21\x43", 0, 0xA0F7B07A),  # 2-byte tail
    (b"\x21", 0, 0x72661CF4),  # 1-byte tail
    (b"\x00\x00\x00", 0, 0x85F0B427),
    (b"\x00\x00", 0, 0x30F4C306),
    (b"\x00", 0, 0x514E28B7),
    (b"a", SEED, 0x7FA09EA6),
    (b"aa", SEED, 0x5D211726),
    (b"aaa", SEED, 0x283E0130),
    (b"aaaa", SEED, 0x5A97808A),
    (b"ab", SEED, 0x74875592),
    (b"abc", SEED, 0xC84A62DD),
    (b"abcd", SEED, 0xF0478627),
    (b"abc", 0, 0xB3DD93FA),
    (b"hello", 0, 0x248BFA47),
    (b"Hello, world!", SEED, 0x24884CBA),
    ("ππππππππ".encode(), SEED, 0xD58063C1),  # non-ASCII UTF-8
    (b"a" * 256, SEED, 0x37405BDC),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 0, 0xEE925B90),
    (b"The quick brown fox jumps over the lazy dog", 0, 0x2E4FF723),
    (b"The quick brown fox jumps over the lazy dog", SEED, 0x2FA826CD),
]

# Names as Blender would hash them (UTF-8), seed 0: checked once against mmh3 as above.
NAMES = [
    ("Cube", 0xA8FCE865),
    ("Sphere", 0xE5E9B0DB),
    ("Würfel", 0xC959A2B5),  # 2-byte UTF-8 sequence
    ("立方体", 0x3D662985),  # 9 bytes: two blocks and a 1-byte tail
    ("🙂", 0x3E226063),  # one 4-byte code point: a single block, no tail
]


@pytest.mark.parametrize(("data", "seed", "expected"), REFERENCE)
def test_murmurhash3_matches_the_published_vectors(data, seed, expected):
    assert murmurhash3_32(data, seed) == expected


@pytest.mark.parametrize(("name", "expected"), NAMES)
def test_murmurhash3_of_utf8_names(name, expected):
    assert murmurhash3_32(name.encode("utf-8")) == expected


def test_seed_is_taken_modulo_2_32():
    assert murmurhash3_32(b"hello", 1 << 32) == murmurhash3_32(b"hello", 0)
    assert murmurhash3_32(b"", -1) == 0x81F16F39


def spec_float_bits(name: str) -> int:
    """The Cryptomatte specification's mm3hash_float, as bits: flip bit 23 when the exponent is 0 or 255."""
    h = murmurhash3_32(name.encode("utf-8"))
    if (h >> 23) & 0xFF in (0, 255):
        h ^= 1 << 23
    return h


def as_float32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def test_name_id_keeps_ordinary_hashes_unchanged():
    assert name_id("Cube") == 0xA8FCE865 and name_id("Sphere") == 0xE5E9B0DB


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("Object.061", 0x0040DAEA, 0x00C0DAEA),  # exponent 0 (would be a denormal): becomes 1
        ("Object.136", 0x002F417D, 0x00AF417D),
        ("Object.243", 0xFFEBB920, 0xFF6BB920),  # exponent 255 (would be a NaN): becomes 254
        ("Object.507", 0xFFEB3140, 0xFF6B3140),
    ],
)
def test_name_id_clamps_the_exponent_away_from_0_and_255(name, raw, expected):
    assert murmurhash3_32(name.encode()) == raw
    assert (raw >> 23) & 0xFF in (0, 255)
    got = name_id(name)
    assert got == expected
    assert 1 <= (got >> 23) & 0xFF <= 254
    assert got & 0x807FFFFF == raw & 0x807FFFFF  # sign and mantissa kept
    f = np.float32(as_float32(got))
    assert np.isfinite(f) and abs(f) >= np.finfo(np.float32).tiny


def test_name_id_is_always_a_finite_normal_float32_and_matches_the_spec_formula():
    names = [f"Object.{i:03d}" for i in range(2000)] + [f"Material.{i}" for i in range(500)]
    bits = np.array([name_id(n) for n in names], np.uint32)
    floats = bits.view(np.float32)
    assert np.isfinite(floats).all()
    assert (np.abs(floats) >= np.finfo(np.float32).tiny).all()
    assert [int(b) for b in bits] == [spec_float_bits(n) for n in names]
    exponents = (bits >> 23) & 0xFF
    assert exponents.min() >= 1 and exponents.max() <= 254


# ----------------------------------------------------------------------------------- coverage

CUBE, SPHERE, PLANE = (np.array([name_id(n)], np.uint32).view(np.float32)[0] for n in ("Cube", "Sphere", "Plane"))


def layers_2x3() -> list[np.ndarray]:
    """Two passes (ranks 0-1 and 2-3) of a 2x3 image:

    (0,0) Cube 1.0          (0,1) Cube 0.7 + Sphere 0.3        (0,2) Sphere 0.7 + Cube 0.3
    (1,0) Sphere 1.0        (1,1) background (nothing)         (1,2) Sphere 0.5 + Plane 0.3 + Cube 0.2 (rank 2)
    """
    a = np.zeros((2, 3, 4), np.float32)
    b = np.zeros((2, 3, 4), np.float32)
    a[0, 0] = (CUBE, 1.0, 0.0, 0.0)
    a[0, 1] = (CUBE, 0.7, SPHERE, 0.3)
    a[0, 2] = (SPHERE, 0.7, CUBE, 0.3)
    a[1, 0] = (SPHERE, 1.0, 0.0, 0.0)
    a[1, 2] = (SPHERE, 0.5, PLANE, 0.3)
    b[1, 2] = (CUBE, 0.2, 0.0, 0.0)
    return [a, b]


def test_coverage_sums_every_rank_of_every_pass():
    layers = layers_2x3()
    cube = coverage(layers, ["Cube"])
    assert cube.dtype == np.float32 and cube.shape == (2, 3)
    np.testing.assert_allclose(cube, [[1.0, 0.7, 0.3], [0.0, 0.0, 0.2]], atol=1e-7)
    np.testing.assert_allclose(coverage(layers, ["Sphere"]), [[0.0, 0.3, 0.7], [1.0, 0.0, 0.5]], atol=1e-7)
    np.testing.assert_allclose(coverage(layers, ["Plane"]), [[0, 0, 0], [0, 0, 0.3]], atol=1e-7)
    both = coverage(layers, ("Sphere", "Cube"))
    np.testing.assert_allclose(both, [[1.0, 1.0, 1.0], [1.0, 0.0, 0.7]], atol=1e-7)
    everything = coverage(layers, iter(["Cube", "Sphere", "Plane"]))
    np.testing.assert_allclose(everything, [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]], atol=1e-6)


def test_coverage_of_the_first_pass_alone_misses_the_lower_ranks():
    first = coverage(layers_2x3()[:1], ["Cube"])
    np.testing.assert_allclose(first, [[1.0, 0.7, 0.3], [0.0, 0.0, 0.0]], atol=1e-7)


def test_a_name_listed_twice_counts_once():
    layers = layers_2x3()
    np.testing.assert_array_equal(coverage(layers, ["Cube", "Cube"]), coverage(layers, ["Cube"]))


def test_unknown_names_and_no_names_give_zeros():
    layers = layers_2x3()
    for names in (["Cone"], [], ["cube"]):  # names are exact (case-sensitive)
        out = coverage(layers, names)
        assert out.shape == (2, 3) and out.dtype == np.float32
        assert not out.any()


def test_coverage_is_clipped_to_one():
    layer = np.zeros((1, 2, 4), np.float32)
    layer[0, 0] = (CUBE, 0.8, CUBE, 0.6)  # a malformed pass listing one id twice
    layer[0, 1] = (CUBE, 0.4, SPHERE, 0.9)
    out = coverage([layer], ["Cube", "Sphere"])
    np.testing.assert_allclose(out, [[1.0, 1.0]])
    np.testing.assert_allclose(coverage([layer], ["Cube"]), [[1.0, 0.4]], atol=1e-7)


def test_ids_near_the_exponent_limits_are_found():
    bits = name_id("Object.061"), name_id("Object.243")  # exponent clamped up to 1 and down to 254
    layer = np.zeros((1, 2, 4), np.float32)
    layer.view(np.uint32)[0, 0, 0] = bits[0]
    layer[0, 0, 1] = 0.25
    layer.view(np.uint32)[0, 1, 2] = bits[1]
    layer[0, 1, 3] = 0.75
    np.testing.assert_allclose(coverage([layer], ["Object.061"]), [[0.25, 0.0]])
    np.testing.assert_allclose(coverage([layer], ["Object.243"]), [[0.0, 0.75]])


def test_passes_that_are_views_into_a_larger_buffer_work():
    a, b = layers_2x3()
    wide = np.concatenate([a, b], axis=2)  # (2, 3, 8): each pass a non-contiguous view
    views = [wide[..., :4], wide[..., 4:]]
    assert not views[0].flags.c_contiguous
    np.testing.assert_array_equal(coverage(views, ["Cube"]), coverage([a, b], ["Cube"]))


def test_no_passes_raises_with_what_to_enable():
    with pytest.raises(ValueError, match=r"no Cryptomatte passes: enable Cryptomatte"):
        coverage([], ["Cube"])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 3, 3), np.float32),  # three channels
        np.zeros((3, 3, 4), np.float32),  # another size than the first pass
        np.zeros((2, 3, 4), np.float64),  # another dtype
        np.zeros((2, 3, 4), np.float16),
    ],
)
def test_a_pass_of_the_wrong_shape_or_dtype_raises(bad):
    first = layers_2x3()[0]
    with pytest.raises(ValueError, match=r"a Cryptomatte pass must be \(2, 3, 4\) float32, got"):
        coverage([first, bad], ["Cube"])


def test_a_wrong_first_pass_raises_too():
    with pytest.raises(ValueError, match=r"must be \(2, 3, 4\) float32, got \(2, 3, 4\) float64"):
        coverage([np.zeros((2, 3, 4), np.float64)], ["Cube"])
