"""A finished Cycles render result stylized (bpy): read each view layer's passes, ask the backend, write "AdaIN".

``process_result`` runs in the render hook after Cycles has written its passes and before the compositor: it reads
Combined and the Cryptomatte passes of each view layer, sends the frame to the backend (``frames.stylize_frame``)
and writes the answer into the "AdaIN" pass(es), scene-linear and premultiplied like the render. A frame that fails
keeps the plain render in those passes and is reported as an error of the render. The arithmetic lives in
``render_maths``; what persists between frames in ``session.SESSION``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import numpy as np

from adain_wire.manager import BackendUnavailableError

from . import colour, session_backend, smooth_backend, temporal
from .frames import FrameCancelledError, FrameError, FrameJob, FrameResult, stylize_reconnecting
from .render_maths import PASS, SceneSnapshot, build_job, covering, premultiply, slot_pass_name, unpremultiply
from .session import SESSION, RenderedLayer

log = logging.getLogger("adain.render")


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


class CryptoPasses:
    """A render layer's Cryptomatte passes of each kind, read on first use and kept in ``read``."""

    def __init__(self, layer: Any, w: int, h: int) -> None:
        self._layer, self._w, self._h = layer, w, h
        self.read: dict[str, list[np.ndarray]] = {}

    def __call__(self, kind: str) -> list[np.ndarray]:
        if kind not in self.read:
            self.read[kind] = _crypto(self._layer, kind, self._w, self._h)
        return self.read[kind]


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


def process_result(engine: Any, snap: SceneSnapshot) -> None:
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
                    rl.crypto[kind] = covering(passes)
            SESSION.last_render[:] = kept


def _stylize_layer(
    engine: Any, snap: SceneSnapshot, layer: Any, combined: np.ndarray, plain: dict[str, np.ndarray], kept: list[RenderedLayer]
) -> bool:
    """Stylize one view layer into its AdaIN pass(es); False (after reporting) when the frame failed."""
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
        backend = session_backend.backend()
        cancelled = lambda: esc_pressed(engine)  # noqa: E731
        with SESSION.client_lock(cancelled):
            out = stylize_reconnecting(backend, SESSION.ids_for, job, style_size=snap.style_size, cancelled=cancelled)
        out, note = _smooth(engine, snap, layer, job, out)
        _write_passes(engine, layer.name, w, h, layer_passes(snap.view, combined, display, out))
    except FrameCancelledError:
        _write_passes(engine, layer.name, w, h, plain)
        fail(engine, frame, "AdaIN: stylization cancelled; this frame keeps the plain render")
        return False
    except (FrameError, BackendUnavailableError) as e:
        _write_passes(engine, layer.name, w, h, plain)
        fail(engine, frame, f"AdaIN: frame {frame} not stylized, the plain render is kept: {e}")
        return False
    except Exception as e:  # a bug of ours: still keep the plain render, and say where to look
        log.exception("AdaIN failed on frame %s", frame)
        _write_passes(engine, layer.name, w, h, plain)
        fail(engine, frame, f"AdaIN: internal error on frame {frame} ({type(e).__name__}: {e}); the plain render is kept")
        return False
    msg = f"AdaIN: frame {frame} stylized in {time.perf_counter() - t0:.1f} s"
    if SESSION.seeding:
        msg = f"AdaIN: frame {frame} stylized to seed temporal smoothing (not written) in {time.perf_counter() - t0:.1f} s"
        engine.update_stats("", msg)
        print(msg, file=sys.stderr, flush=True)
        return True
    for warning in (*snap.warnings, *colour.check_view(snap.view), *([note] if note else [])):
        msg += f" (warning: {warning})"
    status = SESSION.status
    status.frame, status.ok, status.message = frame, True, msg
    status.stylized_frames.append(frame)
    status.failed_frames.discard(frame)
    engine.update_stats("", msg)
    print(msg, file=sys.stderr, flush=True)
    return True


def _smooth(engine: Any, snap: SceneSnapshot, layer: Any, job: FrameJob, out: FrameResult) -> tuple[FrameResult, str]:
    """Temporal smoothing of an animation frame's AdaIN pass (see ``temporal``); a note when it cannot run."""
    if not getattr(engine, "is_animation", False) and not SESSION.seeding:
        return out, ""
    if snap.temporal <= 0.0:  # off at this frame: nothing to remember (two frames' worth of memory at 4K)
        SESSION.smoother.reset()
        return out, ""
    h, w = job.image.shape[:2]
    flow, ahead, note = None, None, ""
    if snap.motion_blur:
        note = "no temporal smoothing while Motion Blur is on (Cycles writes no motion vectors then)"
    elif (vector := _pass_array(layer, "Vector", w, h)) is None:
        note = "temporal smoothing needs the Vector pass: View Layer > Passes > Data > Vector"
    else:
        flow, ahead = temporal.flow_from_vector(vector), temporal.next_flow_from_vector(vector)
    remote = None if flow is None else smooth_backend.remote(session_backend.backend(), job.wire, lambda: esc_pressed(engine))
    with SESSION.client_lock(lambda: esc_pressed(engine)):
        combined, _ = SESSION.smoother.apply(layer.name, snap.frame, out.combined, job.image, flow, snap.temporal, ahead, remote)
    return FrameResult(combined, out.slot_passes, out.compute_ms), note


def layer_passes(view: colour.View, combined: np.ndarray, display: np.ndarray, out: FrameResult) -> dict[str, np.ndarray]:
    """The backend's answer as scene-linear passes in Blender's row order ("AdaIN", "AdaIN <slot>"), with the
    render's alpha.

    Render passes are premultiplied by alpha while the display values (and so the network's output) are straight:
    the colour round trip runs on straight colour and the result is premultiplied again, so transparent pixels
    (Film > Transparent) stay empty instead of carrying the stylized background as invisible, additive colour.
    """
    alpha = combined[..., 3:4]
    anchor = (unpremultiply(combined), display)

    def premultiplied(arr: np.ndarray) -> np.ndarray:
        return premultiply(colour.to_linear(view, arr[::-1], anchor), alpha)

    passes = {PASS: premultiplied(out.combined)}
    for name, arr in out.slot_passes.items():
        passes[slot_pass_name(name)] = premultiplied(arr)
    return passes


def fail(engine: Any, frame: int, message: str) -> None:
    """Record and report a frame that was not stylized (an error of the render: Blender shows it)."""
    if not SESSION.seeding:  # (a seed frame is not a frame of the animation: render.seed_history reports it)
        status = SESSION.status
        status.frame, status.ok, status.message = frame, False, message
        status.failed_frames.add(frame)
    print(message, file=sys.stderr, flush=True)
    try:
        engine.report({"ERROR"}, message)
    except Exception:
        pass
