"""What a frame asks of the backend, and how the answer is put together (no bpy).

The Blender side gathers a ``FrameJob`` (display-referred pixels, one soft mask per style slot, the slots'
styles and alphas as evaluated at this frame) and ``stylize_frame`` turns it into a ``FrameResult``:

- one ``stylize`` request per colour-preservation mode in use (usually one): the content is encoded once and
  decoded once whatever the number of slots, each slot's statistics applied under its own mask;
- pixels no slot covers keep the render (as do partly covered, anti-aliased edges, in proportion);
- per-slot passes (each slot's styles over the whole frame) when asked for.

Frames and masks travel as float16 by default (half the bytes of float32 both ways, which matters with a backend
on another machine; display values in [0, 1] keep an error under 1/4000, far below one 8-bit step); a job with
``wire="float32"`` sends them exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from adain_wire.client import BROKEN, CLOSED, Client, ClientError, Pending
from adain_wire.manager import BackendManager
from adain_wire.options import COLOR_MODES, STYLE_SIZES
from adain_wire.protocol import Passes, RegionSpec, StyleRef, StylizeReply

WIRE_DTYPES = ("float16", "float32")
RECONNECTS = 2  # how many times one frame is sent again on a new connection when the old one died under it
log = logging.getLogger("adain.frames")
R = TypeVar("R")


class FrameError(Exception):
    """A frame could not be stylized; the message says why and what to do."""


class FrameCancelledError(FrameError):
    pass


class ConnectionLostError(FrameError):
    """The connection died under the frame (the client's I/O thread, or the local backend process): not the
    backend's verdict on the frame, so it is sent again on a new connection (``stylize_reconnecting``)."""


def _frame_error(e: ClientError, what: str) -> FrameError:
    if e.code in (BROKEN, CLOSED):
        return ConnectionLostError(f"the connection to the backend was lost: {e.message}")
    return FrameError(f"{what}: {e.message}")


@dataclass(frozen=True)
class StyleSource:
    """A style image: encoded file bytes (``data``) or an (H, W, 3|4) sRGB array; ``key`` names it for caching."""

    key: str
    data: bytes | None = None
    pixels: np.ndarray | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SlotJob:
    """One style slot at this frame: its name, styles with weights, alpha and colour mode."""

    name: str
    styles: tuple[tuple[StyleSource, float], ...]
    alpha: float = 1.0
    preserve_color: str = "none"
    style_size: int | None = None  # this slot's style scale (shorter side in pixels); None: the frame's

    def __post_init__(self) -> None:
        if not self.styles:
            raise FrameError(f"style slot {self.name!r} has no style: add a style image to it or disable it")
        if not 0.0 <= self.alpha <= 1.0:
            raise FrameError(f"style slot {self.name!r}: alpha must be within 0..1, got {self.alpha:g}")
        if self.preserve_color not in COLOR_MODES:
            raise FrameError(f"style slot {self.name!r}: colour mode {self.preserve_color!r} is not one of {COLOR_MODES}")
        low, high = STYLE_SIZES
        if self.style_size is not None and not low <= self.style_size <= high:
            raise FrameError(f"style slot {self.name!r}: style size must be {low}..{high} pixels, got {self.style_size}")


@dataclass(frozen=True, eq=False)
class FrameJob:
    """``image``: (H, W, 3|4) float32 display-referred sRGB in [0, 1], rows top to bottom.
    ``masks``: (S, H, W) float32 soft masks, one per slot (None with a single slot over everything).
    ``wire``: the dtype frames and masks travel in ("float16" or "float32")."""

    image: np.ndarray
    slots: tuple[SlotJob, ...]
    masks: np.ndarray | None = None
    slot_passes: bool = False
    tile: int | None = None
    wire: str = "float16"

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] not in (3, 4) or self.image.dtype != np.float32:
            raise FrameError(f"frame must be (H, W, 3|4) float32, got {self.image.shape} {self.image.dtype}")
        if self.wire not in WIRE_DTYPES:
            raise FrameError(f"wire dtype {self.wire!r}: use one of {', '.join(WIRE_DTYPES)}")
        if not self.slots:
            raise FrameError("no style slot is enabled: add one in the AdaIN panel (Render properties)")
        h, w = self.image.shape[:2]
        if self.masks is None and len(self.slots) != 1:
            raise FrameError(f"{len(self.slots)} style slots need masks")
        if self.masks is not None:
            if self.masks.shape != (len(self.slots), h, w):
                raise FrameError(f"masks are {self.masks.shape}, expected ({len(self.slots)}, {h}, {w})")
            if self.masks.dtype != np.float32:
                object.__setattr__(self, "masks", np.ascontiguousarray(self.masks, np.float32))


@dataclass(frozen=True, eq=False)
class FrameResult:
    """``combined``: (H, W, 3) float32 display-referred; ``slot_passes``: slot name -> (H, W, 3)."""

    combined: np.ndarray
    slot_passes: dict[str, np.ndarray]
    compute_ms: float


def rendered_only(masks: np.ndarray | None, alpha: np.ndarray, slots: int) -> np.ndarray | None:
    """Slot masks (S, H, W) limited to the pixels something was rendered in (``alpha`` (H, W) > 0).

    With Film > Transparent the empty background reaches the network as black: left in the masks it would count
    in each slot's content statistics and pull the objects' stylization toward "dark". Partly covered edge pixels
    stay fully in (their colour is the object's); they are premultiplied by their alpha afterwards. ``None`` (one
    slot over everything) becomes a mask only when some pixel is empty.
    """
    empty = alpha <= 0.0
    if not empty.any():
        return masks
    seen = (~empty).astype(np.float32)
    if masks is None:
        return np.broadcast_to(seen, (slots, *seen.shape)).copy()
    return (masks * seen).astype(np.float32)


class StyleIds:
    """Style ids known to one client, so each style image is sent once per backend connection."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}

    def get(self, client: Client, source: StyleSource, size: int) -> str:
        key = f"{source.key}@{size}"
        sid = self._ids.get(key)
        if sid is None:
            if source.data is not None:
                sid = client.put_style(source.data, size=size)
            elif source.pixels is not None:
                sid = client.put_style(np.ascontiguousarray(source.pixels, np.float32), size=size)
            else:
                raise FrameError(f"style {source.key!r} has neither a file nor pixels")
            self._ids[key] = sid
        return sid

    def clear(self) -> None:
        self._ids.clear()


def style_source_from_file(path: str | Path) -> StyleSource:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise FrameError(f"cannot read style image {p}: {e.strerror or e}") from e
    st = p.stat()
    return StyleSource(key=f"file:{p.resolve()}:{st.st_size}:{st.st_mtime_ns}", data=data)


def wait_reply(
    pending: Pending[R],
    cancelled: Callable[[], bool],
    lost: Callable[[], str | None],
    what: str = "the backend failed on this frame",
) -> R:
    """The reply, waited for in 0.1 s steps that check ``cancelled()`` (FrameCancelledError) and ``lost()`` (a reason:
    ConnectionLostError); a failed request raises FrameError starting with ``what``."""
    while True:
        if cancelled():
            pending.cancel()
            raise FrameCancelledError("stylization cancelled")
        if (why := lost()) is not None:
            pending.cancel()
            raise ConnectionLostError(why)
        if not pending.wait(0.1):  # (asking result(0.1) and then done() raced with a reply arriving in between)
            continue
        try:
            return pending.result()
        except ClientError as e:
            raise _frame_error(e, what) from e


def stylize_reconnecting(
    backend: BackendManager,
    ids_for: Callable[[Client], StyleIds],
    job: FrameJob,
    *,
    style_size: int = 512,
    cancelled: Callable[[], bool] = lambda: False,
) -> FrameResult:
    """``stylize_frame`` on ``backend``'s client; when the connection or the local backend dies under the frame,
    the frame is sent again (up to RECONNECTS times) on a new connection, which ``backend.client()`` makes,
    restarting a local backend that exited. Raises BackendUnavailableError when it cannot be brought back."""
    for attempt in range(RECONNECTS + 1):
        client = backend.client()

        def lost(c: Client = client) -> str | None:
            return backend.lost(c)

        try:
            return stylize_frame(client, ids_for(client), job, style_size=style_size, cancelled=cancelled, lost=lost)
        except ConnectionLostError as e:
            if attempt == RECONNECTS:
                raise
            log.warning("%s: sending the frame again on a new connection", e)
    raise AssertionError("unreachable")


def stylize_frame(
    client: Client,
    ids: StyleIds,
    job: FrameJob,
    *,
    style_size: int = 512,
    cancelled: Callable[[], bool] = lambda: False,
    lost: Callable[[], str | None] = lambda: None,
) -> FrameResult:
    """Send the frame (one request per colour mode in use) and compose the answer; see the module docstring."""
    t0 = time.perf_counter()
    h, w = job.image.shape[:2]
    rgb = np.ascontiguousarray(job.image[..., :3])
    live = [i for i, s in enumerate(job.slots) if s.alpha > 0.0]
    if len(live) < len(job.slots):  # alpha 0 is the render itself (the decoder alone would only approximate it)
        if not live:
            return FrameResult(rgb.copy(), {s.name: rgb.copy() for s in job.slots} if job.slot_passes else {}, 0.0)
        masks = job.masks if job.masks is None else np.ascontiguousarray(job.masks[live])
        sub = FrameJob(job.image, tuple(job.slots[i] for i in live), masks, job.slot_passes, job.tile, job.wire)
        if masks is None:  # one live slot of several without masks cannot happen (masks are required then)
            raise FrameError("internal: slots without masks")
        out = stylize_frame(client, ids, sub, style_size=style_size, cancelled=cancelled, lost=lost)
        if job.slot_passes:
            for s in job.slots:
                out.slot_passes.setdefault(s.name, rgb.copy())
        return out
    try:
        regions = tuple(
            RegionSpec(
                tuple(StyleRef(ids.get(client, src, slot.style_size or style_size), wt) for src, wt in slot.styles), slot.alpha
            )
            for slot in job.slots
        )
    except ClientError as e:
        raise _frame_error(e, "the backend could not take a style image") from e
    modes = sorted({s.preserve_color for s in job.slots})
    combined = np.zeros((h, w, 3), np.float32)
    passes: dict[str, np.ndarray] = {}
    # overlapping slots (an object slot and a material slot on the same surface) share the pixel: weights are
    # normalised where they add up past 1, across colour modes too
    total = np.ones((h, w), np.float32) if job.masks is None else np.maximum(job.masks.sum(axis=0), 1.0)
    covered = np.zeros((h, w), np.float32)
    wire_rgb = rgb if job.wire == "float32" else rgb.astype(job.wire)
    wire_masks = None if job.masks is None else job.masks.astype(job.wire, copy=False)
    for mode in modes:
        try:
            pending = client.submit(
                wire_rgb,
                regions if job.masks is not None else regions[0],
                masks=wire_masks,
                preserve_color=mode,
                passes=Passes(combined=True, regions=job.slot_passes),
                tile=job.tile,
                output_dtype=job.wire,
            )
        except ClientError as e:
            raise _frame_error(e, "the backend cannot take this frame") from e
        reply: StylizeReply = wait_reply(pending, cancelled, lost)
        if reply.combined is None:
            raise FrameError("the backend sent no combined frame")
        stylized = np.asarray(reply.combined, np.float32)[..., :3]
        members = [i for i, s in enumerate(job.slots) if s.preserve_color == mode]
        if job.masks is None:
            weight = np.ones((h, w), np.float32)
        else:
            weight = job.masks[members].sum(axis=0) / total
        combined += stylized * weight[..., None]
        covered += weight
        for i in members if job.slot_passes else ():
            if i < len(reply.passes):
                passes[job.slots[i].name] = np.asarray(reply.passes[i], np.float32)[..., :3]
    rest = np.clip(1.0 - covered, 0.0, 1.0)
    combined += rgb * rest[..., None]
    return FrameResult(combined, passes, (time.perf_counter() - t0) * 1000.0)
