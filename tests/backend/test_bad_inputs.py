"""A table of bad requests: each gets an error reply with its code, and the server goes on serving everyone."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from PIL import Image
from wire import Wire

from adain_wire.protocol import ErrorCode, ErrorReply, Hello, HelloReply, StylePut, StylePutReply, StylizeReply, encode_request
from backend.config import Config
from backend.server import Server
from backend.service import make_service

FRAME = np.random.default_rng(3).random((32, 32, 3), dtype=np.float32)
FRAME_DESC = {"dtype": "float32", "shape": [32, 32, 3], "frame": 1}
FRAME_BYTES = FRAME.tobytes()
MAX_PIXELS = 64 * 64


def bad_utf8_header(broken: str) -> bytes:
    """A hello whose field ``broken`` is a msgpack str holding the bytes FF FE (not UTF-8); the rest is valid."""
    fields: dict[str, Any] = {"v": 1, "op": "hello", "id": "bad", "client": "test"}
    fields[broken] = "@@"
    return msgpack.packb(fields).replace(b"\xa2@@", b"\xa2\xff\xfe")


def header(**fields: Any) -> bytes:
    return msgpack.packb({"v": 1, "id": "bad", **fields})


def stylize(sid: str, **override: Any) -> list[bytes]:
    """A valid stylize request for ``sid``, with header fields replaced (None deletes one)."""
    fields: dict[str, Any] = {"op": "stylize", "image": FRAME_DESC, "colourspace": "srgb",
                              "regions": [{"styles": [{"id": sid, "weight": 1.0}], "alpha": 1.0}]}  # fmt: skip
    fields.update(override)
    return [header(**{k: v for k, v in fields.items() if v is not None}), FRAME_BYTES]


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's calling card)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def soft(r: int, h: int = 32, w: int = 32, value: float = 0.5) -> np.ndarray:
    return np.full((r, h, w), value, np.float32)


def two_regions(sid: str) -> list[dict[str, Any]]:
    return [{"styles": [{"id": sid}], "alpha": 1.0}] * 2


def with_masks(sid: str, masks: np.ndarray, regions: int = 2) -> list[bytes]:
    desc = {"dtype": masks.dtype.name, "shape": list(masks.shape), "frame": 2}
    frames = stylize(sid, masks=desc, regions=[{"styles": [{"id": sid}], "alpha": 1.0}] * regions)
    return [*frames, masks.tobytes()]


# (case name, builder(style id) -> frames, expected code, reply id (None: not attributable))
CASES: list[tuple[str, Callable[[str], list[bytes]], ErrorCode, str | None]] = [
    ("empty header", lambda s: [b""], ErrorCode.BAD_MESSAGE, None),
    ("header not msgpack", lambda s: [b"\xc1\xc1 not msgpack"], ErrorCode.BAD_MESSAGE, None),
    ("header is a list", lambda s: [msgpack.packb([1, "hello", "x"])], ErrorCode.BAD_MESSAGE, None),
    ("header too large", lambda s: [header(op="hello", client="x" * 70000)], ErrorCode.BAD_MESSAGE, None),
    ("no version", lambda s: [msgpack.packb({"op": "hello", "id": "bad"})], ErrorCode.BAD_MESSAGE, "bad"),
    ("future version", lambda s: [msgpack.packb({"v": 2, "op": "hello", "id": "bad"})], ErrorCode.BAD_VERSION, "bad"),
    ("no id", lambda s: [msgpack.packb({"v": 1, "op": "hello"})], ErrorCode.BAD_MESSAGE, None),
    ("invalid UTF-8 in a field, id readable", lambda s: [bad_utf8_header("client")], ErrorCode.BAD_MESSAGE, "bad"),
    ("invalid UTF-8 in the id", lambda s: [bad_utf8_header("id")], ErrorCode.BAD_MESSAGE, None),
    ("integer id", lambda s: [msgpack.packb({"v": 1, "op": "hello", "id": 5})], ErrorCode.BAD_MESSAGE, None),
    ("unknown op", lambda s: [header(op="paint")], ErrorCode.UNKNOWN_OP, "bad"),
    ("unknown field", lambda s: [header(op="hello", colour="red")], ErrorCode.BAD_REQUEST, "bad"),
    ("missing image", lambda s: stylize(s, image=None)[:1], ErrorCode.BAD_REQUEST, "bad"),
    ("missing frame", lambda s: stylize(s)[:1], ErrorCode.BAD_ARRAY, "bad"),
    ("float64 image", lambda s: stylize(s, image={**FRAME_DESC, "dtype": "float64"}), ErrorCode.BAD_ARRAY, "bad"),
    ("2-d image", lambda s: stylize(s, image={**FRAME_DESC, "shape": [32, 96]}), ErrorCode.BAD_ARRAY, "bad"),
    ("5 channels", lambda s: stylize(s, image={**FRAME_DESC, "shape": [32, 32, 5]}), ErrorCode.BAD_ARRAY, "bad"),
    (
        "shape does not fit the bytes",
        lambda s: stylize(s, image={**FRAME_DESC, "shape": [32, 31, 3]}),
        ErrorCode.BAD_ARRAY,
        "bad",
    ),
    ("frame index out of range", lambda s: stylize(s, image={**FRAME_DESC, "frame": 4}), ErrorCode.BAD_ARRAY, "bad"),
    ("stray extra frame", lambda s: [*stylize(s), b"stray"], ErrorCode.BAD_ARRAY, "bad"),
    (
        "one frame used twice",
        lambda s: [header(op="style.put", image=FRAME_DESC, encoded={"frame": 1}), FRAME_BYTES],
        ErrorCode.BAD_ARRAY,
        "bad",
    ),
    ("unknown colourspace", lambda s: stylize(s, colourspace="linear"), ErrorCode.BAD_REQUEST, "bad"),
    ("alpha above 1", lambda s: stylize(s, regions=[{"styles": [{"id": s}], "alpha": 1.5}]), ErrorCode.BAD_REQUEST, "bad"),
    ("all weights zero", lambda s: stylize(s, regions=[{"styles": [{"id": s, "weight": 0}]}]), ErrorCode.BAD_REQUEST, "bad"),
    ("no regions", lambda s: stylize(s, regions=[]), ErrorCode.BAD_REQUEST, "bad"),
    ("two regions without masks", lambda s: stylize(s, regions=two_regions(s)), ErrorCode.BAD_REQUEST, "bad"),
    ("label map wrong size", lambda s: with_masks(s, np.zeros((16, 32), np.uint8)), ErrorCode.BAD_ARRAY, "bad"),
    ("float label map", lambda s: with_masks(s, np.zeros((32, 32), np.float32)), ErrorCode.BAD_ARRAY, "bad"),
    ("soft masks for 3 regions, 2 given", lambda s: with_masks(s, soft(3)), ErrorCode.BAD_ARRAY, "bad"),
    ("negative soft mask", lambda s: with_masks(s, soft(2, value=-1.0)), ErrorCode.BAD_REQUEST, "bad"),
    (
        "NaN in the frame",
        lambda s: [stylize(s)[0], np.full((32, 32, 3), np.nan, np.float32).tobytes()],
        ErrorCode.BAD_REQUEST,
        "bad",
    ),
    ("passes asks for nothing", lambda s: stylize(s, passes={"combined": False}), ErrorCode.BAD_REQUEST, "bad"),
    ("tile too small", lambda s: stylize(s, tile=8), ErrorCode.BAD_REQUEST, "bad"),
    ("unknown preserve_color", lambda s: stylize(s, preserve_color="sepia"), ErrorCode.BAD_REQUEST, "bad"),
    ("unknown style", lambda s: stylize("0" * 64), ErrorCode.UNKNOWN_STYLE, "bad"),
    (
        "frame below 16 px",
        lambda s: [stylize(s, image={**FRAME_DESC, "shape": [8, 128, 3]})[0], FRAME_BYTES],
        ErrorCode.BAD_ARRAY,
        "bad",
    ),
    (
        "frame over max pixels",
        lambda s: [stylize(s, image={"dtype": "uint8", "shape": [80, 80, 3], "frame": 1})[0], bytes(80 * 80 * 3)],
        ErrorCode.TOO_LARGE,
        "bad",
    ),
    ("too many regions", lambda s: with_masks(s, np.zeros((32, 32), np.uint8), regions=5), ErrorCode.TOO_LARGE, "bad"),
    (
        "style not an image",
        lambda s: [header(op="style.put", encoded={"frame": 1}), b"GIF89a but not really"],
        ErrorCode.BAD_IMAGE,
        "bad",
    ),
    (
        "style decompression bomb",
        lambda s: [header(op="style.put", encoded={"frame": 1}), png_claiming(50000, 50000)],
        ErrorCode.TOO_LARGE,
        "bad",
    ),
    (
        "style resized past the limit",
        lambda s: encode_request(StylePut("bad", image=FRAME, size=4096)),
        ErrorCode.TOO_LARGE,
        "bad",
    ),
    (
        "style bytes and array",
        lambda s: [header(op="style.put", encoded={"frame": 1}, image={**FRAME_DESC, "frame": 2}), b"x", FRAME_BYTES],
        ErrorCode.BAD_REQUEST,
        "bad",
    ),
    ("shutdown with fields", lambda s: [header(op="shutdown", now=True)], ErrorCode.BAD_REQUEST, "bad"),
    ("cancel without target", lambda s: [header(op="cancel")], ErrorCode.BAD_REQUEST, "bad"),
]


@pytest.fixture(scope="module")
def server(model):
    """One server for the whole table (max_pixels and max_regions small so the limits are reachable)."""
    ctx = zmq.Context()
    config = Config(bind="tcp://127.0.0.1:*", device="cpu", precision="fp32", max_pixels=MAX_PIXELS, max_regions=4)
    srv = Server(config, make_service(config, model), ctx).start()
    w = Wire(ctx, srv.endpoint)
    put = w.ask(StylePut("style", image=FRAME))
    assert isinstance(put, StylePutReply)
    yield srv, ctx, put.style
    w.close()
    srv.stop(timeout=10)
    ctx.destroy(linger=0)


@pytest.mark.parametrize(("build", "code", "reply_id"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_request_gets_an_error_reply_and_the_server_keeps_serving(server, build, code, reply_id):
    srv, ctx, sid = server
    bystander = Wire(ctx, srv.endpoint)
    offender = Wire(ctx, srv.endpoint)
    try:
        assert isinstance(bystander.ask(Hello("before")), HelloReply)
        reply = offender.ask(build(sid))
        assert isinstance(reply, ErrorReply), reply
        assert (reply.code, reply.id) == (code, reply_id), reply.message
        assert len(reply.message) > 20  # a sentence a person can act on, not just a code
        assert isinstance(offender.ask(Hello("after")), HelloReply)  # the offender itself is still served
        good = bystander.ask(stylize(sid, id="good"))
        assert isinstance(good, StylizeReply) and good.id == "good"
    finally:
        bystander.close()
        offender.close()


def test_a_frame_over_the_message_limit_drops_only_that_connection(model):
    """ZMQ_MAXMSGSIZE: an oversized frame cannot be attributed (the peer is disconnected, no reply), and the
    server still serves everyone, that client included once it reconnects."""
    ctx = zmq.Context()
    config = Config(bind="tcp://127.0.0.1:*", device="cpu", precision="fp32", max_message_bytes=64 * 1024)
    srv = Server(config, make_service(config, model), ctx).start()
    offender, bystander = Wire(ctx, srv.endpoint), Wire(ctx, srv.endpoint)
    try:
        hello = offender.ask(Hello("limits"))
        assert isinstance(hello, HelloReply) and hello.limits.max_message_bytes == 64 * 1024
        big = np.zeros((128, 128, 3), np.float32)  # 196 KiB
        offender.send([msgpack.packb({"v": 1, "id": "big", "op": "style.put", "image":
                       {"dtype": "float32", "shape": [128, 128, 3], "frame": 1}}), big.tobytes()])  # fmt: skip
        assert offender.silent(0.5)
        assert isinstance(bystander.ask(Hello("other")), HelloReply)
        assert isinstance(offender.ask(Hello("again")), HelloReply)
    finally:
        offender.close()
        bystander.close()
        srv.stop(timeout=10)
        ctx.destroy(linger=0)
