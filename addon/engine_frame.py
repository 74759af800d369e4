"""One frame of a C engine (EEVEE, Workbench...) stylized after the compositor (bpy): ``stylize_grabbed``.

``engine_hook`` hands over the frame as read back from the Render Result (``Grabbed``: the composited image and the
view layer's passes, all scene-linear, Blender's row order). The composited image is stylized with the same slot
semantics as inside Cycles (``render_maths.build_job``, ``frames.stylize_reconnecting``): masks from the view
layer's Cryptomatte passes; an engine that writes none (Workbench) gets the first enabled slot over the whole frame,
and says so. Temporal smoothing follows the Vector pass where the engine writes one (EEVEE does).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from . import colour, session_backend, smooth_backend, temporal
from .frames import FrameJob, FrameResult, stylize_reconnecting
from .render_maths import PASS, SceneSnapshot, SlotSnapshot, build_job, covering
from .render_result import layer_passes
from .session import SESSION, RenderedLayer


@dataclass(frozen=True, eq=False)
class Grabbed:
    """A finished frame: ``image`` (H, W, 4) the composited frame (what Blender wrote), ``layer`` the view layer
    whose passes (Cryptomatte, Vector) describe it, ``passes`` those passes; scene-linear, premultiplied."""

    image: np.ndarray
    layer: str
    passes: dict[str, np.ndarray]

    def crypto(self, kind: str) -> list[np.ndarray]:
        out = []
        for i in range(16):
            p = self.passes.get(f"Crypto{kind}{i:02d}")
            if p is None:
                break
            out.append(np.ascontiguousarray(p, np.float32))
        return out


def pick(layers: dict[str, dict[str, np.ndarray]], view_layers: list[str]) -> Grabbed:
    """The composited frame and the view layer that explains it (the first rendered one with Cryptomatte, else the
    first rendered one). Without a compositor result, that layer's Combined is the frame."""
    rendered = [name for name in view_layers if name in layers] or [n for n in layers if n != "Composite"]
    if not rendered:
        raise ValueError("the render result holds no view layer")
    layer = next((n for n in rendered if any(p.startswith("Crypto") for p in layers[n])), rendered[0])
    passes = layers[layer]
    image = layers.get("Composite", {}).get("Combined")
    if image is None:
        image = passes["Combined"]
    return Grabbed(np.ascontiguousarray(image, np.float32), layer, passes)


def whole_frame(snap: SceneSnapshot, grabbed: Grabbed) -> tuple[SceneSnapshot, str]:
    """Slots that need Cryptomatte passes the engine did not write: the first enabled slot over the whole frame."""
    kinds = {"MATERIALS": "Material", "OBJECTS": "Object"}
    missing = {kinds[s.target] for s in snap.slots if s.target in kinds} - {k for k in kinds.values() if grabbed.crypto(k)}
    if not missing:
        return snap, ""
    first = snap.slots[0]
    note = (f"this engine writes no Cryptomatte, so slot {first.job.name!r} styles the whole frame"
            + (" and the other slots are not used" if len(snap.slots) > 1 else ""))  # fmt: skip
    return replace(snap, slots=(SlotSnapshot(first.job, "OTHER", frozenset()),)), note


def stylize_grabbed(
    snap: SceneSnapshot, grabbed: Grabbed, engine: str, progress: str = "", cancelled: Callable[[], bool] = lambda: False
) -> np.ndarray:
    """The stylized frame (H, W, 4) scene-linear premultiplied, Blender's row order; FrameError (or
    BackendUnavailableError) when it cannot be made, FrameCancelledError once ``cancelled()`` turns true while the
    backend works. Keeps the frame for Restyle Last Render and reports (with ``progress``, where the frame stands in
    its job, "2 of 6")."""
    frame, t0 = snap.frame, time.perf_counter()
    view = snap.view
    image = grabbed.image
    h, w = image.shape[:2]
    display = colour.to_display(view, image)
    crypto = {k: covering(c) for k in ("Object", "Material") if (c := grabbed.crypto(k))}
    SESSION.last_render[:] = [RenderedLayer(snap.scene, frame, grabbed.layer, view, image, display, crypto)]
    where = f"{progress} in this job; " if progress else ""
    print(f"AdaIN: stylizing frame {frame} ({where}{engine}, after the compositor)", file=sys.stderr, flush=True)
    snap, note = whole_frame(snap, grabbed)
    job = build_job(snap, grabbed.crypto, display, w, h)
    backend = session_backend.backend()
    with SESSION.client_lock(cancelled):
        out = stylize_reconnecting(backend, SESSION.ids_for, job, style_size=snap.style_size, cancelled=cancelled)
    out, smooth_note = _smooth(snap, grabbed, job, out, cancelled)
    linear = layer_passes(view, image, display, out)[PASS]
    if SESSION.seeding:  # not a frame of the job (render.seed_history reports the seed): no status
        print(f"AdaIN: frame {frame} stylized to seed temporal smoothing (not written) in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)  # fmt: skip
        return linear
    msg = f"AdaIN: frame {frame} stylized in {time.perf_counter() - t0:.1f} s ({engine}, after the compositor)"
    for warning in (note, *colour.check_view(view), smooth_note):
        if warning:
            msg += f" (warning: {warning})"
    status = SESSION.status
    status.frame, status.ok, status.message = frame, True, msg
    status.stylized_frames.append(frame)
    status.failed_frames.discard(frame)
    print(msg, file=sys.stderr, flush=True)
    return linear


def _smooth(
    snap: SceneSnapshot, grabbed: Grabbed, job: FrameJob, out: FrameResult, cancelled: Callable[[], bool]
) -> tuple[FrameResult, str]:
    """Temporal smoothing along the view layer's Vector pass (a still has no previous frame: unchanged)."""
    if snap.temporal <= 0.0:
        SESSION.smoother.reset()
        return out, ""
    vector = grabbed.passes.get("Vector")
    flow, ahead, note = None, None, ""
    if snap.motion_blur:
        note = "no temporal smoothing while Motion Blur is on (no motion vectors are written then)"
    elif vector is None:
        note = "temporal smoothing needs the Vector pass (View Layer > Passes > Data > Vector), which this engine did not write"
    else:
        v = np.ascontiguousarray(vector, np.float32)  # (EEVEE writes Cycles' convention: tests/blender/test_warp_error.py)
        flow, ahead = temporal.flow_from_vector(v), temporal.next_flow_from_vector(v)
    remote = None if flow is None else smooth_backend.remote(session_backend.backend(), job.wire, cancelled)
    with SESSION.client_lock(cancelled):
        combined, _ = SESSION.smoother.apply(grabbed.layer, snap.frame, out.combined, job.image, flow, snap.temporal,
                                             ahead, remote)  # fmt: skip
    return FrameResult(combined, out.slot_passes, out.compute_ms), note
