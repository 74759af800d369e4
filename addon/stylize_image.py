"""Stylize Image: any image datablock stylized with one style slot, no render (bpy).

A texture being painted, a photo, a render already saved: ``adain.stylize_image`` sends the image with a slot's
styles, weights, alpha and colour mode (the slot's own alpha, not multiplied by the scene's global alpha; its targets
do not matter: the whole image is stylized) and writes the answer into a new image or over the image's pixels.

Colour, by the image's kind:

- **byte images in sRGB** (PNG, JPEG...) go as they are stored: their values are already display-referred sRGB;
- **float images** hold scene-linear values (Blender converts float buffers to scene linear when it loads them): they
  go through the scene's view transform, as a render does, and come back through its inverse
  (``colour.to_display`` / ``colour.to_linear``, anchored on the image so that unchanged pixels come back exactly);
- **Non-Color** images (normal, roughness, height maps) are data, not pictures: refused. Byte images in another
  colour space (a linear or log encoding) are refused too, with what to do.

Alpha is kept as it is; fully transparent pixels stay out of the style statistics and keep their colour.

``start`` (main thread) reads the image and the slot and returns a ``BackgroundTask`` that talks to the backend on
a thread; ``finish`` (main thread) writes the result. The operator polls the task from a modal timer in the UI (Esc
cancels) and waits for it from scripts and ``blender -b``, as *Restyle Last Render* does.

Undo: a new image is packed into the .blend (so it survives undo, redo and saving); replaced pixels are recorded
by Blender's image undo first (the step *Invert Channels* with no channel inverted: Blender's own way of keeping an
image's pixels before an edit), so Ctrl-Z brings the original pixels back.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from . import colour, session_backend
from .background_task import BackgroundTask
from .frames import FrameError, FrameJob, FrameResult, rendered_only, stylize_reconnecting
from .render_maths import premultiply, unpremultiply
from .scene_snapshot import slot_job
from .session import SESSION

MODES = ("NEW", "REPLACE")
SOURCE_KEY = "adain_source"  # custom property on images this operator made: the image they were made from
_SRGB_BYTE_SPACES = ("sRGB",)


@dataclass(frozen=True, eq=False)
class Plan:
    """One image's request: ``display`` (H, W, 4) display-referred straight colour in Blender's row order (bottom
    row first); for a float image also ``linear`` (its pixels, premultiplied scene-linear) and the scene's view."""

    image: str
    mode: str
    result: str  # the image written (NEW: its name; REPLACE: the image itself)
    size: tuple[int, int]
    is_float: bool
    display: np.ndarray
    job: FrameJob
    style_size: int
    view: colour.View | None = None
    linear: np.ndarray | None = None


def result_name(image: bpy.types.Image, new_name: str = "") -> str:
    return new_name or f"{image.name} AdaIN"


def check_colourspace(image: bpy.types.Image) -> None:
    """FrameError when the image is not a picture this operator can take (see the module docstring)."""
    space = image.colorspace_settings.name
    if getattr(image.colorspace_settings, "is_data", False) or space == "Non-Color":
        raise FrameError(
            f"image {image.name!r} is Non-Color data (a normal, roughness or height map?): it holds no colours to "
            "stylize; set its Color Space to sRGB in the Image Editor's sidebar if it is a picture"
        )
    if not image.is_float and space not in _SRGB_BYTE_SPACES:
        raise FrameError(
            f"image {image.name!r} is an 8-bit image in colour space {space!r}: Stylize Image takes 8-bit sRGB images "
            "and float images; set its Color Space to sRGB if that is what it holds"
        )


def _pixels(image: bpy.types.Image) -> np.ndarray:
    w, h = image.size
    if w * h == 0:
        raise FrameError(f"image {image.name!r} has no pixels (missing file {image.filepath!r}?)")
    px = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(h, w, image.channels)
    if image.channels == 4:
        return px
    out = np.ones((h, w, 4), np.float32)  # RGB: opaque
    out[..., :3] = px
    return out


def plan(scene: bpy.types.Scene, image: bpy.types.Image, slot_index: int, mode: str, new_name: str = "") -> Plan:
    """The request for ``image`` stylized with ``scene``'s slot ``slot_index`` (-1: the active slot)."""
    if mode not in MODES:
        raise FrameError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if image.type not in ("IMAGE", "UV_TEST") or image.source not in ("FILE", "GENERATED"):  # UV_TEST: generated
        raise FrameError(
            f"{image.name!r} is not a still image (type {image.type}, source {image.source}): Stylize Image takes image "
            "files and generated images; save a render first, or use Restyle Last Render"
        )
    if image.channels not in (3, 4):
        raise FrameError(f"image {image.name!r} has {image.channels} channel(s): Stylize Image takes RGB and RGBA images")
    st = scene.adain
    index = st.active_slot if slot_index < 0 else slot_index
    if not 0 <= index < len(st.slots):
        raise FrameError(f"scene {scene.name!r} has no style slot {index}: add one in Render properties > AdaIN Stylize")
    check_colourspace(image)
    slot = st.slots[index]
    job_slot = slot_job(slot)
    w, h = image.size
    px = _pixels(image)
    view = linear = None
    if image.is_float:
        view = colour.View.of(scene)
        colour.view_colourspace(view)  # fail early on a view that cannot be inverted
        linear = px
        display = colour.to_display(view, linear)  # straight display values (saving un-premultiplies)
    else:
        display = px
    rgb = np.ascontiguousarray(display[::-1, :, :3], np.float32)
    masks = rendered_only(None, display[::-1, :, 3], 1)
    # float32 on the wire: one still image, not a stream of frames; through a LUT view (AgX, Filmic) float16's
    # 1/4000 becomes up to 1.3/255 on the way back
    job = FrameJob(rgb, (job_slot,), masks, tile=st.tile or None, wire="float32")
    name = image.name if mode == "REPLACE" else result_name(image, new_name)
    style_size = int(st.style_size)
    return Plan(image.name, mode, name, (w, h), bool(image.is_float), display, job, style_size, view, linear)


def start(
    scene: bpy.types.Scene, image: bpy.types.Image, slot_index: int = -1, mode: str = "NEW", new_name: str = ""
) -> tuple[Plan, BackgroundTask[FrameResult]]:
    """Plan on the main thread, connect (may start the local backend), then send from a ``BackgroundTask``."""
    p = plan(scene, image, slot_index, mode, new_name)
    backend = session_backend.backend()
    backend.client()  # here, on the main thread: a local backend that has to start does so before the task
    w, h = p.size

    def work(task: BackgroundTask[FrameResult]) -> FrameResult:
        with SESSION.client_lock(task.cancelled):
            return stylize_reconnecting(backend, SESSION.ids_for, p.job, style_size=p.style_size, cancelled=task.cancelled)

    task: BackgroundTask[FrameResult] = BackgroundTask(work, name="adain-stylize-image")
    task.progress = f"AdaIN: stylizing the image {p.image!r} ({w}×{h})"
    return p, task.start()


def _pixels_out(p: Plan, out: FrameResult) -> np.ndarray:
    """The answer as the image's pixels (H, W, 4), Blender's row order, the image's own alpha."""
    stylized = out.combined[::-1]
    if p.linear is None:
        px = p.display.copy()
        px[..., :3] = np.clip(stylized, 0.0, 1.0)
        return px
    assert p.view is not None
    alpha = p.linear[..., 3:4]
    back = colour.to_linear(p.view, stylized, (unpremultiply(p.linear), p.display))
    return premultiply(back, alpha)


def _record_for_undo(image: bpy.types.Image) -> None:
    """An image undo step holding the pixels as they are (see the module docstring). Not in ``blender -b``: it has
    no undo stack (and Blender crashes when an image undo step is pushed without one)."""
    if bpy.app.background:
        return
    try:
        with bpy.context.temp_override(edit_image=image):
            bpy.ops.image.invert(invert_r=False, invert_g=False, invert_b=False, invert_a=False)
    except (RuntimeError, TypeError):  # no undo stack to write to (some contexts): the edit still goes ahead
        pass


def _new_image(p: Plan, source: bpy.types.Image) -> bpy.types.Image:
    w, h = p.size
    img = bpy.data.images.get(p.result)
    if img is not None and img.get(SOURCE_KEY) == source.name and img.is_float == p.is_float:  # an earlier result: reuse
        if tuple(img.size) != (w, h):
            img.scale(w, h)
        return img
    img = bpy.data.images.new(p.result, w, h, alpha=True, float_buffer=p.is_float)
    img[SOURCE_KEY] = source.name
    return img


def finish(p: Plan, out: FrameResult) -> bpy.types.Image:
    """Write the backend's answer (main thread): into the new image, or over the image's pixels."""
    source = bpy.data.images.get(p.image)
    if source is None:
        raise FrameError(f"the image {p.image!r} was removed while it was being stylized")
    px = _pixels_out(p, out)
    if p.mode == "REPLACE":
        img = source
        if tuple(img.size) != p.size:
            raise FrameError(f"the image {p.image!r} changed size while it was being stylized: run Stylize Image again")
        _record_for_undo(img)
        _write(img, px)
        if img.packed_file is not None:  # keep the packed copy (what the .blend saves) in step with the pixels
            img.pack()
    else:
        img = _new_image(p, source)
        _write(img, px)
        img.pack()  # the pixels live in the .blend: saved with it, and kept by undo and redo
    return img


def _write(img: bpy.types.Image, px: np.ndarray) -> None:
    img.pixels.foreach_set(np.ascontiguousarray(px[..., : img.channels], np.float32).ravel())
    img.update()


def message(p: Plan, img: bpy.types.Image, seconds: float) -> str:
    w, h = p.size
    where = f"into the new image {img.name!r}" if p.mode == "NEW" else "in place (Ctrl-Z undoes it)"
    msg = f"AdaIN: image {p.image!r} ({w}×{h}) stylized in {seconds:.1f} s, {where}"
    if p.mode == "REPLACE" and img.packed_file is None and img.filepath:
        msg += "; Image > Save writes it to its file"
    if p.view is not None:
        for warning in colour.check_view(p.view):
            msg += f" (warning: {warning})"
    return msg


def show(context: bpy.types.Context, img: bpy.types.Image) -> None:
    """Show the result in the Image Editor the operator ran from."""
    space = getattr(context, "space_data", None)
    if space is not None and getattr(space, "type", "") == "IMAGE_EDITOR":
        space.image = img
        if context.area is not None:
            context.area.tag_redraw()
