"""The messages of the wire protocol, version 1 (``docs/protocol.md``): typed request and reply classes, error codes,
the limits and dtypes the protocol allows, and the style id. No codec here: ``codec`` turns them into frames and back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Final

import numpy as np

PROTOCOL_VERSION: Final = 1
COLOURSPACES: Final = ("srgb",)  # display-referred sRGB-encoded values in [0, 1]: what the model was trained on
IMAGE_DTYPES: Final = ("uint8", "uint16", "float16", "float32")
LABEL_DTYPES: Final = ("uint8", "uint16", "int32")
SOFT_MASK_DTYPES: Final = ("float16", "float32")
SMOOTH_DTYPES: Final = ("float16", "float32")  # the arrays of a smooth request

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
    max_inflight: int = 0  # model requests one connection may have queued or running; 0: not stated (older backends)


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


@dataclass(frozen=True, eq=False)
class Smooth:
    """One step of temporal smoothing on the backend's device (``docs/protocol.md`` §4 ``smooth``): ``stylized``
    (H, W, C) blended with ``history`` (H, W, C + 3 [+ 2]: the previous smoothed frame, the previous render's display
    RGB [, its motion toward the next frame]) moved along ``flow`` (H, W, 2: dx, drow to where each pixel was in the
    previous frame), with weight ``strength`` where the moved render matches ``content`` (H, W, 3), the current one.
    ``output_dtype`` None: stylized's.
    """

    OP: ClassVar[str] = "smooth"
    id: str
    stylized: np.ndarray
    content: np.ndarray
    history: np.ndarray
    flow: np.ndarray
    strength: float
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


Request = Hello | StylePut | Stylize | Smooth | Cancel | Release | Shutdown
REQUEST_TYPES: Final[dict[str, type[Request]]] = {c.OP: c for c in (Hello, StylePut, Stylize, Smooth, Cancel, Release, Shutdown)}
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


@dataclass(frozen=True, eq=False)
class SmoothReply:
    """``image`` (H, W, C): the smoothed frame in ``output_dtype``."""

    OP: ClassVar[str] = "smooth"
    id: str
    image: np.ndarray
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


Reply = ErrorReply | HelloReply | StylePutReply | StylizeReply | SmoothReply | CancelReply | ReleaseReply | ShutdownReply
CANCEL_STATES: Final = ("queued", "running", "unknown")


# ------------------------------------------------------------------------------------ style ids
def style_id(put: StylePut) -> str:
    """The content hash that names a style: sha256 over the payload and what shapes its statistics."""
    h = hashlib.sha256(f"adain-style-v1;size={put.size};".encode())
    if put.encoded is not None:
        h.update(b"encoded;")
        h.update(put.encoded)
    elif put.image is not None:
        arr = wire_array(put.image)
        h.update(f"array;{arr.dtype.name};{list(arr.shape)};{put.colourspace};".encode())
        h.update(arr.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def wire_array(arr: np.ndarray) -> np.ndarray:
    """Little-endian, C-contiguous (copies only when needed)."""
    a = np.asarray(arr)
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
