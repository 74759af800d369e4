"""One handler per op. A handler checks a decoded request against the limits and either answers at once
(hello, cancel, release, shutdown) or returns ``Work`` for the worker thread (style.put, stylize, smooth), whose
``run()`` does the pixel conversions and the model call and returns the reply.

Handlers raise BackendError for a request they refuse; the server turns it into an error reply.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from adain_wire.options import MIN_SIDE
from adain_wire.protocol import (
    COLOURSPACES,
    OPS,
    PROTOCOL_VERSION,
    Cancel,
    CancelReply,
    ErrorCode,
    Hello,
    HelloReply,
    Limits,
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
    Stylize,
    StylizeReply,
    Timing,
    style_id,
)
from backend import style_images
from backend.config import Config
from backend.errors import BackendError
from backend.service import EncodeStyleTask, ModelService, SmoothTask, StylizeTask


def server_version() -> str:
    try:
        return f"adain-backend {importlib.metadata.version('adain-blender')}"
    except importlib.metadata.PackageNotFoundError:
        return "adain-backend (not installed)"


@dataclass(frozen=True)
class Peer:
    """Who sent a request: the ROUTER socket's routing id and whether the connection comes from this machine."""

    routing_id: bytes
    loopback: Callable[[], bool]


class Control(Protocol):
    """What handlers may ask of the server loop."""

    def cancel(self, routing_id: bytes, target: str) -> str: ...

    def request_shutdown(self) -> None: ...


@dataclass(frozen=True)
class Work:
    """Model work, run on the worker thread in arrival order; ``run(should_stop)`` returns the reply and stops
    early (a ``cancelled`` error) once ``should_stop()`` is true."""

    run: Callable[[Callable[[], bool]], Reply]


class Handlers:
    def __init__(self, config: Config, service: ModelService, control: Control, instance: str) -> None:
        self.config = config
        self.service = service
        self.control = control
        self.instance = instance
        self.version = server_version()
        self.limits = Limits(
            max_pixels=config.max_pixels,
            max_message_bytes=config.frame_limit,
            max_regions=config.max_regions,
            max_styles_per_region=config.max_styles_per_region,
            max_queue=config.max_queue,
            max_inflight=config.max_inflight,
            style_cache=config.cache_size,
        )

    def handle(self, req: Request, peer: Peer) -> Reply | Work:
        if isinstance(req, Hello):
            return self.hello(req)
        if isinstance(req, StylePut):
            return self.style_put(req)
        if isinstance(req, Stylize):
            return self.stylize(req)
        if isinstance(req, Smooth):
            return self.smooth(req)
        if isinstance(req, Cancel):
            return self.cancel(req, peer)
        if isinstance(req, Release):
            return self.release(req)
        return self.shutdown(req, peer)

    # ------------------------------------------------------------------------------------ ops
    def hello(self, req: Hello) -> HelloReply:
        d = self.service.describe()
        return HelloReply(req.id, PROTOCOL_VERSION, self.version, self.instance, d.device, d.precision, d.model,
                          self.limits, COLOURSPACES, OPS)  # fmt: skip

    def style_put(self, req: StylePut) -> Work:
        if req.image is not None:
            h, w = req.image.shape[:2]
            if h == 0 or w == 0:
                raise BackendError(ErrorCode.BAD_ARRAY, f"style.put: the image is {w}x{h}; send a non-empty image")
            self._check_pixels("style image", h, w)
        max_pixels = self.config.max_pixels

        def run(should_stop: Callable[[], bool]) -> Reply:  # one encode of a style: not worth stopping
            sid = style_id(req)
            known = self.service.lookup_style(sid)
            if known is not None:
                return StylePutReply(req.id, sid, known.width, known.height, cached=True)
            if req.encoded is not None:
                rgb = style_images.decode_image(req.encoded, max_pixels, req.size)
            else:
                assert req.image is not None
                rgb = style_images.flatten_alpha(style_images.to_unit_float(req.image, "style image"))
                rgb = style_images.resize_shorter(rgb, req.size, max_pixels)
            result = self.service.predict(EncodeStyleTask(sid, rgb))
            return StylePutReply(req.id, sid, result.width, result.height, result.cached)

        return Work(run)

    def stylize(self, req: Stylize) -> Work:
        self._check_frame(req.OP, req.image)
        if len(req.regions) > self.config.max_regions:
            raise BackendError(ErrorCode.TOO_LARGE, f"stylize: {len(req.regions)} regions; this backend takes at most "
                               f"{self.config.max_regions}: merge regions that share a style")  # fmt: skip
        for i, r in enumerate(req.regions):
            if len(r.styles) > self.config.max_styles_per_region:
                raise BackendError(ErrorCode.TOO_LARGE, f"stylize: regions[{i}] mixes {len(r.styles)} styles; at most "
                                   f"{self.config.max_styles_per_region} per region")  # fmt: skip
        needed = len({s.id for r in req.regions for s in r.styles})
        if needed > self.config.cache_size:
            raise BackendError(ErrorCode.TOO_LARGE, f"stylize: uses {needed} styles but this backend caches only "
                               f"{self.config.cache_size} (--cache-size): start it with a larger cache")  # fmt: skip
        received = time.monotonic()

        def run(should_stop: Callable[[], bool]) -> Reply:
            started = time.monotonic()
            dtype = req.output_dtype or req.image.dtype.name
            task = StylizeTask(req.image, req.regions, _model_masks(req.masks), req.preserve_color, req.passes, req.tile,
                               dtype, should_stop)  # fmt: skip
            out = self.service.predict(task)
            done = time.monotonic()
            timing = Timing(round((started - received) * 1000, 3), round((done - started) * 1000, 3))
            return StylizeReply(req.id, out.combined, tuple(out.passes), req.colourspace, timing)

        return Work(run)

    def smooth(self, req: Smooth) -> Work:
        self._check_frame(req.OP, req.stylized)
        received = time.monotonic()

        def run(should_stop: Callable[[], bool]) -> Reply:  # one step of a few milliseconds on a GPU: not worth stopping
            started = time.monotonic()
            task = SmoothTask(req.stylized, req.content, req.history, req.flow, req.strength,
                              req.output_dtype or req.stylized.dtype.name)  # fmt: skip
            image = self.service.predict(task)
            timing = Timing(round((started - received) * 1000, 3), round((time.monotonic() - started) * 1000, 3))
            return SmoothReply(req.id, image, timing)

        return Work(run)

    def cancel(self, req: Cancel, peer: Peer) -> CancelReply:
        return CancelReply(req.id, req.target, self.control.cancel(peer.routing_id, req.target))

    def release(self, req: Release) -> ReleaseReply:
        r = self.service.release(req.styles)
        return ReleaseReply(req.id, r.styles_dropped, r.device_allocated, r.device_reserved)

    def shutdown(self, req: Shutdown, peer: Peer) -> ShutdownReply:
        if not peer.loopback():
            raise BackendError(ErrorCode.FORBIDDEN, "shutdown is only accepted from this machine (a loopback connection)")
        self.control.request_shutdown()
        return ShutdownReply(req.id)

    def _check_frame(self, op: str, frame: np.ndarray) -> None:
        """A frame at least MIN_SIDE on each side and within max_pixels."""
        h, w = frame.shape[:2]
        if min(h, w) < MIN_SIDE:
            raise BackendError(ErrorCode.BAD_ARRAY, f"{op}: the frame is {w}x{h}; frames must be at least {MIN_SIDE}x{MIN_SIDE}")
        self._check_pixels("frame", h, w)

    def _check_pixels(self, what: str, h: int, w: int) -> None:
        if h * w > self.config.max_pixels:
            raise BackendError(ErrorCode.TOO_LARGE, f"the {what} is {w}x{h} = {w * h} pixels; this backend takes at most "
                               f"{self.config.max_pixels} (--max-pixels): send it smaller or raise the limit")  # fmt: skip


def _model_masks(masks: np.ndarray | None) -> np.ndarray | None:
    """Label maps as sent (uint8 or uint16; widened on the model's device); soft masks -> float32, checked finite
    and >= 0."""
    if masks is None:
        return None
    if masks.ndim == 2:
        return masks
    soft = masks.astype(np.float32)
    if not np.isfinite(soft).all() or (soft < 0).any():
        raise BackendError(ErrorCode.BAD_REQUEST, "soft masks must be finite non-negative weights")
    return soft
