"""Restyle Last Render: the last rendered frame stylized again with the slots as they are now, no render (bpy).

Trying styles is the slow part of an artist's loop when every change means another Cycles render. The render hook
keeps the last frame's inputs (``SESSION.last_render``: the scene-linear Combined pass, its display-referred
pixels and the Cryptomatte passes), so changing a style image, a weight, an alpha, a colour mode or a slot's
targets and pressing *Restyle Last Render* costs one backend request, not a render.

The result goes into the float image "AdaIN Restyle" (scene-linear, like the render: the Image Editor shows it
through the scene's view transform), "AdaIN Restyle <view layer>" when several layers were rendered. It is what
the "AdaIN" pass would hold; nodes after the node group in the compositor are not applied. Colours go back
through the view the frame was rendered with.

``start`` (main thread) gathers everything bpy-side and returns a ``BackgroundTask`` that talks to the backend on a
thread; ``finish`` (main thread) writes the images. The operator ``adain.restyle`` polls the task from a modal
timer in the UI (Esc cancels) and waits for it when run from a script or ``blender -b``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import bpy
import numpy as np

from . import colour, session_backend
from .background_task import BackgroundTask
from .frames import FrameError, FrameJob, FrameResult, stylize_reconnecting
from .render_maths import PASS, SceneSnapshot, build_job
from .render_result import layer_passes
from .scene_snapshot import snapshot
from .session import SESSION, RenderedLayer

IMAGE = "AdaIN Restyle"


@dataclass(frozen=True, eq=False)
class Plan:
    """What one restyle sends: the current slots (``snap``) applied to each kept layer."""

    snap: SceneSnapshot
    layers: tuple[RenderedLayer, ...]
    jobs: tuple[FrameJob, ...]

    @property
    def frame(self) -> int:
        return self.layers[0].frame

    def image_name(self, layer: RenderedLayer) -> str:
        return IMAGE if len(self.layers) == 1 else f"{IMAGE} {layer.layer}"


def describe_last() -> str:
    """One line for the panel: which frame can be restyled, or why none can."""
    if not SESSION.last_render:
        return "Nothing to restyle yet: render a frame with AdaIN on (F12)"
    rl = SESSION.last_render[0]
    w, h = rl.size
    return f"Last render: {rl.scene}, frame {rl.frame}, {w}×{h}"


def _kept_passes(rl: RenderedLayer) -> Callable[[str], list[np.ndarray]]:
    def passes(kind: str) -> list[np.ndarray]:
        if kind not in rl.crypto:
            raise FrameError(
                f"the last render (an animation frame) kept no Cryptomatte {kind} masks, which a slot now targets: "
                "render the frame again (F12) to restyle it"
            )
        return rl.crypto[kind]

    return passes


def plan(scene: bpy.types.Scene) -> Plan:
    """The restyle request for ``scene``'s current slots; FrameError says what to fix."""
    layers = tuple(SESSION.last_render)
    if not layers:
        raise FrameError("nothing to restyle yet: render a frame with AdaIN on first (F12)")
    if layers[0].scene != scene.name:
        raise FrameError(
            f"the last render was of scene {layers[0].scene!r}, not {scene.name!r}: switch back to it, or render this one"
        )
    if not hasattr(scene, "adain") or not scene.adain.enabled:
        raise FrameError("AdaIN is off for this scene: tick it in the AdaIN Stylize panel's header")
    snap = snapshot(scene)
    # only the combined frame is shown: no per-slot passes (each would be one more decode on the backend)
    jobs = tuple(replace(build_job(snap, _kept_passes(rl), rl.display, *rl.size), slot_passes=False) for rl in layers)
    return Plan(snap, layers, jobs)


def start(scene: bpy.types.Scene) -> tuple[Plan, BackgroundTask[list[FrameResult]]]:
    """Plan on the main thread, connect (may start the local backend), then send from a ``BackgroundTask``."""
    p = plan(scene)
    backend = session_backend.backend()
    backend.client()  # here, on the main thread: a local backend that has to start does so before the task

    def work(task: BackgroundTask[list[FrameResult]]) -> list[FrameResult]:
        results = []
        for i, job in enumerate(p.jobs):
            task.progress = f"AdaIN: restyling frame {p.frame}" + (f" (layer {i + 1}/{len(p.jobs)})" if len(p.jobs) > 1 else "")
            with SESSION.client_lock(task.cancelled):
                results.append(
                    stylize_reconnecting(backend, SESSION.ids_for, job, style_size=p.snap.style_size, cancelled=task.cancelled)
                )
        return results

    task: BackgroundTask[list[FrameResult]] = BackgroundTask(work, name="adain-restyle")
    task.progress = f"AdaIN: restyling frame {p.frame}"
    return p, task.start()


def _image(name: str, w: int, h: int) -> bpy.types.Image:
    img = bpy.data.images.get(name)
    if img is not None and (img.source != "GENERATED" or not img.is_float):
        bpy.data.images.remove(img)
        img = None
    if img is None:
        img = bpy.data.images.new(name, w, h, alpha=True, float_buffer=True)
    elif tuple(img.size) != (w, h):
        img.scale(w, h)
    return img


def finish(p: Plan, results: list[FrameResult]) -> list[bpy.types.Image]:
    """Write the backend's answers into the restyle images (main thread)."""
    images = []
    for rl, out in zip(p.layers, results, strict=True):
        lin = layer_passes(rl.view, rl.combined, rl.display, out)[PASS]
        w, h = rl.size
        img = _image(p.image_name(rl), w, h)
        img.pixels.foreach_set(np.ascontiguousarray(lin, np.float32).ravel())
        img.update()
        images.append(img)
    return images


def message(p: Plan, images: list[bpy.types.Image], seconds: float) -> str:
    """What the operator reports when done."""
    names = ", ".join(repr(img.name) for img in images)
    msg = f"AdaIN: frame {p.frame} restyled in {seconds:.1f} s into the image {names}"
    for warning in colour.check_view(p.layers[0].view):
        msg += f" (warning: {warning})"
    return msg


def show(context: bpy.types.Context, images: list[bpy.types.Image]) -> None:
    """Show the result in the Image Editors that show the render or an earlier restyle."""
    names = {IMAGE} | {img.name for img in images}
    wm = context.window_manager
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type != "IMAGE_EDITOR":
                continue
            space = area.spaces.active
            current = space.image
            if current is None or current.type == "RENDER_RESULT" or current.name in names or current.name.startswith(IMAGE):
                space.image = images[0]
                area.tag_redraw()
