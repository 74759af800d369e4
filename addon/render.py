"""Stylization inside Cycles renders: F12, Ctrl-F12 and ``blender -b -a`` alike, no timers (bpy).

The add-on wraps three methods of Cycles' RenderEngine class while it is enabled:

- ``update_render_passes`` also registers the pass "AdaIN" (and "AdaIN <slot>" per slot when asked), so the
  Render Layers node has the sockets and multilayer EXRs carry them;
- ``render`` remembers the evaluated scene (slot alphas as keyframed at this frame);
- ``render_frame_finish``, after Cycles has written its passes, reads Combined and the Cryptomatte passes,
  sends the frame to the backend and writes the result into the "AdaIN" pass(es) — before the compositor
  runs, so the "AdaIN Stylize" node group and any node after it see the stylized frame.

When stylization fails (backend down, bad style), the "AdaIN" pass gets the plain render and the error is
reported as an error of the render: Blender shows it, keeps the plain render in the render window, writes
no file for that frame and stops an animation there (``bpy.ops.render.render`` raises it in scripts). So
re-running the animation with Output > Overwrite off renders exactly the frames that are missing.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import bpy
import numpy as np

from adain_wire.manager import BackendError

from . import colour, cryptomatte, temporal
from .frames import (
    CancelledError,
    FrameError,
    FrameJob,
    FrameResult,
    SlotJob,
    StyleIds,
    StyleSource,
    rendered_only,
    style_source_from_file,
    stylize_frame,
)

log = logging.getLogger("adain.render")
PASS = "AdaIN"


@dataclass
class RenderStatus:
    """What the last frames did, for the panel and for tests."""

    frame: int | None = None
    ok: bool = True
    message: str = ""
    failed_frames: set[int] = field(default_factory=set)
    stylized_frames: list[int] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class RenderedLayer:
    """One view layer of the last render AdaIN saw, kept so that "Restyle Last Render" can stylize it again
    without rendering. Arrays are in Blender's row order (bottom row first)."""

    scene: str
    frame: int
    layer: str
    view: colour.View
    combined: np.ndarray  # (H, W, 4) scene-linear, as rendered
    display: np.ndarray  # (H, W, 4) display-referred, what the network is given
    crypto: dict[str, list[np.ndarray]]  # "Object" / "Material" -> Cryptomatte passes (ranks that cover nothing dropped)

    @property
    def size(self) -> tuple[int, int]:
        return self.combined.shape[1], self.combined.shape[0]


STATUS = RenderStatus()
SMOOTHER = temporal.Smoother()  # the previous frame of an animation render, for temporal smoothing
LAST_RENDER: list[RenderedLayer] = []  # the layers of the last frame rendered with AdaIN on (replaced every frame)
_ids = StyleIds()
_ids_client: object | None = None
_client_lock = threading.Lock()  # one user of the backend connection at a time: the render thread or a restyle
_originals: dict[str, Callable[..., Any]] = {}


def ids_for(client: object) -> StyleIds:
    """The style ids known to ``client`` (forgotten when the connection is a new one). Hold ``client_lock``."""
    global _ids_client
    if client is not _ids_client:
        _ids.clear()
        _ids_client = client
    return _ids


@contextmanager
def client_lock(cancelled: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Hold the backend connection (ZeroMQ sockets are not thread-safe); waiting for it can be cancelled."""
    while not _client_lock.acquire(timeout=0.1):
        if cancelled():
            raise CancelledError("stylization cancelled while another request used the backend")
    try:
        yield
    finally:
        _client_lock.release()


def slot_pass_name(slot_name: str) -> str:
    return f"{PASS} {slot_name}"


# ------------------------------------------------------------------------------------ install
def install() -> None:
    """Wrap Cycles' engine methods (idempotent). Raises RuntimeError if Cycles is not available."""
    try:
        import cycles
    except ImportError as e:
        raise RuntimeError("the Cycles add-on is not available: AdaIN stylizes Cycles renders") from e
    cls = cycles.CyclesRender
    if getattr(cls, "_adain_wrapped", False):
        return
    for name in ("render", "render_frame_finish", "update_render_passes"):
        _originals[name] = getattr(cls, name)
    cls.render = _render
    cls.render_frame_finish = _render_frame_finish
    cls.update_render_passes = _update_render_passes
    cls._adain_wrapped = True


def uninstall() -> None:
    try:
        import cycles
    except ImportError:
        return
    cls = cycles.CyclesRender
    if not getattr(cls, "_adain_wrapped", False):
        return
    for name, fn in _originals.items():
        setattr(cls, name, fn)
    cls._adain_wrapped = False
    _originals.clear()


# --------------------------------------------------------------------------------- the wrappers
def _render(self: Any, depsgraph: bpy.types.Depsgraph) -> None:
    # The evaluated scene (keyframed alphas at this frame) is gone by render_frame_finish: read it now.
    self._adain_snapshot = None
    if not self.is_preview:
        scene = depsgraph.scene_eval
        try:
            self._adain_snapshot = snapshot(scene) if hasattr(scene, "adain") else None
        except FrameError as e:
            self._adain_snapshot = Snapshot(scene.frame_current, True, colour.View.of(scene), error=str(e), scene=scene.name)
    _originals["render"](self, depsgraph)


def _update_render_passes(self: Any, scene: bpy.types.Scene | None = None, renderlayer: Any = None) -> None:
    _originals["update_render_passes"](self, scene, renderlayer)
    if scene is None or not hasattr(scene, "adain"):
        return
    self.register_pass(scene, renderlayer, PASS, 4, "RGBA", "COLOR")
    if scene.adain.slot_passes:
        for slot in scene.adain.slots:
            if slot.enabled:
                self.register_pass(scene, renderlayer, slot_pass_name(slot.name), 4, "RGBA", "COLOR")


def _render_frame_finish(self: Any) -> None:
    _originals["render_frame_finish"](self)
    snap = getattr(self, "_adain_snapshot", None)
    if snap is None or self.is_preview:
        return
    try:
        process_result(self, snap)
    except Exception as e:
        log.exception("AdaIN failed")
        _fail(self, snap.frame, f"AdaIN: internal error ({type(e).__name__}: {e})")


# ------------------------------------------------------------------------------ frame handling
def _pass_array(layer: Any, name: str, w: int, h: int) -> np.ndarray | None:
    p = layer.passes.find_by_name(name, "")
    if p is None:
        return None
    arr = np.empty(w * h * p.channels, np.float32)
    p.rect.foreach_get(arr)
    return arr.reshape(h, w, p.channels)


def _crypto(layer: Any, kind: str, w: int, h: int) -> list[np.ndarray]:
    out = []
    for i in range(16):
        a = _pass_array(layer, f"Crypto{kind}{i:02d}", w, h)
        if a is None:
            break
        out.append(a)
    return out


def _target_names(slot: Any) -> set[str]:
    names: set[str] = set()
    for t in slot.targets:
        if slot.target == "MATERIALS" and t.material is not None:
            names.add(t.material.name)
        elif slot.target == "OBJECTS":
            if t.object is not None:
                names.add(t.object.name)
            if t.collection is not None:
                names.update(o.name for o in t.collection.all_objects)
    return names


def _style_source(img: bpy.types.Image) -> StyleSource:
    if img.packed_file is not None:
        data = bytes(img.packed_file.data)
        return StyleSource(key=f"packed:{img.name}:{len(data)}:{hash(data)}", data=data)
    path = bpy.path.abspath(img.filepath) if img.filepath else ""
    if path and os.path.isfile(path):
        return style_source_from_file(path)
    w, h = img.size
    if w * h == 0:
        raise FrameError(f"style image {img.name!r} has no pixels (missing file {img.filepath!r}?)")
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    px = px.reshape(h, w, 4)[::-1]
    if img.is_float:  # float buffers are scene-linear: encode to sRGB like a display would
        rgb = np.clip(px[..., :3], 0.0, 1.0)
        px = px.copy()
        px[..., :3] = np.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * rgb ** (1 / 2.4) - 0.055)
    return StyleSource(key=f"pixels:{img.name}:{w}x{h}:{hash(px.tobytes())}", pixels=np.ascontiguousarray(px))


@dataclass(frozen=True)
class SlotSnapshot:
    job: SlotJob
    target: str  # OBJECTS, MATERIALS or OTHER
    names: frozenset[str]


@dataclass(frozen=True)
class Snapshot:
    """Everything a frame needs from the scene, read while the evaluated scene exists."""

    frame: int
    enabled: bool
    view: colour.View
    slots: tuple[SlotSnapshot, ...] = ()
    slot_passes: bool = False
    style_size: int = 512
    tile: int | None = None
    error: str = ""
    scene: str = ""
    temporal: float = 0.0
    motion_blur: bool = False
    warnings: tuple[str, ...] = ()  # why the output would not show the stylized frame (compositor settings)


def snapshot(scene: bpy.types.Scene) -> Snapshot:
    st = scene.adain
    view = colour.View.of(scene)
    if not st.enabled:
        return Snapshot(scene.frame_current, False, view, scene=scene.name)
    slots = []
    for slot in st.slots:
        if not slot.enabled:
            continue
        styles = tuple((_style_source(s.image), float(s.weight)) for s in slot.styles if s.image is not None and s.weight > 0)
        if not styles:
            raise FrameError(f"style slot {slot.name!r} has no style image with a weight above 0: add one or disable it")
        size = int(slot.style_size)
        if 0 < size < 64:
            raise FrameError(f"style slot {slot.name!r}: style size {size} is too small: use 0 (the scene's) or 64 and up")
        job = SlotJob(slot.name, styles, float(np.clip(slot.alpha * st.alpha, 0.0, 1.0)), slot.preserve_color, size or None)
        names = frozenset(_target_names(slot))
        if slot.target != "OTHER" and not names:
            raise FrameError(f"style slot {slot.name!r} lists no {slot.target.lower()}: add some or disable the slot")
        slots.append(SlotSnapshot(job, slot.target, names))
    if not slots:
        raise FrameError("AdaIN is on but no style slot is enabled: add a slot in Render properties > AdaIN Stylize")
    return Snapshot(
        scene.frame_current, True, view, tuple(slots), bool(st.slot_passes), int(st.style_size), st.tile or None,
        scene=scene.name, temporal=float(st.temporal), motion_blur=bool(scene.render.use_motion_blur),
        warnings=tuple(_output_warnings(scene)),
    )  # fmt: skip


def _output_warnings(scene: bpy.types.Scene) -> list[str]:
    from . import compositor  # (compositor imports this module)

    return compositor.output_warnings(getattr(scene, "original", scene))


class CryptoPasses:
    """A render layer's Cryptomatte passes of each kind, read on first use and kept in ``read``."""

    def __init__(self, layer: Any, w: int, h: int) -> None:
        self._layer, self._w, self._h = layer, w, h
        self.read: dict[str, list[np.ndarray]] = {}

    def __call__(self, kind: str) -> list[np.ndarray]:
        if kind not in self.read:
            self.read[kind] = _crypto(self._layer, kind, self._w, self._h)
        return self.read[kind]


def _covering(passes: list[np.ndarray]) -> list[np.ndarray]:
    """The passes up to the last one that covers anything (ranks are sorted by coverage; one is always kept)."""
    n = 1
    for i, p in enumerate(passes):
        if np.any(p[..., 1]) or np.any(p[..., 3]):
            n = i + 1
    return passes[:n]


def build_job(snap: Snapshot, crypto_passes: Callable[[str], list[np.ndarray]], display: np.ndarray, w: int, h: int) -> FrameJob:
    """The frame's request: slots and their soft masks from Cryptomatte (``crypto_passes("Object")`` or
    ``("Material")`` gives a kind's passes), rows top to bottom."""
    crypto: dict[str, list[np.ndarray]] = {}
    masks: list[np.ndarray | None] = []
    others = 0
    for slot in snap.slots:
        if slot.target == "OTHER":
            others += 1
            masks.append(None)
            continue
        kind = "Material" if slot.target == "MATERIALS" else "Object"
        if kind not in crypto:
            crypto[kind] = crypto_passes(kind)
            if not crypto[kind]:
                raise FrameError(
                    f"slot {slot.job.name!r} targets {slot.target.lower()} but the view layer has no Cryptomatte {kind} "
                    f"pass: press 'Set up AdaIN' in the AdaIN panel (or enable View Layer > Passes > Cryptomatte > {kind})"
                )
        masks.append(cryptomatte.coverage(crypto[kind], slot.names)[::-1])
    mask_arr = None
    if len(snap.slots) > 1 or others == 0:
        covered = np.zeros((h, w), np.float32)
        for m in masks:
            if m is not None:
                covered += m
        rest = np.clip(1.0 - covered, 0.0, 1.0) / max(others, 1)
        mask_arr = np.stack([rest if m is None else m for m in masks]).astype(np.float32)
    image = np.ascontiguousarray(display[::-1, :, :3])
    mask_arr = rendered_only(mask_arr, display[::-1, :, 3], len(snap.slots))
    return FrameJob(image, tuple(s.job for s in snap.slots), mask_arr, snap.slot_passes, snap.tile)


def _write_passes(engine: Any, layer_name: str, w: int, h: int, passes: dict[str, np.ndarray]) -> None:
    """Write straight into the render result's passes (begin_result/end_result would merge a whole new result,
    zeroing every other pass: Combined, Cryptomatte, depth...)."""
    result = engine.get_result()
    layer = next((lay for lay in result.layers if lay.name == layer_name), None)
    if layer is None:
        raise FrameError(f"internal: render layer {layer_name!r} disappeared")
    for name, arr in passes.items():
        p = layer.passes.find_by_name(name, "")
        if p is not None:
            p.rect.foreach_set(np.ascontiguousarray(arr, np.float32).ravel())
    engine.update_result(result)


def esc_pressed(engine: Any) -> bool:
    """Blender's break flag (Esc in the render window), polled while the backend works."""
    return bool(engine.test_break())


def process_result(engine: Any, snap: Snapshot) -> None:
    result = engine.get_result()
    w, h = result.resolution_x, result.resolution_y
    kept: list[RenderedLayer] = []
    try:
        for layer in result.layers:
            combined = _pass_array(layer, "Combined", w, h)
            if combined is None or layer.passes.find_by_name(PASS, "") is None:
                continue
            plain = {p.name: combined for p in layer.passes if p.name == PASS or p.name.startswith(PASS + " ")}
            if not snap.enabled:
                _write_passes(engine, layer.name, w, h, plain)
                continue
            if not _stylize_layer(engine, snap, layer, combined, plain, kept):
                return
    finally:
        if kept:  # what Restyle Last Render works from (its Cryptomatte trimmed to the ranks that cover anything)
            for rl in kept:
                for kind, passes in rl.crypto.items():
                    rl.crypto[kind] = _covering(passes)
            LAST_RENDER[:] = kept


def _stylize_layer(
    engine: Any, snap: Snapshot, layer: Any, combined: np.ndarray, plain: dict[str, np.ndarray], kept: list[RenderedLayer]
) -> bool:
    """Stylize one view layer into its AdaIN pass(es); False (after reporting) when the frame failed."""
    from . import link

    frame = snap.frame
    w, h = combined.shape[1], combined.shape[0]
    t0 = time.perf_counter()
    try:
        engine.update_stats("", f"AdaIN: stylizing frame {frame} ({layer.name})")
        display = colour.to_display(snap.view, combined)
        crypto = CryptoPasses(layer, w, h)
        if not getattr(engine, "is_animation", False):  # a still can be restyled with slots of either kind
            crypto("Object"), crypto("Material")
        kept.append(RenderedLayer(snap.scene, frame, layer.name, snap.view, combined, display, crypto.read))
        if snap.error:
            raise FrameError(snap.error)
        job = build_job(snap, crypto, display, w, h)
        client = link.backend().client()
        cancelled = lambda: esc_pressed(engine)  # noqa: E731
        with client_lock(cancelled):
            out = stylize_frame(client, ids_for(client), job, style_size=snap.style_size, cancelled=cancelled)
        out, note = _smooth(engine, snap, layer, job, out)
        _write_passes(engine, layer.name, w, h, layer_passes(snap.view, combined, display, out))
    except CancelledError:
        _write_passes(engine, layer.name, w, h, plain)
        _fail(engine, frame, "AdaIN: stylization cancelled; this frame keeps the plain render")
        return False
    except (FrameError, BackendError) as e:
        _write_passes(engine, layer.name, w, h, plain)
        _fail(engine, frame, f"AdaIN: frame {frame} not stylized, the plain render is kept: {e}")
        return False
    except Exception as e:  # a bug of ours: still keep the plain render, and say where to look
        log.exception("AdaIN failed on frame %s", frame)
        _write_passes(engine, layer.name, w, h, plain)
        _fail(engine, frame, f"AdaIN: internal error on frame {frame} ({type(e).__name__}: {e}); the plain render is kept")
        return False
    msg = f"AdaIN: frame {frame} stylized in {time.perf_counter() - t0:.1f} s"
    for warning in (*snap.warnings, *colour.check_view(snap.view), *([note] if note else [])):
        msg += f" (warning: {warning})"
    STATUS.frame, STATUS.ok, STATUS.message = frame, True, msg
    STATUS.stylized_frames.append(frame)
    STATUS.failed_frames.discard(frame)
    engine.update_stats("", msg)
    print(msg, file=sys.stderr, flush=True)
    return True


def _smooth(engine: Any, snap: Snapshot, layer: Any, job: FrameJob, out: FrameResult) -> tuple[FrameResult, str]:
    """Temporal smoothing of an animation frame's AdaIN pass (see ``temporal``); a note when it cannot run."""
    if not getattr(engine, "is_animation", False):
        return out, ""
    if snap.temporal <= 0.0:  # off at this frame: nothing to remember (two frames' worth of memory at 4K)
        SMOOTHER.reset()
        return out, ""
    h, w = job.image.shape[:2]
    flow, note = None, ""
    if snap.motion_blur:
        note = "no temporal smoothing while Motion Blur is on (Cycles writes no motion vectors then)"
    elif (vector := _pass_array(layer, "Vector", w, h)) is None:
        note = "temporal smoothing needs the Vector pass: View Layer > Passes > Data > Vector"
    else:
        flow = temporal.flow_from_vector(vector)
    combined, _ = SMOOTHER.apply(layer.name, snap.frame, out.combined, job.image, flow, snap.temporal)
    return FrameResult(combined, out.slot_passes, out.compute_ms), note


def layer_passes(view: colour.View, combined: np.ndarray, display: np.ndarray, out: FrameResult) -> dict[str, np.ndarray]:
    """The backend's answer as scene-linear passes in Blender's row order ("AdaIN", "AdaIN <slot>"), with the
    render's alpha.

    Render passes are premultiplied by alpha while the display values (and so the network's output) are straight:
    the colour round trip runs on straight colour and the result is premultiplied again, so transparent pixels
    (Film > Transparent) stay empty instead of carrying the stylized background as invisible, additive colour.
    """
    alpha = combined[..., 3:4]
    straight = combined.copy()
    covered = alpha[..., 0] > 0.0
    straight[..., :3] = np.where(covered[..., None], combined[..., :3] / np.where(alpha > 0.0, alpha, 1.0), 0.0)
    anchor = (straight, display)

    def premultiplied(arr: np.ndarray) -> np.ndarray:
        lin = colour.to_linear(view, arr[::-1], anchor)
        lin[..., :3] *= alpha
        lin[..., 3] = alpha[..., 0]
        return lin

    passes = {PASS: premultiplied(out.combined)}
    for name, arr in out.slot_passes.items():
        passes[slot_pass_name(name)] = premultiplied(arr)
    return passes


def _fail(engine: Any, frame: int, message: str) -> None:
    STATUS.frame, STATUS.ok, STATUS.message = frame, False, message
    STATUS.failed_frames.add(frame)
    print(message, file=sys.stderr, flush=True)
    try:
        engine.report({"ERROR"}, message)
    except Exception:
        pass


# ----------------------------------------------------------------------------- handlers
@bpy.app.handlers.persistent
def on_load_post(*_: Any) -> None:
    """A file with AdaIN on gets its scratch datablocks on the main thread, before any render; the last render
    of the previous file is forgotten (its scene and names are gone)."""
    LAST_RENDER.clear()
    if any(getattr(sc, "adain", None) is not None and sc.adain.enabled for sc in bpy.data.scenes):
        colour.prepare()


@bpy.app.handlers.persistent
def on_render_init(scene: bpy.types.Scene, *_: Any) -> None:
    STATUS.failed_frames.clear()
    STATUS.stylized_frames.clear()
    SMOOTHER.reset()
