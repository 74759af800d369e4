"""The wire protocol between the add-on's client and the stylization backend, version 1.

``docs/protocol.md`` is the authoritative description; this module implements it for both sides:
typed message classes, ``encode_*`` to a list of ZeroMQ frames, strict ``decode_request`` (the backend
rejects anything the spec does not allow, with a ``ProtocolError`` carrying an error code) and lenient
``decode_reply`` (unknown reply fields are ignored, so a newer backend can add some).

A message is multipart: frame 0 is a msgpack map (the header, with ``v``, ``op`` and ``id``); arrays and
encoded images travel as further frames, each referenced by exactly one descriptor in the header:
``{"dtype": "float32", "shape": [H, W, 4], "frame": 1}`` (little-endian, C order) or ``{"frame": 2}``
for opaque bytes. Nothing is pickled or base64-encoded.

Imports neither bpy nor torch (numpy and msgpack only): it ships inside the add-on and the backend
imports it as ``from adain_wire.protocol import ...``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Final, TypeVar

import msgpack
import numpy as np

from .options import COLOR_MODES, MAX_HEADER_BYTES, MAX_ID_LENGTH, MIN_TILE

PROTOCOL_VERSION: Final = 1
COLOURSPACES: Final = ("srgb",)  # display-referred sRGB-encoded values in [0, 1]: what the model was trained on
IMAGE_DTYPES: Final = ("uint8", "uint16", "float16", "float32")
LABEL_DTYPES: Final = ("uint8", "uint16", "int32")
SOFT_MASK_DTYPES: Final = ("float16", "float32")

Frames = list[bytes | memoryview]  # what encode_* returns; zmq sends each item as one frame without copying


class ErrorCode(StrEnum):
    """The ``error.code`` values of a failed reply (see the table in docs/protocol.md)."""

    BAD_MESSAGE = "bad_message"  # frame 0 is not a msgpack map with valid v, op and id
    BAD_VERSION = "bad_version"  # the header's v is not a version this side speaks
    UNKNOWN_OP = "unknown_op"
    BAD_REQUEST = "bad_request"  # a field is missing, has the wrong type, or a value out of range
    BAD_ARRAY = "bad_array"  # an array descriptor or its frame is wrong (dtype, shape, frame index, byte count)
    TOO_LARGE = "too_large"  # over a limit announced in hello's limits
    UNKNOWN_STYLE = "unknown_style"  # put the style again (error.style names it)
    BAD_IMAGE = "bad_image"  # an encoded style image could not be decoded (or is a decompression bomb)
    CANCELLED = "cancelled"
    BUSY = "busy"  # the request queue is full; retry later
    FORBIDDEN = "forbidden"  # e.g. shutdown from a non-loopback peer
    SHUTTING_DOWN = "shutting_down"
    OUT_OF_MEMORY = "out_of_memory"  # the device ran out of memory: use tiling, smaller frames, or release
    INTERNAL = "internal"  # a bug in the backend; its log has the traceback


class ProtocolError(Exception):
    """A message that breaks the protocol. ``code`` is an ``ErrorCode``; ``request_id``/``op`` are set when
    the offending request could still be identified (the backend then answers it with this error)."""

    def __init__(self, code: ErrorCode, message: str, *, request_id: str | None = None, op: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.op = op


# ----------------------------------------------------------------------------------- small types
@dataclass(frozen=True)
class StyleRef:
    """One style of a region's mix: its id (from ``style.put``) and its weight (weights are normalised)."""

    id: str
    weight: float = 1.0


@dataclass(frozen=True)
class RegionSpec:
    """A region: a mix of styles and its own content-style trade-off alpha in [0, 1]."""

    styles: tuple[StyleRef, ...]
    alpha: float = 1.0

    @classmethod
    def mix(cls, styles: str | Mapping[str, float], alpha: float = 1.0) -> RegionSpec:
        """``RegionSpec.mix({id_a: 1, id_b: 3}, 0.8)`` or ``RegionSpec.mix(id_a)``."""
        weights = {styles: 1.0} if isinstance(styles, str) else styles
        return cls(tuple(StyleRef(k, float(w)) for k, w in weights.items()), alpha)


@dataclass(frozen=True)
class Passes:
    """Which outputs a stylize reply carries: the combined frame and/or one full-frame pass per region."""

    combined: bool = True
    regions: bool = False


@dataclass(frozen=True)
class ModelInfo:
    encoder: str
    decoder: str
    iterations: str


@dataclass(frozen=True)
class Limits:
    """What the backend accepts; a client checks requests against these before sending them."""

    max_pixels: int  # H*W of a frame, a style array or a decoded style image
    max_message_bytes: int  # per frame (ZMQ_MAXMSGSIZE): larger frames make the backend drop the connection
    max_regions: int
    max_styles_per_region: int
    max_queue: int  # queued model requests (all clients) before "busy"
    style_cache: int  # style statistics kept (least recently used are evicted)


@dataclass(frozen=True)
class Timing:
    queued_ms: float
    compute_ms: float


# -------------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Hello:
    """Handshake (and heartbeat): the reply says the protocol, server, instance, device, model and limits."""

    OP: ClassVar[str] = "hello"
    id: str
    client: str = ""


@dataclass(frozen=True, eq=False)
class StylePut:
    """A style image, as encoded bytes (PNG/JPEG/...) or as an (H, W, 3|4) array; alpha is ignored.

    ``size`` > 0 resizes the style so its shorter side has that many pixels before encoding (0: as is).
    The reply's style id is ``style_id(this)``: a client can compute it before the reply comes.
    """

    OP: ClassVar[str] = "style.put"
    id: str
    encoded: bytes | None = None
    image: np.ndarray | None = None
    colourspace: str = "srgb"
    size: int = 0


@dataclass(frozen=True, eq=False)
class Stylize:
    """One frame (H, W, 3|4) with its regions; ``masks`` is a label map (H, W) or soft masks (R, H, W).

    Without masks there must be exactly one region (the whole frame). ``output_dtype`` None: the input's.
    """

    OP: ClassVar[str] = "stylize"
    id: str
    image: np.ndarray
    regions: tuple[RegionSpec, ...]
    colourspace: str = "srgb"
    masks: np.ndarray | None = None
    preserve_color: str = "none"
    passes: Passes = field(default_factory=Passes)
    tile: int | None = None
    output_dtype: str | None = None


@dataclass(frozen=True)
class Cancel:
    """Cancel the request ``target`` sent earlier on the same connection."""

    OP: ClassVar[str] = "cancel"
    id: str
    target: str


@dataclass(frozen=True)
class Release:
    """Free cached device memory (torch.cuda.empty_cache); with ``styles`` also forget every cached style."""

    OP: ClassVar[str] = "release"
    id: str
    styles: bool = False


@dataclass(frozen=True)
class Shutdown:
    """Stop the backend (accepted from loopback peers only)."""

    OP: ClassVar[str] = "shutdown"
    id: str


Request = Hello | StylePut | Stylize | Cancel | Release | Shutdown
REQUEST_TYPES: Final[dict[str, type[Request]]] = {c.OP: c for c in (Hello, StylePut, Stylize, Cancel, Release, Shutdown)}
OPS: Final = tuple(REQUEST_TYPES)


# --------------------------------------------------------------------------------------- replies
@dataclass(frozen=True)
class ErrorReply:
    """A failed request. ``id`` is None when the request could not be identified; ``style`` is set for
    ``unknown_style``."""

    id: str | None
    op: str | None
    code: str
    message: str
    style: str | None = None


@dataclass(frozen=True)
class HelloReply:
    OP: ClassVar[str] = "hello"
    id: str
    protocol: int
    server: str
    instance: str  # changes each time the backend starts: a client uses it to notice a restart
    device: str
    precision: str
    model: ModelInfo
    limits: Limits
    colourspaces: tuple[str, ...] = COLOURSPACES
    ops: tuple[str, ...] = OPS


@dataclass(frozen=True)
class StylePutReply:
    OP: ClassVar[str] = "style.put"
    id: str
    style: str
    width: int  # of the style as encoded (after resizing)
    height: int
    cached: bool  # the backend already had it


@dataclass(frozen=True, eq=False)
class StylizeReply:
    """Arrays (H, W, C) with the request's channel count (alpha copied) in ``output_dtype``."""

    OP: ClassVar[str] = "stylize"
    id: str
    combined: np.ndarray | None
    passes: tuple[np.ndarray, ...]
    colourspace: str
    timing: Timing


@dataclass(frozen=True)
class CancelReply:
    """``state``: "queued" (dropped, answered "cancelled"), "running" (will be answered "cancelled"),
    "unknown" (already answered, or never seen on this connection)."""

    OP: ClassVar[str] = "cancel"
    id: str
    target: str
    state: str


@dataclass(frozen=True)
class ReleaseReply:
    OP: ClassVar[str] = "release"
    id: str
    styles_dropped: int
    device_allocated: int  # bytes still allocated on the device after releasing (0 on the CPU)
    device_reserved: int


@dataclass(frozen=True)
class ShutdownReply:
    OP: ClassVar[str] = "shutdown"
    id: str


Reply = ErrorReply | HelloReply | StylePutReply | StylizeReply | CancelReply | ReleaseReply | ShutdownReply
CANCEL_STATES: Final = ("queued", "running", "unknown")


# ------------------------------------------------------------------------------------ style ids
def style_id(put: StylePut) -> str:
    """The content hash that names a style: sha256 over the payload and what shapes its statistics."""
    h = hashlib.sha256(f"adain-style-v1;size={put.size};".encode())
    if put.encoded is not None:
        h.update(b"encoded;")
        h.update(put.encoded)
    elif put.image is not None:
        arr = _wire_array(put.image)
        h.update(f"array;{arr.dtype.name};{list(arr.shape)};{put.colourspace};".encode())
        h.update(arr.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


# -------------------------------------------------------------------------------------- encoding
def _wire_array(arr: np.ndarray) -> np.ndarray:
    """Little-endian, C-contiguous (copies only when needed)."""
    a = np.asarray(arr)
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))


class _Writer:
    def __init__(self) -> None:
        self.buffers: Frames = []

    def array(self, arr: np.ndarray) -> dict[str, Any]:
        a = _wire_array(arr)
        self.buffers.append(a.reshape(-1).view(np.uint8).data)
        return {"dtype": a.dtype.name, "shape": list(a.shape), "frame": len(self.buffers)}

    def blob(self, data: bytes) -> dict[str, Any]:
        self.buffers.append(data)
        return {"frame": len(self.buffers)}

    def frames(self, header: dict[str, Any]) -> Frames:
        packed: bytes = msgpack.packb(header, use_bin_type=True)
        return [packed, *self.buffers]


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


# -------------------------------------------------------------------------------------- decoding
T = TypeVar("T")
_MISSING: Any = object()


def _type_name(value: object) -> str:
    return "nil" if value is None else type(value).__name__


class _Reader:
    """Typed access to one header map; records what was read so leftovers can be reported."""

    def __init__(self, header: dict[str, Any], frames: Sequence[Any], where: str, strict: bool, code: ErrorCode) -> None:
        self.h, self.frames, self.where, self.strict, self.code = header, frames, where, strict, code
        self.seen: set[str] = {"v", "op", "id", "ok"}
        self.used_frames: set[int] = set()
        self.request_id: str | None = None
        self.op: str | None = None

    def fail(self, message: str, code: ErrorCode | None = None) -> ProtocolError:
        return ProtocolError(code or self.code, f"{self.where}: {message}", request_id=self.request_id, op=self.op)

    def get(self, name: str, kinds: type | tuple[type, ...], default: Any = _MISSING, what: str = "") -> Any:
        self.seen.add(name)
        if name not in self.h or (self.h[name] is None and default is not _MISSING):
            if default is _MISSING:
                raise self.fail(f"missing field {name!r}" + (f" ({what})" if what else ""))
            return default
        value = self.h[name]
        if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
            raise self.fail(f"field {name!r} must be {what or _kinds(kinds)}, got bool")
        if not isinstance(value, kinds):
            raise self.fail(f"field {name!r} must be {what or _kinds(kinds)}, got {_type_name(value)}")
        return value

    def string(self, name: str, default: Any = _MISSING, choices: Sequence[str] | None = None) -> Any:
        value = self.get(name, str, default)
        if choices is not None and value is not None and value not in choices:
            raise self.fail(f"field {name!r} is {value!r}; use one of {', '.join(repr(c) for c in choices)}")
        return value

    def number(self, name: str, default: Any = _MISSING, low: float = -math.inf, high: float = math.inf) -> float:
        return _number(self, name, self.get(name, (int, float), default, "a number"), low, high)

    def array(self, name: str, dtypes: Sequence[str], ndims: Sequence[int], default: Any = _MISSING) -> Any:
        desc = self.get(name, dict, default, "an array descriptor {dtype, shape, frame}")
        return None if desc is None else self.array_from(desc, name, dtypes, ndims)

    def array_from(self, desc: Any, name: str, dtypes: Sequence[str], ndims: Sequence[int]) -> np.ndarray:
        if not isinstance(desc, dict):
            raise self.fail(
                f"{name} must be an array descriptor {{dtype, shape, frame}}, got {_type_name(desc)}", ErrorCode.BAD_ARRAY
            )
        extra = sorted(set(map(str, desc)) - {"dtype", "shape", "frame"})
        if extra and self.strict:
            raise self.fail(f"{name} descriptor has unknown key(s) {extra}", ErrorCode.BAD_ARRAY)
        dtype = desc.get("dtype")
        if dtype not in dtypes:
            raise self.fail(f"{name} has dtype {dtype!r}; use one of {', '.join(dtypes)}", ErrorCode.BAD_ARRAY)
        shape = desc.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise self.fail(f"{name} shape must be a list of non-negative integers, got {shape!r}", ErrorCode.BAD_ARRAY)
        if len(shape) not in ndims:
            dims = " or ".join(str(n) for n in ndims)
            raise self.fail(f"{name} must have {dims} dimensions, got shape {shape}", ErrorCode.BAD_ARRAY)
        buf = self.frame(desc, name)
        dt = np.dtype(dtype).newbyteorder("<")
        expected = math.prod(shape) * dt.itemsize
        if buf.nbytes != expected:
            raise self.fail(
                f"{name} is {dtype} {shape} = {expected} bytes but frame {desc['frame']} holds {buf.nbytes} bytes",
                ErrorCode.BAD_ARRAY,
            )
        return np.frombuffer(buf, dtype=dt).reshape(shape)

    def blob(self, name: str, default: Any = _MISSING) -> bytes | None:
        desc = self.get(name, dict, default, "a frame descriptor {frame}")
        if desc is None:
            return None
        extra = sorted(set(map(str, desc)) - {"frame"})
        if extra and self.strict:
            raise self.fail(f"{name} descriptor has unknown key(s) {extra}", ErrorCode.BAD_ARRAY)
        return bytes(self.frame(desc, name))

    def frame(self, desc: dict[Any, Any], name: str) -> memoryview:
        index = desc.get("frame")
        count = len(self.frames)
        if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index < count:
            have = f"frames 1..{count - 1}" if count > 1 else "no frames after the header"
            raise self.fail(f"{name} refers to frame {index!r} but the message has {have}", ErrorCode.BAD_ARRAY)
        if index in self.used_frames:
            raise self.fail(f"{name} refers to frame {index}, which another descriptor already uses", ErrorCode.BAD_ARRAY)
        self.used_frames.add(index)
        return memoryview(self.frames[index]).cast("B")

    def finish(self) -> None:
        if not self.strict:
            return
        extra = sorted(str(k) for k in self.h if k not in self.seen)
        if extra:
            raise self.fail(f"unknown field(s) {extra}; this backend speaks protocol {PROTOCOL_VERSION}")
        unused = sorted(set(range(1, len(self.frames))) - self.used_frames)
        if unused:
            raise self.fail(f"frame(s) {unused} are not referenced by any descriptor", ErrorCode.BAD_ARRAY)


def _kinds(kinds: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list", dict: "a map"}
    seq = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names.get(k, k.__name__) for k in seq)


def _number(r: _Reader, name: str, value: Any, low: float, high: float) -> float:
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise r.fail(f"{name} must be a finite number in [{low:g}, {high:g}], got {value}")
    return value


def _unpack_header(frames: Sequence[Any], what: str) -> dict[str, Any]:
    if not frames:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"empty {what}: expected a msgpack header frame")
    raw = memoryview(frames[0]).cast("B")
    if raw.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} header is {raw.nbytes} bytes; the limit is {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.exceptions.ExtraData, msgpack.exceptions.StackError) as e:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} header (frame 0) is not valid msgpack: {e}") from e
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} header must be a msgpack map, got {_type_name(header)}")
    return header


def decode_request(frames: Sequence[Any]) -> Request:
    """Strictly decode a request's frames (header first, without the ROUTER identity).

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
    r = _Reader(header, frames, op, strict=True, code=ErrorCode.BAD_REQUEST)
    r.request_id, r.op = request_id, op
    msg = _read_request(cls, r, request_id)
    r.finish()
    return msg


def _read_request(cls: type[Request], r: _Reader, rid: str) -> Request:
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


def _read_stylize(r: _Reader, rid: str) -> Stylize:
    image = r.array("image", IMAGE_DTYPES, (3,))
    if image.shape[2] not in (3, 4):
        raise r.fail(f"image must be (H, W, 3) RGB or (H, W, 4) RGBA, got shape {list(image.shape)}", ErrorCode.BAD_ARRAY)
    colourspace = r.get("colourspace", str, _MISSING, "a colourspace tag")
    if colourspace not in COLOURSPACES:
        raise r.fail(
            f"unknown colourspace {colourspace!r}: this backend takes {', '.join(COLOURSPACES)} (display-referred sRGB "
            "values in [0, 1]); convert scene-linear renders through the view transform first"
        )
    raw_regions = r.get("regions", list, _MISSING, "a list of {styles, alpha}")
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


def _read_region(r: _Reader, i: int, reg: Any) -> RegionSpec:
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
            raise r.fail(f"regions[{i}].styles[{j}].weight must be a number, got {_type_name(weight)}")
        styles.append(StyleRef(s["id"], _number(r, f"regions[{i}].styles[{j}].weight", weight, 0.0, math.inf)))
    if sum(s.weight for s in styles) <= 0:
        raise r.fail(f"regions[{i}] style weights are all zero; give at least one a positive weight")
    alpha = reg.get("alpha", 1.0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise r.fail(f"regions[{i}].alpha must be a number in [0, 1], got {_type_name(alpha)}")
    return RegionSpec(tuple(styles), _number(r, f"regions[{i}].alpha", alpha, 0.0, 1.0))


def _read_passes(r: _Reader, raw: dict[Any, Any]) -> Passes:
    extra = sorted(set(map(str, raw)) - {"combined", "regions"})
    if extra:
        raise r.fail(f"passes has unknown key(s) {extra}; use combined and regions")
    values = {k: raw.get(k, default) for k, default in (("combined", True), ("regions", False))}
    for k, v in values.items():
        if not isinstance(v, bool):
            raise r.fail(f"passes.{k} must be a boolean, got {_type_name(v)}")
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
    r = _Reader(header, frames, "reply", strict=False, code=ErrorCode.BAD_MESSAGE)
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
            lim = Limits(**{k: int(limits[k]) for k in Limits.__dataclass_fields__})
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
