"""Stylization with render engines whose RenderEngine class is not Python: EEVEE, Workbench and any engine named in
``ENGINES`` (``register_engine``), in F12, Ctrl-F12 and ``blender -b -a`` alike (bpy).

Cycles is wrapped (``render``) so that stylization runs before the compositor. A C engine cannot be wrapped and
Blender calls no handler between its render and the compositor, so this hook runs after both, on the handlers
Blender calls for every frame once the output file is written (``RE_RenderFrame`` and ``RE_RenderAnim``):

- ``render_init``: a job starts; the frame it started at is remembered;
- ``render_post`` (stills and every frame of an animation): the Render Result is saved by ``Image.save_render``
  as an uncompressed multilayer OpenEXR (the scene's own output settings switched for that one call: the Render
  Result image has no readable pixels, in the UI or in ``blender -b``, and a private scene would not find the
  render), read back by ``exr``, and the composited frame stylized by ``engine_frame``;
- ``render_write`` (only when Blender wrote a file): the file is written again with the stylized frame, in the
  scene's format and colour management (``save_render`` of a scratch image); a multilayer OpenEXR output is
  rewritten with every pass Blender wrote, the "Composite" layer stylized and an "AdaIN" pass added, uncompressed,
  and the header attributes Blender wrote (Cryptomatte's manifests, the stamp) kept.
  A frame that failed has its file deleted (the plain render stays in the render window and in "AdaIN Result" is
  not updated) and an animation stops after it: the handler moves the scene's current frame past the end, which
  ends Blender's frame loop, and puts it back at ``render_complete``. So a re-run with Overwrite off renders
  exactly the missing frames, as with Cycles.

The stylized frame also goes to the float image "AdaIN Result" (in the UI from a timer, on the main thread, and
the render window is switched to it); ``SESSION.last_render`` keeps the frame for Restyle Last Render.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from adain_wire.manager import BackendUnavailableError

from . import escape_watch, exr
from .engine_frame import pick, stylize_grabbed
from .frames import FrameCancelledError, FrameError
from .render_maths import PASS
from .scene_snapshot import frame_place, job_progress, snapshot
from .session import SESSION

log = logging.getLogger("adain.engine_hook")
RESULT_IMAGE = "AdaIN Result"
_SCRATCH = ".AdaIN output"
MAXFRAME = 1048574  # Blender's last frame: past any animation's end


@dataclass(frozen=True)
class EngineSupport:
    """What an engine without a Python RenderEngine offers the hook; ``register_engine`` adds one."""

    label: str
    cryptomatte: bool  # per-object and per-material slots; without it the first slot styles the whole frame
    vector: bool  # temporal smoothing along its Vector pass


ENGINES: dict[str, EngineSupport] = {
    "BLENDER_EEVEE_NEXT": EngineSupport("EEVEE", True, True),  # Blender 4.2-4.5
    "BLENDER_EEVEE": EngineSupport("EEVEE", True, True),  # Blender 5.0
    "BLENDER_WORKBENCH": EngineSupport("Workbench", False, False),
}


def register_engine(bl_idname: str, label: str, *, cryptomatte: bool, vector: bool) -> None:
    """Stylize renders of another engine (a third-party one) by this same path: its frames are read back from the
    Render Result after the compositor, whatever passes it writes."""
    ENGINES[bl_idname] = EngineSupport(label, cryptomatte, vector)


@dataclass
class _Job:
    start_frame: int | None = None
    started: float = 0.0
    stopped: bool = False
    frames: dict[int, np.ndarray | None] = field(default_factory=dict)  # frame -> stylized linear, None: failed
    seed_failure: str | None = None  # why a seed frame (render.seed_history) was not stylized
    seen: int = 0  # frames of this job that reached render_post


_job = _Job()
_tmp: Path | None = None


def _tmpdir() -> Path:
    global _tmp
    if _tmp is None or not _tmp.is_dir():
        _tmp = Path(tempfile.mkdtemp(prefix="adain-engine-"))
    return _tmp


def _ours(scene: Any) -> EngineSupport | None:
    st = getattr(scene, "adain", None)
    if st is None or not st.enabled or scene.name.startswith("."):
        return None
    return ENGINES.get(scene.render.engine)


# ------------------------------------------------------------------------------- reading the render
_FORMAT_KEYS = ("media_type", "file_format", "color_mode", "color_depth", "exr_codec")


def grab(scene: Any) -> dict[str, dict[str, np.ndarray]]:
    """Every layer and pass of the scene's Render Result, scene-linear, Blender's row order."""
    rr = bpy.data.images.get("Render Result")
    if rr is None:
        raise FrameError("Blender has no Render Result to read")
    f = scene.render.image_settings
    saved = [(k, getattr(f, k)) for k in _FORMAT_KEYS if hasattr(f, k)]
    path = _tmpdir() / "frame.exr"
    try:
        if hasattr(f, "media_type"):
            f.media_type = "MULTI_LAYER_IMAGE"
        f.file_format = "OPEN_EXR_MULTILAYER"
        f.color_depth, f.exr_codec = "32", "NONE"
        rr.save_render(os.fspath(path), scene=scene)
    finally:
        for k, v in saved:
            try:
                setattr(f, k, v)
            except (TypeError, ValueError):
                pass
    try:
        return exr.read_layers(path)
    except (OSError, exr.ExrError) as e:
        raise FrameError(f"could not read the render back: {e}") from e


# ------------------------------------------------------------------------------- writing the output
def _scratch(w: int, h: int) -> Any:
    img = bpy.data.images.get(_SCRATCH)
    if img is None:
        img = bpy.data.images.new(_SCRATCH, w, h, alpha=True, float_buffer=True)
    elif tuple(img.size) != (w, h):
        img.scale(w, h)
    return img


def write_output(scene: Any, path: str, linear: np.ndarray, layers: dict[str, dict[str, np.ndarray]]) -> None:
    """The stylized frame written to ``path`` as Blender would have written it (multilayer EXR: all passes)."""
    f = scene.render.image_settings
    if f.file_format == "OPEN_EXR_MULTILAYER" or getattr(f, "media_type", "") == "MULTI_LAYER_IMAGE":
        out: dict[str, dict[str, tuple[str, np.ndarray]]] = {}
        for name, passes in layers.items():
            out[name] = {p: (_letters(p, a.shape[2]), a) for p, a in passes.items()}
            if name != "Composite":
                out[name][PASS] = ("RGBA", linear)
        out.setdefault("Composite", {})["Combined"] = ("RGBA", linear)
        exr.write_layers(path, out, exr.read_metadata(path))  # Cryptomatte's manifests, the stamp: as Blender wrote them
        return
    h, w = linear.shape[:2]
    img = _scratch(w, h)
    img.pixels.foreach_set(np.ascontiguousarray(linear, np.float32).ravel())
    img.save_render(path, scene=scene)


def _letters(name: str, n: int) -> str:
    if name.startswith("Crypto"):
        return "rgba"[:n]
    if name == "Vector" or name.startswith("Normal") or name.startswith("Position"):
        return "XYZW"[:n]
    if n == 1:
        return "V" if name != "Depth" else "Z"
    return "RGBA"[:n] if n <= 4 else "".join(chr(ord("A") + i) for i in range(n))


_bar: list[str | None] = [None]


def status_bar(text: str | None) -> None:
    """In the UI, the status bar says which frame is being stylized (None clears it). Set from a timer on the main
    thread (the handlers run on the render thread), the latest text winning; background Blender has no status bar."""
    if bpy.app.background:
        return
    _bar[0] = text

    def apply() -> None:
        for window in getattr(bpy.context.window_manager, "windows", ()):
            try:
                with bpy.context.temp_override(window=window):
                    window.workspace.status_text_set(_bar[0])
            except Exception:  # (a window closing meanwhile: the status bar is only a courtesy)
                log.debug("could not set the status bar", exc_info=True)

    bpy.app.timers.register(apply, first_interval=0.0)


def show(linear: np.ndarray) -> None:
    """Put the stylized frame in the image "AdaIN Result" (on the main thread) and show it in the render window."""

    def update() -> None:
        h, w = linear.shape[:2]
        img = bpy.data.images.get(RESULT_IMAGE)
        if img is None:
            img = bpy.data.images.new(RESULT_IMAGE, w, h, alpha=True, float_buffer=True)
        elif tuple(img.size) != (w, h):
            img.scale(w, h)
        img.pixels.foreach_set(np.ascontiguousarray(linear, np.float32).ravel())
        img.update()
        for window in getattr(bpy.context.window_manager, "windows", ()):
            for area in window.screen.areas:
                space = area.spaces.active
                if area.type == "IMAGE_EDITOR" and space.image is not None and space.image.type == "RENDER_RESULT":
                    space.image = img
                    area.tag_redraw()

    if bpy.app.background:
        update()
    else:

        def once() -> None:
            update()  # (returning None: the timer runs once)

        bpy.app.timers.register(once, first_interval=0.0)


# ------------------------------------------------------------------------------- handlers
@bpy.app.handlers.persistent
def on_render_init(scene: Any, *_: Any) -> None:
    if SESSION.seeding:  # a seed render inside the job's render_init (render.seed_history): the job is the outer one
        return
    _job.start_frame, _job.stopped, _job.started = scene.frame_current, False, time.time()
    _job.frames.clear()
    _job.seen = 0
    if _ours(scene) is not None:
        SESSION.render_break.clear()
        escape_watch.start()


def esc_pressed() -> bool:
    """Esc in the UI since the render job started (``escape_watch``), polled while the backend works."""
    return SESSION.render_break.is_set()


@bpy.app.handlers.persistent
def on_render_post(scene: Any, *_: Any) -> None:
    support = _ours(scene)
    if support is None:
        return
    frame = scene.frame_current
    if not SESSION.seeding:
        _job.frames[frame] = None
        _job.seen += 1
    progress = job_progress(scene) or _seen_progress(scene)
    if progress and (note := movie_note(scene)):  # an animation into a movie: nothing of ours would reach the file
        status = SESSION.status
        status.frame, status.ok, status.message = frame, True, f"AdaIN: frame {frame} not stylized: {note}"
        return
    status_bar(f"AdaIN: stylizing frame {frame}{f' ({progress})' if progress else ''} after {support.label}'s render...")
    try:
        snap = snapshot(scene)
        layers = grab(scene)
        grabbed = pick(layers, [vl.name for vl in scene.view_layers if vl.use])
        linear = stylize_grabbed(snap, grabbed, support.label, progress, cancelled=lambda: esc_pressed())
    except FrameCancelledError:
        fail(frame, f"AdaIN: frame {frame} not stylized: cancelled (Esc); the plain render is kept")
        return
    except (FrameError, BackendUnavailableError) as e:
        fail(frame, f"AdaIN: frame {frame} not stylized, the plain render is kept: {e}")
        return
    except Exception as e:  # a bug of ours: the plain frame is kept, and where to look is said
        log.exception("AdaIN failed on frame %s", frame)
        fail(frame, f"AdaIN: internal error on frame {frame} ({type(e).__name__}: {e}); the plain render is kept")
        return
    finally:
        status_bar(None)
    if SESSION.seeding:  # a frame before the job's first one: its smoothed result is the history, nothing else
        return
    _job.frames[frame] = linear
    _last_layers[:] = [layers]
    show(linear)


_last_layers: list[dict[str, dict[str, np.ndarray]]] = []


def _seen_progress(scene: Any) -> str:
    """In the UI, where a frame stands in an animation ("2 of 6"), known from the job's second frame on: a handler
    cannot tell Ctrl-F12 from F12 at the first frame ("" then, and for a still)."""
    return "" if SESSION.seeding or _job.seen < 2 else frame_place(scene)


@bpy.app.handlers.persistent
def on_render_write(scene: Any, *_: Any) -> None:
    if _ours(scene) is None or SESSION.seeding:
        return
    frame = scene.frame_current
    if frame not in _job.frames:
        return
    path = written_path(scene, frame)
    linear = _job.frames.pop(frame)
    if note := movie_note(scene):  # (the console was told at render_init: engine_watch.engine_message)
        if linear is not None and SESSION.status.ok:
            SESSION.status.message += f" (warning: {note})"
        return
    if path is None:  # (nothing to rewrite or delete)
        if linear is None:
            stop(scene)
        else:
            print(f"AdaIN: could not find the file Blender wrote for frame {frame}; it stays plain", file=sys.stderr)
        return
    if linear is not None:
        try:
            write_output(scene, path, linear, _last_layers[0] if _last_layers else {})
            return
        except Exception as e:
            log.exception("AdaIN could not write frame %s", frame)
            fail(frame, f"AdaIN: frame {frame} could not be written stylized ({type(e).__name__}: {e})")
    try:  # a failed frame leaves no file, as with Cycles: Overwrite off renders it again
        os.remove(path)
    except OSError:
        pass
    stop(scene)


def movie_note(scene: Any) -> str:
    """Why the output stays plain when it is a movie and the engine one of ours ("" otherwise): Blender encodes each
    frame into the movie before ``render_post``, and a movie cannot be rewritten frame by frame."""
    support = ENGINES.get(scene.render.engine)
    if support is None or not scene.render.is_movie_format:
        return ""
    return (f"the movie output stays plain with {support.label} (Blender encodes each frame before AdaIN sees it): "
            "render an image sequence (PNG, EXR) and make the movie from it")  # fmt: skip


def written_path(scene: Any, frame: int) -> str | None:
    """The file Blender wrote for this frame: an animation's frame path, or a still's path (no frame number), the
    one written since the job started."""
    still = bpy.path.abspath(scene.render.filepath)
    ext = scene.render.file_extension
    if scene.render.use_file_extension and not still.lower().endswith(ext.lower()):
        still += ext
    best: tuple[float, str] | None = None
    for path in (scene.render.frame_path(frame=frame), still):
        try:
            mtime = os.path.getmtime(path)
        except OSError:
            continue
        if mtime >= _job.started - 1.0 and (best is None or mtime > best[0]):
            best = (mtime, path)
    return None if best is None else best[1]


def stop(scene: Any) -> None:
    """End an animation after this frame: Blender's frame loop runs while the current frame is before its end."""
    if not _job.stopped:
        _job.stopped = True
        scene.frame_current = MAXFRAME


@bpy.app.handlers.persistent
def on_render_done(scene: Any, *_: Any) -> None:
    if SESSION.seeding:
        return
    _last_layers.clear()
    if _job.stopped and _job.start_frame is not None:
        scene.frame_current = _job.start_frame
    _job.stopped = False


def fail(frame: int, message: str) -> None:
    if SESSION.seeding:  # not a frame of the job: render.seed_history takes the reason (take_seed_failure)
        _job.seed_failure = message
        print(message, file=sys.stderr, flush=True)
        return
    status = SESSION.status
    status.frame, status.ok, status.message = frame, False, message
    status.failed_frames.add(frame)
    print(message, file=sys.stderr, flush=True)


def take_seed_failure() -> str | None:
    """Why the last seed frame was not stylized (None: it was, or it was not ours), once: a handler cannot fail a
    render, so ``render.seed_history`` asks after each seed frame."""
    failure, _job.seed_failure = _job.seed_failure, None
    return failure


_HANDLERS = (
    ("render_init", on_render_init),
    ("render_post", on_render_post),
    ("render_write", on_render_write),
    ("render_complete", on_render_done),
    ("render_cancel", on_render_done),
)


def install() -> None:
    """Add the handlers (idempotent)."""
    for name, fn in _HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        if fn not in handlers:
            handlers.append(fn)


def uninstall() -> None:
    for name, fn in _HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        if fn in handlers:
            handlers.remove(fn)
    _job.frames.clear()
    _last_layers.clear()
