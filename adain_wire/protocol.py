"""The wire protocol between the add-on's client and the stylization backend, version 1: import it from here.

``docs/protocol.md`` is the authoritative description; these modules implement it for both sides, and this one
gathers their public names:

- ``messages``: the typed request and reply classes, ``ErrorCode``, ``ProtocolError``, the dtypes the protocol
  allows, ``style_id`` (the content hash that names a style);
- ``codec``: ``encode_request`` / ``encode_reply`` to a list of ZeroMQ frames, strict ``decode_request`` (the
  backend rejects anything the spec does not allow, with a ``ProtocolError`` carrying an error code) and lenient
  ``decode_reply`` (unknown reply fields are ignored, so a newer backend can add some);
- ``schema``: every message's fields, declared once (key, type, default, array dtypes and ranks, checks), over
  which the codec runs; ``fields`` the kinds of field, ``reader`` the checked header access the decoders use.

Imports neither bpy nor torch (numpy and msgpack only): the add-on and the backend both import it as
``from adain_wire.protocol import ...``.
"""

from __future__ import annotations

from .codec import decode_reply, decode_request, encode_reply, encode_request
from .messages import (
    CANCEL_STATES,
    COLOURSPACES,
    IMAGE_DTYPES,
    LABEL_DTYPES,
    OPS,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    SMOOTH_DTYPES,
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
    Smooth,
    SmoothReply,
    StylePut,
    StylePutReply,
    StyleRef,
    Stylize,
    StylizeReply,
    Timing,
    style_id,
)
from .options import COLOR_MODES, MAX_HEADER_BYTES, MAX_ID_LENGTH, MIN_TILE

__all__ = [
    "CANCEL_STATES",
    "COLOR_MODES",
    "COLOURSPACES",
    "IMAGE_DTYPES",
    "LABEL_DTYPES",
    "MAX_HEADER_BYTES",
    "MAX_ID_LENGTH",
    "MIN_TILE",
    "OPS",
    "PROTOCOL_VERSION",
    "REQUEST_TYPES",
    "SMOOTH_DTYPES",
    "SOFT_MASK_DTYPES",
    "Cancel",
    "CancelReply",
    "ErrorCode",
    "ErrorReply",
    "Frames",
    "Hello",
    "HelloReply",
    "Limits",
    "ModelInfo",
    "Passes",
    "ProtocolError",
    "RegionSpec",
    "Release",
    "ReleaseReply",
    "Reply",
    "Request",
    "Shutdown",
    "ShutdownReply",
    "Smooth",
    "SmoothReply",
    "StylePut",
    "StylePutReply",
    "StyleRef",
    "Stylize",
    "StylizeReply",
    "Timing",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "style_id",
]
