"""Stylization inside Cycles renders: F12, Ctrl-F12 and ``blender -b -a`` alike, no timers (bpy).

The add-on wraps three methods of Cycles' RenderEngine class while it is enabled:

- ``update_render_passes`` also registers the pass "AdaIN" (and "AdaIN <slot>" per slot when asked), so the
  Render Layers node has the sockets and multilayer EXRs carry them;
- ``render`` remembers the evaluated scene (slot alphas as keyframed at this frame);
- ``render_frame_finish``, after Cycles has written its passes, reads Combined and the Cryptomatte passes,
  sends the frame to the backend and writes the result into the "AdaIN" pass(es) — before the compositor
  runs, so the "AdaIN Stylize" node group and any node after it see the stylized frame.

Only the hook lives here: reading the scene is ``scene_snapshot``, stylizing the result ``render_result``, the
arithmetic ``render_maths``, what persists between frames ``session.SESSION``.

Install and uninstall are chain-safe: another add-on may wrap the same methods after us. Uninstall restores
Cycles' own method only where ours is still the outermost wrapper; where another wrapper sits on top of ours,
ours stays in its chain and passes every call straight through until the add-on is installed again.

When stylization fails (backend down, bad style), the "AdaIN" pass gets the plain render and the error is
reported as an error of the render: Blender shows it, keeps the plain render in the render window, writes
no file for that frame and stops an animation there (``bpy.ops.render.render`` raises it in scripts). So
re-running the animation with Output > Overwrite off renders exactly the frames that are missing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import bpy

from . import colour, engine_hook, temporal
from .frames import FrameError
from .render_maths import PASS, SceneSnapshot, slot_pass_name
from .render_result import fail, process_result
from .scene_snapshot import animation_job, snapshot
from .session import SESSION

log = logging.getLogger("adain.render")
METHODS = ("render", "render_frame_finish", "update_render_passes")  # the CyclesRender methods we wrap


class _Hook:
    """Our wrappers' state: Cycles' methods as they were before we wrapped them, and whether we are on."""

    def __init__(self) -> None:
        self.cls: Any = None  # the class we wrapped (Cycles re-registered after factory settings may be a new one)
        self.originals: dict[str, Callable[..., Any]] = {}  # kept while any wrapper of ours is still in a chain
        self.active = False


_hook = _Hook()


def _cycles_class() -> Any:
    try:
        import cycles
    except ImportError as e:
        raise RuntimeError("the Cycles add-on is not available: AdaIN stylizes Cycles renders") from e
    return cycles.CyclesRender


# ------------------------------------------------------------------------------------ install
def install() -> None:
    """Wrap Cycles' engine methods (idempotent). Raises RuntimeError if Cycles is not available."""
    cls = _cycles_class()
    if cls is not _hook.cls:
        _hook.cls, _hook.originals = cls, {}
    for name in METHODS:
        current = getattr(cls, name)
        if current is _WRAPPERS[name]:
            continue  # ours is in place already
        if name in _hook.originals and current is not _hook.originals[name]:
            continue  # ours was left inside another add-on's wrapper at uninstall: switching on is enough
        _hook.originals[name] = current
        setattr(cls, name, _WRAPPERS[name])
    _hook.active = True


def uninstall() -> None:
    """Unwrap where ours is the outermost wrapper; elsewhere ours stays in the chain, passing calls through."""
    _hook.active = False
    try:
        cls = _cycles_class()
    except RuntimeError:
        return
    if cls is not _hook.cls:
        return
    for name in METHODS:
        if getattr(cls, name) is _WRAPPERS[name] and name in _hook.originals:
            setattr(cls, name, _hook.originals.pop(name))


def installed() -> bool:
    """Whether renders are stylized now (our wrappers are on)."""
    return _hook.active


# --------------------------------------------------------------------------------- the wrappers
def _render(self: Any, depsgraph: bpy.types.Depsgraph) -> None:
    if not _hook.active:
        return _hook.originals["render"](self, depsgraph)
    # The evaluated scene (keyframed alphas at this frame) is gone by render_frame_finish: read it now.
    self._adain_snapshot = None
    if not self.is_preview:
        scene = depsgraph.scene_eval
        try:
            self._adain_snapshot = snapshot(scene) if hasattr(scene, "adain") else None
        except FrameError as e:
            self._adain_snapshot = SceneSnapshot(scene.frame_current, True, colour.View.of(scene), error=str(e), scene=scene.name)
    return _hook.originals["render"](self, depsgraph)


def _update_render_passes(self: Any, scene: bpy.types.Scene | None = None, renderlayer: Any = None) -> None:
    _hook.originals["update_render_passes"](self, scene, renderlayer)
    if not _hook.active or scene is None or not hasattr(scene, "adain"):
        return
    self.register_pass(scene, renderlayer, PASS, 4, "RGBA", "COLOR")
    if scene.adain.slot_passes:
        for slot in scene.adain.slots:
            if slot.enabled:
                self.register_pass(scene, renderlayer, slot_pass_name(slot.name), 4, "RGBA", "COLOR")


def _render_frame_finish(self: Any) -> None:
    _hook.originals["render_frame_finish"](self)
    snap = getattr(self, "_adain_snapshot", None)
    if not _hook.active or snap is None or self.is_preview:
        return
    try:
        process_result(self, snap)
    except Exception as e:
        log.exception("AdaIN failed")
        fail(self, snap.frame, f"AdaIN: internal error ({type(e).__name__}: {e})")


_WRAPPERS: dict[str, Callable[..., Any]] = {
    "render": _render,
    "render_frame_finish": _render_frame_finish,
    "update_render_passes": _update_render_passes,
}


# ----------------------------------------------------------------------------- handlers
@bpy.app.handlers.persistent
def on_load_post(*_: Any) -> None:
    """A file with AdaIN on gets its scratch datablocks on the main thread, before any render; the last render
    of the previous file is forgotten (its scene and names are gone)."""
    SESSION.last_render.clear()
    if any(getattr(sc, "adain", None) is not None and sc.adain.enabled for sc in bpy.data.scenes):
        colour.prepare()


@bpy.app.handlers.persistent
def on_render_init(scene: bpy.types.Scene, *_: Any) -> None:
    if SESSION.seeding:  # a seed render started below: keep the history it is building
        return
    SESSION.new_render()
    if animation_job() and _hook.active:
        seed_history(scene)


def seed_history(scene: bpy.types.Scene) -> None:
    """Stylize the frames before the job's first one, without writing them, so that temporal smoothing starts from
    the same history as in one long run (``temporal.seed_frames``): chunks of an animation rendered on different
    machines join up. Nothing to do with smoothing off, AdaIN off or an engine without motion vectors (Workbench).

    Each seed frame is a render without a file; Cycles' is stylized by the wrapped engine, EEVEE's (any engine of
    ``engine_hook.ENGINES`` with a Vector pass) by the after-compositor hook's ``render_post``, which only smooths it
    while ``SESSION.seeding`` is set and leaves why it failed for ``take_seed_failure``."""
    st = getattr(scene, "adain", None)
    if st is None or not st.enabled or not smooths(scene.render.engine):
        return
    first, current = scene.frame_start, scene.frame_current
    scene.frame_set(first)
    n = temporal.seed_frames(float(st.temporal))  # (the strength as keyed at the first frame)
    if n == 0:
        scene.frame_set(current)
        return
    print(f"AdaIN: seeding temporal smoothing with frames {first - n}-{first - 1} (stylized, not written)", file=sys.stderr)
    SESSION.seeding = True
    try:
        for frame in range(first - n, first):
            scene.frame_set(frame)
            bpy.ops.render.render(write_still=False, scene=scene.name)
            if (failure := engine_hook.take_seed_failure()) is not None:
                raise RuntimeError(failure)
    except RuntimeError as e:  # the seed frame's error was reported; the job goes on, its first frame unsmoothed
        log.warning("could not seed temporal smoothing: %s", e)
        print(f"AdaIN: temporal smoothing not seeded, the first frame is not smoothed: {e}", file=sys.stderr)
        SESSION.smoother.reset()
    finally:
        SESSION.seeding = False
        scene.frame_set(current)


def smooths(engine: str) -> bool:
    """Whether renders of this engine are smoothed along motion vectors: Cycles, and the hook's engines with a
    Vector pass (EEVEE)."""
    support = engine_hook.ENGINES.get(engine)
    return engine == "CYCLES" or (support is not None and support.vector)
