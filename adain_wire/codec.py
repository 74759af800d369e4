"""The codec of the wire protocol: messages to ZeroMQ frames (``encode_request``, ``encode_reply``) and back, strictly
for requests (``decode_request``: anything ``docs/protocol.md`` does not allow is a ``ProtocolError``) and leniently
for replies (``decode_reply``: unknown reply fields are ignored, so a newer backend can add some).

A message is multipart: frame 0 is a msgpack map (the header, with ``v``, ``op`` and ``id``); arrays and encoded
images travel as further frames, each referenced by exactly one descriptor in the header:
``{"dtype": "float32", "shape": [H, W, 4], "frame": 1}`` (little-endian, C order) or ``{"frame": 2}`` for opaque
bytes. Nothing is pickled or base64-encoded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from .messages import (
    COLOURSPACES,
    IMAGE_DTYPES,
    LABEL_DTYPES,
    OPS,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    SOFT_MASK_DTYPES,
    Cancel,
    CancelReply,
    ErrorCode,
    ErrorReply,
    Frames,
    Hello,
    HelloReply,
    Limits,
    ModelInfo,
    Passes,
    ProtocolError,
    RegionSpec,
    Release,
    ReleaseReply,
    Reply,
    Request,
    Shutdown,
    ShutdownReply,
    StylePut,
    StylePutReply,
    StyleRef,
    Stylize,
    StylizeReply,
    Timing,
    wire_array,
)
from .options import COLOR_MODES, MAX_HEADER_BYTES, MAX_ID_LENGTH, MIN_TILE
from .reader import MISSING, Reader, number, type_name


class _Writer:
    def __init__(self) -> None:
        self.buffers: Frames = []

    def array(self, arr: np.ndarray) -> dict[str, Any]:
        a = wire_array(arr)
        self.buffers.append(a.reshape(-1).view(np.uint8).data)
        return {"dtype": a.dtype.name, "shape": list(a.shape), "frame": len(self.buffers)}

    def blob(self, data: bytes) -> dict[str, Any]:
        self.buffers.append(data)
        return {"frame": len(self.buffers)}

    def frames(self, header: dict[str, Any]) -> Frames:
        packed: bytes = msgpack.packb(header, use_bin_type=True)
        return [packed, *self.buffers]


OPTIONAL_LIMITS = ("max_inflight",)  # limits an older backend does not state (their defaults stand)


def encode_request(msg: Request) -> Frames:
    """A request as ZeroMQ frames (header first); arrays are not copied when already little-endian C order."""
    w = _Writer()
    h: dict[str, Any] = {"v": PROTOCOL_VERSION, "op": msg.OP, "id": msg.id}
    if isinstance(msg, Hello):
        h["client"] = msg.client
    elif isinstance(msg, StylePut):
        if (msg.encoded is None) == (msg.image is None):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "style.put takes either encoded image bytes or an image array")
        if msg.encoded is not None:
            h["encoded"] = w.blob(msg.encoded)
        else:
            assert msg.image is not None
            h["image"] = w.array(msg.image)
            h["colourspace"] = msg.colourspace
        h["size"] = msg.size
    elif isinstance(msg, Stylize):
        h["image"] = w.array(msg.image)
        h["colourspace"] = msg.colourspace
        h["regions"] = [{"styles": [{"id": s.id, "weight": s.weight} for s in r.styles], "alpha": r.alpha} for r in msg.regions]
        if msg.masks is not None:
            h["masks"] = w.array(msg.masks)
        h["preserve_color"] = msg.preserve_color
        h["passes"] = {"combined": msg.passes.combined, "regions": msg.passes.regions}
        h["tile"] = msg.tile
        h["output_dtype"] = msg.output_dtype
    elif isinstance(msg, Cancel):
        h["target"] = msg.target
    elif isinstance(msg, Release):
        h["styles"] = msg.styles
    return w.frames(h)


def encode_reply(msg: Reply) -> Frames:
    """A reply as ZeroMQ frames (header first)."""
    w = _Writer()
    if isinstance(msg, ErrorReply):
        error: dict[str, Any] = {"code": str(msg.code), "message": msg.message}
        if msg.style is not None:
            error["style"] = msg.style
        return w.frames({"v": PROTOCOL_VERSION, "ok": False, "id": msg.id, "op": msg.op, "error": error})
    h: dict[str, Any] = {"v": PROTOCOL_VERSION, "ok": True, "id": msg.id, "op": msg.OP}
    if isinstance(msg, HelloReply):
        h.update(protocol=msg.protocol, server=msg.server, instance=msg.instance, device=msg.device, precision=msg.precision)
        h["model"] = {"encoder": msg.model.encoder, "decoder": msg.model.decoder, "iterations": msg.model.iterations}
        h["limits"] = {k: getattr(msg.limits, k) for k in Limits.__dataclass_fields__}
        h["colourspaces"] = list(msg.colourspaces)
        h["ops"] = list(msg.ops)
    elif isinstance(msg, StylePutReply):
        h.update(style=msg.style, width=msg.width, height=msg.height, cached=msg.cached)
    elif isinstance(msg, StylizeReply):
        h["combined"] = None if msg.combined is None else w.array(msg.combined)
        h["passes"] = [w.array(p) for p in msg.passes]
        h["colourspace"] = msg.colourspace
        h["timing"] = {"queued_ms": msg.timing.queued_ms, "compute_ms": msg.timing.compute_ms}
    elif isinstance(msg, CancelReply):
        h.update(target=msg.target, state=msg.state)
    elif isinstance(msg, ReleaseReply):
        h.update(styles_dropped=msg.styles_dropped, device_allocated=msg.device_allocated, device_reserved=msg.device_reserved)
    return w.frames(h)


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
    msg = _read_request(cls, r, request_id)
    r.finish()
    return msg


def _read_request(cls: type[Request], r: Reader, rid: str) -> Request:
    if cls is Hello:
        return Hello(rid, client=r.string("client", ""))
    if cls is StylePut:
        encoded = r.blob("encoded", None)
        image = r.array("image", IMAGE_DTYPES, (3,), None)
        if (encoded is None) == (image is None):
            raise r.fail("give either encoded (the bytes of a PNG/JPEG file) or image (an (H, W, 3|4) array)")
        if image is not None and image.shape[2] not in (3, 4):
            raise r.fail(f"image must be (H, W, 3) RGB or (H, W, 4) RGBA, got shape {list(image.shape)}", ErrorCode.BAD_ARRAY)
        colourspace = r.string("colourspace", "srgb", COLOURSPACES)
        size = r.get("size", int, 0, "an integer >= 0 (0: keep the size)")
        if size < 0:
            raise r.fail(f"size must be >= 0 (0: keep the size), got {size}")
        return StylePut(rid, encoded=encoded, image=image, colourspace=colourspace, size=size)
    if cls is Stylize:
        return _read_stylize(r, rid)
    if cls is Cancel:
        target = r.string("target")
        if not 0 < len(target) <= MAX_ID_LENGTH:
            raise r.fail(f"target must be a request id of 1 to {MAX_ID_LENGTH} characters")
        return Cancel(rid, target)
    if cls is Release:
        return Release(rid, styles=r.get("styles", bool, False))
    return Shutdown(rid)


def _read_stylize(r: Reader, rid: str) -> Stylize:
    image = r.array("image", IMAGE_DTYPES, (3,))
    if image.shape[2] not in (3, 4):
        raise r.fail(f"image must be (H, W, 3) RGB or (H, W, 4) RGBA, got shape {list(image.shape)}", ErrorCode.BAD_ARRAY)
    colourspace = r.get("colourspace", str, MISSING, "a colourspace tag")
    if colourspace not in COLOURSPACES:
        raise r.fail(
            f"unknown colourspace {colourspace!r}: this backend takes {', '.join(COLOURSPACES)} (display-referred sRGB "
            "values in [0, 1]); convert scene-linear renders through the view transform first"
        )
    raw_regions = r.get("regions", list, MISSING, "a list of {styles, alpha}")
    if not raw_regions:
        raise r.fail("regions must hold at least one region")
    regions = tuple(_read_region(r, i, reg) for i, reg in enumerate(raw_regions))
    masks = r.array("masks", LABEL_DTYPES + SOFT_MASK_DTYPES, (2, 3), None)
    h, w = image.shape[:2]
    if masks is None:
        if len(regions) != 1:
            raise r.fail(f"{len(regions)} regions need masks (a label map or soft masks); without masks give one region")
    elif masks.ndim == 2:
        if masks.dtype.name not in LABEL_DTYPES:
            raise r.fail(f"a label map (H, W) must be {', '.join(LABEL_DTYPES)}, got {masks.dtype.name}", ErrorCode.BAD_ARRAY)
        if masks.shape != (h, w):
            raise r.fail(f"label map is {list(masks.shape)} but the image is [{h}, {w}]", ErrorCode.BAD_ARRAY)
    else:
        if masks.dtype.name not in SOFT_MASK_DTYPES:
            raise r.fail(
                f"soft masks (R, H, W) must be {', '.join(SOFT_MASK_DTYPES)}, got {masks.dtype.name}", ErrorCode.BAD_ARRAY
            )
        if masks.shape != (len(regions), h, w):
            raise r.fail(f"soft masks are {list(masks.shape)} but {len(regions)} region(s) on a [{h}, {w}] image need "
                         f"[{len(regions)}, {h}, {w}]", ErrorCode.BAD_ARRAY)  # fmt: skip
    preserve = r.string("preserve_color", "none", COLOR_MODES)
    raw_passes = r.get("passes", dict, {}, "a map {combined, regions}")
    passes = _read_passes(r, raw_passes)
    tile = r.get("tile", int, None, "an integer (pixels) or nil")
    if tile is not None and tile != 0 and tile < MIN_TILE:
        raise r.fail(f"tile must be 0/nil (no tiling) or at least {MIN_TILE} pixels, got {tile}")
    output_dtype = r.string("output_dtype", None, IMAGE_DTYPES)
    return Stylize(rid, image, regions, colourspace, masks, preserve, passes, tile or None, output_dtype)


def _read_region(r: Reader, i: int, reg: Any) -> RegionSpec:
    if not isinstance(reg, dict) or set(map(str, reg)) - {"styles", "alpha"} or not isinstance(reg.get("styles"), list):
        raise r.fail(f"regions[{i}] must be a map {{styles: [{{id, weight}}, ...], alpha}}, got {reg!r:.80}")
    if not reg["styles"]:
        raise r.fail(f"regions[{i}] has no styles")
    styles = []
    for j, s in enumerate(reg["styles"]):
        if not isinstance(s, dict) or set(map(str, s)) - {"id", "weight"} or not isinstance(s.get("id"), str):
            raise r.fail(f"regions[{i}].styles[{j}] must be a map {{id: string, weight: number}}, got {s!r:.80}")
        weight = s.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise r.fail(f"regions[{i}].styles[{j}].weight must be a number, got {type_name(weight)}")
        styles.append(StyleRef(s["id"], number(r, f"regions[{i}].styles[{j}].weight", weight, 0.0, math.inf)))
    if sum(s.weight for s in styles) <= 0:
        raise r.fail(f"regions[{i}] style weights are all zero; give at least one a positive weight")
    alpha = reg.get("alpha", 1.0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise r.fail(f"regions[{i}].alpha must be a number in [0, 1], got {type_name(alpha)}")
    return RegionSpec(tuple(styles), number(r, f"regions[{i}].alpha", alpha, 0.0, 1.0))


def _read_passes(r: Reader, raw: dict[Any, Any]) -> Passes:
    extra = sorted(set(map(str, raw)) - {"combined", "regions"})
    if extra:
        raise r.fail(f"passes has unknown key(s) {extra}; use combined and regions")
    values = {k: raw.get(k, default) for k, default in (("combined", True), ("regions", False))}
    for k, v in values.items():
        if not isinstance(v, bool):
            raise r.fail(f"passes.{k} must be a boolean, got {type_name(v)}")
    if not (values["combined"] or values["regions"]):
        raise r.fail("passes asks for nothing: set combined and/or regions to true")
    return Passes(values["combined"], values["regions"])


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
    if op == "hello":
        model, limits = r.get("model", dict), r.get("limits", dict)
        try:
            mi = ModelInfo(str(model["encoder"]), str(model["decoder"]), str(model["iterations"]))
            lim = Limits(**{k: int(limits[k]) for k in Limits.__dataclass_fields__ if k in limits or k not in OPTIONAL_LIMITS})
        except (KeyError, TypeError, ValueError) as e:
            raise r.fail(f"hello reply has incomplete model or limits: {e}") from e
        return HelloReply(rid, r.get("protocol", int), r.get("server", str), r.get("instance", str), r.get("device", str),
                          r.get("precision", str), mi, lim, tuple(r.get("colourspaces", list, [])),
                          tuple(r.get("ops", list, [])))  # fmt: skip
    if op == "style.put":
        return StylePutReply(rid, r.get("style", str), r.get("width", int), r.get("height", int), r.get("cached", bool))
    if op == "stylize":
        combined = r.array("combined", IMAGE_DTYPES, (3,), None)
        passes = tuple(r.array_from(d, f"passes[{i}]", IMAGE_DTYPES, (3,)) for i, d in enumerate(r.get("passes", list, [])))
        timing = r.get("timing", dict, {})
        return StylizeReply(rid, combined, passes, r.get("colourspace", str),
                            Timing(float(timing.get("queued_ms", 0.0)), float(timing.get("compute_ms", 0.0))))  # fmt: skip
    if op == "cancel":
        return CancelReply(rid, r.get("target", str), r.get("state", str))
    if op == "release":
        return ReleaseReply(rid, r.get("styles_dropped", int), r.get("device_allocated", int), r.get("device_reserved", int))
    if op == "shutdown":
        return ShutdownReply(rid)
    raise r.fail(f"reply to unknown op {op!r}")
