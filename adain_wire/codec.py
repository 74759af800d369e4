"""The codec of the wire protocol: messages to ZeroMQ frames (``encode_request``, ``encode_reply``) and back, strictly
for requests (``decode_request``: anything ``docs/protocol.md`` does not allow is a ``ProtocolError``) and leniently
for replies (``decode_reply``: unknown reply fields are ignored, so a newer backend can add some).

A message is multipart: frame 0 is a msgpack map (the header, with ``v``, ``op`` and ``id``); arrays and encoded
images travel as further frames, each referenced by exactly one descriptor in the header:
``{"dtype": "float32", "shape": [H, W, 4], "frame": 1}`` (little-endian, C order) or ``{"frame": 2}`` for opaque
bytes. Nothing is pickled or base64-encoded.

What each message's header holds is declared once, in ``schema``; the functions here handle the envelope (``v``,
``op``, ``id``, ``ok``, ``error``) and run over those declarations for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from .fields import Writer
from .messages import (
    OPS,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    ErrorCode,
    ErrorReply,
    Frames,
    ProtocolError,
    Reply,
    Request,
)
from .options import MAX_HEADER_BYTES, MAX_ID_LENGTH
from .reader import Reader, type_name
from .schema import OPTIONAL_LIMITS as OPTIONAL_LIMITS  # (re-exported: it lived here before schema.py)
from .schema import REPLY_SPECS, REPLY_TYPES, REQUEST_SPECS


def encode_request(msg: Request) -> Frames:
    """A request as ZeroMQ frames (header first); arrays are not copied when already little-endian C order."""
    w = Writer()
    header = REQUEST_SPECS[type(msg)].encode(msg, w, {"v": PROTOCOL_VERSION, "op": msg.OP, "id": msg.id})
    return w.frames(header)


def encode_reply(msg: Reply) -> Frames:
    """A reply as ZeroMQ frames (header first)."""
    w = Writer()
    if isinstance(msg, ErrorReply):
        error: dict[str, Any] = {"code": str(msg.code), "message": msg.message}
        if msg.style is not None:
            error["style"] = msg.style
        return w.frames({"v": PROTOCOL_VERSION, "ok": False, "id": msg.id, "op": msg.op, "error": error})
    header = REPLY_SPECS[type(msg)].encode(msg, w, {"v": PROTOCOL_VERSION, "ok": True, "id": msg.id, "op": msg.OP})
    return w.frames(header)


def _salvage_id(raw: memoryview) -> tuple[str | None, str | None]:
    """(id, op) of a header that failed strict decoding (e.g. invalid UTF-8 in another field), when the header
    is still a msgpack map whose ``id`` (and ``op``) are valid strings: the error reply can then carry the id
    (docs/protocol.md, errors). Strings are read as bytes here, so one broken field spoils no other."""
    try:
        loose = msgpack.unpackb(raw, raw=True, strict_map_key=False, use_list=True)
    except (ValueError, TypeError, msgpack.exceptions.ExtraData, msgpack.exceptions.StackError):
        return None, None
    if not isinstance(loose, dict):
        return None, None

    def text(key: bytes) -> str | None:
        value = loose.get(key)
        if not isinstance(value, bytes):
            return None
        try:
            decoded = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return decoded if 0 < len(decoded) <= MAX_ID_LENGTH else None

    return text(b"id"), text(b"op")


def _unpack_header(frames: Sequence[Any], what: str) -> dict[str, Any]:
    if not frames:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"empty {what}: expected a msgpack header frame")
    raw = memoryview(frames[0]).cast("B")
    if raw.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} header is {raw.nbytes} bytes; the limit is {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.exceptions.ExtraData, msgpack.exceptions.StackError) as e:
        rid, op = _salvage_id(raw)
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} header (frame 0) is not valid msgpack: {e}",
                            request_id=rid, op=op) from e  # fmt: skip
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} header must be a msgpack map, got {type_name(header)}")
    return header


def decode_request(frames: Sequence[Any]) -> Request:
    """Strictly decode a request's frames (header first, without the routing id frame the ROUTER socket adds).

    Raises ProtocolError; its ``request_id`` and ``op`` are set as soon as they could be read, so the
    backend can answer the request with the error. Arrays are read-only views of the frames (no copy).
    """
    header = _unpack_header(frames, "request")
    rid = header.get("id")
    request_id = rid if isinstance(rid, str) and 0 < len(rid) <= MAX_ID_LENGTH else None
    op = header.get("op") if isinstance(header.get("op"), str) else None
    v = header.get("v")
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"request header needs v (the protocol version, {PROTOCOL_VERSION})",
                            request_id=request_id, op=op)  # fmt: skip
    if v != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.BAD_VERSION,
            f"request uses protocol version {v} but this backend speaks version {PROTOCOL_VERSION}: "
            "install matching versions of the add-on and the backend",
            request_id=request_id,
            op=op,
        )
    if request_id is None:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"request header needs id: a string of 1 to {MAX_ID_LENGTH} characters, "
                            f"got {rid!r}", op=op)  # fmt: skip
    if op is None:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "request header needs op (a string)", request_id=request_id)
    cls = REQUEST_TYPES.get(op)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_OP, f"unknown op {op!r}; this backend knows {', '.join(OPS)}",
                            request_id=request_id, op=op)  # fmt: skip
    r = Reader(header, frames, op, strict=True, code=ErrorCode.BAD_REQUEST)
    r.request_id, r.op = request_id, op
    msg = cls(request_id, **REQUEST_SPECS[cls].decode(r))
    r.finish()
    return msg


def decode_reply(frames: Sequence[Any]) -> Reply:
    """Decode a reply's frames. Unknown fields are ignored; missing or mistyped ones raise ProtocolError."""
    header = _unpack_header(frames, "reply")
    rid = header.get("id")
    v = header.get("v")
    if v != PROTOCOL_VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION, f"backend replied with protocol version {v!r}, this add-on speaks "
                            f"{PROTOCOL_VERSION}: install matching versions of the add-on and the backend",
                            request_id=rid if isinstance(rid, str) else None)  # fmt: skip
    op = header.get("op")
    r = Reader(header, frames, "reply", strict=False, code=ErrorCode.BAD_MESSAGE)
    r.request_id = rid if isinstance(rid, str) else None
    r.op = op if isinstance(op, str) else None
    ok = r.get("ok", bool)
    if not ok:
        err = r.get("error", dict)
        code, message = err.get("code"), err.get("message")
        if not isinstance(code, str) or not isinstance(message, str):
            raise r.fail("error must be a map {code: string, message: string}")
        style = err.get("style")
        return ErrorReply(r.request_id, r.op, code, message, style if isinstance(style, str) else None)
    rid = r.get("id", str)
    cls = REPLY_TYPES.get(op) if isinstance(op, str) else None
    if cls is None:
        raise r.fail(f"reply to unknown op {op!r}")
    return cls(rid, **REPLY_SPECS[cls].decode(r))
