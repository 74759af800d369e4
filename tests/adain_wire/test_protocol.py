"""The protocol module on its own: every message type round-trips; malformed input raises the specific error."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import msgpack
import numpy as np
import pytest

from adain_wire.protocol import (
    MAX_HEADER_BYTES,
    CancelReply,
    ErrorCode,
    ErrorReply,
    Hello,
    HelloReply,
    Limits,
    ModelInfo,
    Passes,
    ProtocolError,
    RegionSpec,
    Release,
    ReleaseReply,
    Shutdown,
    ShutdownReply,
    StylePut,
    StylePutReply,
    StyleRef,
    Stylize,
    StylizeReply,
    Timing,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    style_id,
)
from adain_wire.protocol import Cancel as CancelRequest

RNG = np.random.default_rng(1)
IMAGE = RNG.random((20, 24, 4), dtype=np.float32)
LABELS = RNG.integers(0, 3, (20, 24)).astype(np.uint16)


def wire(frames: list[Any]) -> list[bytes]:
    """What the other side receives: each frame as bytes."""
    return [bytes(f) for f in frames]


def fields(msg: Any) -> dict[str, Any]:
    return {k: getattr(msg, k) for k in msg.__dataclass_fields__}


def assert_same(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    fa, fb = fields(a), fields(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        x, y = fa[k], fb[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray), k
            assert x.dtype == y.dtype and x.shape == y.shape, k
            np.testing.assert_array_equal(x, y)
        elif isinstance(x, tuple) and x and isinstance(x[0], np.ndarray):
            assert len(x) == len(y)
            for p, q in zip(x, y, strict=True):
                np.testing.assert_array_equal(p, q)
                assert p.dtype == q.dtype
        else:
            assert x == y, k


REQUESTS = [
    Hello("1"),
    Hello("2", client="blender 4.5 / adain add-on"),
    StylePut("3", encoded=b"\x89PNG\r\n\x1a\n fake bytes", size=256),
    StylePut("4", image=(IMAGE * 255).astype(np.uint8)),
    StylePut("5", image=IMAGE[..., :3].astype(np.float16), size=64),
    Stylize("6", IMAGE, (RegionSpec((StyleRef("a"),)),)),
    Stylize(
        "7",
        (IMAGE * 65535).astype(np.uint16),
        (
            RegionSpec((StyleRef("a", 2.0), StyleRef("b", 0.5)), 0.25),
            RegionSpec((StyleRef("c"),), 0.0),
            RegionSpec((StyleRef("a"),), 1.0),
        ),
        masks=LABELS,
        preserve_color="coral",
        passes=Passes(False, True),
        tile=512,
        output_dtype="float16",
    ),
    Stylize(
        "8",
        IMAGE[..., :3],
        (RegionSpec((StyleRef("a"),)), RegionSpec((StyleRef("b"),))),
        masks=RNG.random((2, 20, 24), dtype=np.float32),
        preserve_color="luminance",
    ),
    CancelRequest("9", target="7"),
    Release("10"),
    Release("11", styles=True),
    Shutdown("12"),
]

LIMITS = Limits(max_pixels=100, max_message_bytes=2000, max_regions=3, max_styles_per_region=2, max_queue=4, style_cache=5)
REPLIES = [
    HelloReply("1", 1, "adain-backend 0.1.0", "abc", "cuda:0 (RTX)", "bf16", ModelInfo("enc", "dec", "9000"), LIMITS),
    StylePutReply("3", "f" * 64, 512, 384, cached=True),
    StylizeReply("6", IMAGE, (), "srgb", Timing(0.5, 12.25)),
    StylizeReply("7", None, (IMAGE.astype(np.float16), (IMAGE * 255).astype(np.uint8)), "srgb", Timing(0.0, 1.0)),
    CancelReply("9", "7", "queued"),
    ReleaseReply("10", 3, 1024, 4096),
    ShutdownReply("12"),
    ErrorReply("6", "stylize", ErrorCode.UNKNOWN_STYLE, "style abc is not known: put it again", style="abc"),
    ErrorReply(None, None, ErrorCode.BAD_MESSAGE, "request header (frame 0) is not valid msgpack"),
]


@pytest.mark.parametrize("msg", REQUESTS, ids=lambda m: f"{m.OP}-{m.id}")
def test_requests_round_trip(msg):
    assert_same(decode_request(wire(encode_request(msg))), msg)


@pytest.mark.parametrize("msg", REPLIES, ids=lambda m: f"{type(m).__name__}-{m.id}")
def test_replies_round_trip(msg):
    assert_same(decode_reply(wire(encode_reply(msg))), msg)


def test_arrays_travel_as_raw_frames_described_in_the_header():
    frames = encode_request(REQUESTS[6])
    header = msgpack.unpackb(frames[0])
    assert header["v"] == 1 and header["op"] == "stylize" and header["id"] == "7"
    assert header["image"] == {"dtype": "uint16", "shape": [20, 24, 4], "frame": 1}
    assert header["masks"] == {"dtype": "uint16", "shape": [20, 24], "frame": 2}
    assert len(frames) == 3 and bytes(frames[2]) == LABELS.astype("<u2").tobytes()


def test_big_endian_and_strided_arrays_are_sent_little_endian_and_contiguous():
    image = IMAGE.astype(">f4")[:, ::2]
    back = decode_request(wire(encode_request(Stylize("x", image, (RegionSpec((StyleRef("a"),)),)))))
    assert isinstance(back, Stylize)
    np.testing.assert_array_equal(back.image, image)


def test_style_id_is_a_content_hash_of_what_shapes_the_statistics():
    put = StylePut("a", image=IMAGE)
    assert style_id(put) == style_id(StylePut("b", image=IMAGE.copy())) == style_id(StylePut("c", image=IMAGE.astype(">f4")))
    assert style_id(put) != style_id(StylePut("a", image=IMAGE, size=64))
    assert style_id(put) != style_id(StylePut("a", image=IMAGE[::-1]))
    assert style_id(StylePut("a", encoded=b"abc")) != style_id(StylePut("a", encoded=b"abd"))
    assert len(style_id(put)) == 64


def request(frames_or_header: dict[str, Any] | list[Any]) -> ProtocolError:
    frames = [msgpack.packb(frames_or_header)] if isinstance(frames_or_header, dict) else frames_or_header
    with pytest.raises(ProtocolError) as info:
        decode_request(frames)
    return info.value


IMG = {"dtype": "float32", "shape": [20, 24, 4], "frame": 1}
REG = [{"styles": [{"id": "a"}]}]


@pytest.mark.parametrize(
    ("frames", "code", "words"),
    [
        ([], ErrorCode.BAD_MESSAGE, "empty request"),
        ([b"\x93\x01"], ErrorCode.BAD_MESSAGE, "not valid msgpack"),
        ([msgpack.packb("hello")], ErrorCode.BAD_MESSAGE, "must be a msgpack map"),
        ([b"\x80" + b" " * MAX_HEADER_BYTES], ErrorCode.BAD_MESSAGE, "the limit is"),
        ({"op": "hello", "id": "x"}, ErrorCode.BAD_MESSAGE, "needs v"),
        ({"v": True, "op": "hello", "id": "x"}, ErrorCode.BAD_MESSAGE, "needs v"),
        ({"v": 0, "op": "hello", "id": "x"}, ErrorCode.BAD_VERSION, "speaks version 1"),
        ({"v": 1, "op": "hello", "id": ""}, ErrorCode.BAD_MESSAGE, "needs id"),
        ({"v": 1, "op": "hello", "id": "x" * 129}, ErrorCode.BAD_MESSAGE, "needs id"),
        ({"v": 1, "id": "x"}, ErrorCode.BAD_MESSAGE, "needs op"),
        ({"v": 1, "op": "render", "id": "x"}, ErrorCode.UNKNOWN_OP, "knows hello, style.put, stylize"),
        ({"v": 1, "op": "hello", "id": "x", "client": 3}, ErrorCode.BAD_REQUEST, "'client' must be a string"),
        ({"v": 1, "op": "release", "id": "x", "styles": 1}, ErrorCode.BAD_REQUEST, "'styles' must be a boolean"),
        ({"v": 1, "op": "hello", "id": "x", "extra": 1}, ErrorCode.BAD_REQUEST, "unknown field(s) ['extra']"),
        ({"v": 1, "op": "style.put", "id": "x"}, ErrorCode.BAD_REQUEST, "give either encoded"),
        ({"v": 1, "op": "style.put", "id": "x", "encoded": {"frame": 1}, "size": -1}, ErrorCode.BAD_ARRAY, "no frames"),
        ({"v": 1, "op": "stylize", "id": "x", "image": "pixels"}, ErrorCode.BAD_REQUEST, "array descriptor"),
        ({"v": 1, "op": "stylize", "id": "x", "image": {**IMG, "shape": [20, -24, 4]}}, ErrorCode.BAD_ARRAY, "non-negative"),
        ({"v": 1, "op": "stylize", "id": "x", "image": {**IMG, "order": "F"}}, ErrorCode.BAD_ARRAY, "unknown key(s) ['order']"),
        ({"v": 1, "op": "stylize", "id": "x", "image": {**IMG, "frame": True}}, ErrorCode.BAD_ARRAY, "refers to frame True"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_requests_raise_specific_protocol_errors(frames, code, words):
    err = request(frames)
    assert err.code == code
    assert words in err.message


def test_errors_carry_the_request_id_and_op_once_readable():
    err = request({"v": 2, "op": "stylize", "id": "r1"})
    assert (err.code, err.request_id, err.op) == (ErrorCode.BAD_VERSION, "r1", "stylize")
    frames = [
        msgpack.packb({"v": 1, "op": "stylize", "id": "r2", "image": IMG, "colourspace": "srgb", "regions": REG}),
        IMAGE.tobytes()[:-4],
    ]
    err = request(frames)
    assert (err.code, err.request_id, err.op) == (ErrorCode.BAD_ARRAY, "r2", "stylize")
    assert "7676 bytes" in err.message and "7680 bytes" in err.message


def test_stylize_cross_field_checks():
    base = {"v": 1, "op": "stylize", "id": "x", "image": IMG, "colourspace": "srgb", "regions": REG}
    assert "colourspace" in request([msgpack.packb({**base, "colourspace": "acescg"}), IMAGE.tobytes()]).message
    two = [{"styles": [{"id": "a"}]}, {"styles": [{"id": "b"}]}]
    assert "need masks" in request([msgpack.packb({**base, "regions": two}), IMAGE.tobytes()]).message
    weights = [{"styles": [{"id": "a", "weight": -1}]}]
    assert "finite number in [0, inf]" in request([msgpack.packb({**base, "regions": weights}), IMAGE.tobytes()]).message
    region = [{"styles": [{"id": "a"}], "alpha": 1, "gamma": 2}]
    assert "regions[0] must be a map" in request([msgpack.packb({**base, "regions": region}), IMAGE.tobytes()]).message


def test_replies_are_decoded_leniently_but_checked():
    extra = msgpack.packb({"v": 1, "ok": True, "id": "1", "op": "shutdown", "future_field": [1, 2]})
    assert decode_reply([extra]) == ShutdownReply("1")
    with pytest.raises(ProtocolError) as info:
        decode_reply([msgpack.packb({"v": 3, "ok": True, "id": "1", "op": "shutdown"})])
    assert info.value.code == ErrorCode.BAD_VERSION and "add-on" in info.value.message
    with pytest.raises(ProtocolError) as info:
        decode_reply([msgpack.packb({"v": 1, "ok": True, "id": "1", "op": "style.put", "style": "s"})])
    assert info.value.code == ErrorCode.BAD_MESSAGE and "width" in info.value.message


def test_the_wire_package_imports_neither_bpy_nor_torch_nor_the_addon():
    code = ("import sys, adain_wire.protocol, adain_wire.client, adain_wire.manager; "
            "bad = [m for m in ('bpy', 'torch', 'addon') if m in sys.modules]; print(bad); sys.exit(bool(bad))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
