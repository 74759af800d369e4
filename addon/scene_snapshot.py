"""Reading the scene at render time (bpy): the ``SceneSnapshot`` of a frame and its style images.

``snapshot(scene)`` runs in the render hook while the evaluated scene exists (keyframed alphas at this frame), and
in *Restyle Last Render* with the scene as it is now.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import bpy
import numpy as np

from adain_wire.options import STYLE_SIZES

from . import colour, compositor
from .frames import FrameError, SlotJob, StyleSource, style_source_from_file
from .render_maths import SceneSnapshot, SlotSnapshot, srgb_encode

ANIMATION_FLAGS = ("-a", "--render-anim")


def animation_job() -> bool:
    """Whether this is ``blender -b … -a``: a render farm's job, perhaps one chunk of a longer animation.

    (A render_init handler cannot tell a still from an animation; the command line can. In the UI an animation is
    one long run, which needs no seed.)"""
    return bpy.app.background and any(arg in ANIMATION_FLAGS for arg in sys.argv)


def job_progress(scene: bpy.types.Scene) -> str:
    """Where the current frame stands in a ``blender -b -a`` job ("2 of 6"; "" in any other render)."""
    return frame_place(scene) if animation_job() else ""


def frame_place(scene: bpy.types.Scene) -> str:
    """Where the current frame stands in the scene's frame range ("2 of 6")."""
    step = max(1, scene.frame_step)
    return f"{(scene.frame_current - scene.frame_start) // step + 1} of {(scene.frame_end - scene.frame_start) // step + 1}"


def snapshot(scene: bpy.types.Scene) -> SceneSnapshot:
    """The scene's AdaIN settings at its current frame; FrameError when they cannot be stylized as they are."""
    st = scene.adain
    view = colour.View.of(scene)
    if not st.enabled:
        return SceneSnapshot(scene.frame_current, False, view, scene=scene.name)
    slots = []
    for slot in st.slots:
        if not slot.enabled:
            continue
        job = slot_job(slot, st.alpha)
        names = frozenset(target_names(slot))
        if slot.target != "OTHER" and not names:
            raise FrameError(f"style slot {slot.name!r} lists no {slot.target.lower()}: add some or disable the slot")
        slots.append(SlotSnapshot(job, slot.target, names))
    if not slots:
        raise FrameError("AdaIN is on but no style slot is enabled: add a slot in Render properties > AdaIN Stylize")
    return SceneSnapshot(
        scene.frame_current, True, view, tuple(slots), bool(st.slot_passes), int(st.style_size), st.tile or None,
        scene=scene.name, temporal=float(st.temporal), motion_blur=bool(scene.render.use_motion_blur),
        warnings=tuple(compositor.output_warnings(getattr(scene, "original", scene))),
    )  # fmt: skip


def slot_job(slot: Any, global_alpha: float = 1.0) -> SlotJob:
    """A style slot's styles (with weights above 0), alpha (times ``global_alpha``), colour mode and style size as
    the backend gets them; FrameError when the slot cannot be stylized as it is."""
    styles = tuple((style_source(s.image), float(s.weight)) for s in slot.styles if s.image is not None and s.weight > 0)
    if not styles:
        raise FrameError(f"style slot {slot.name!r} has no style image with a weight above 0: add one or disable it")
    size = int(slot.style_size)
    if 0 < size < STYLE_SIZES[0]:
        raise FrameError(
            f"style slot {slot.name!r}: style size {size} is too small: use 0 (the scene's) or {STYLE_SIZES[0]} and up"
        )
    alpha = float(np.clip(slot.alpha * global_alpha, 0.0, 1.0))
    return SlotJob(slot.name, styles, alpha, slot.preserve_color, size or None)


def target_names(slot: Any) -> set[str]:
    """The names of the materials or objects (collections expanded) a slot lists."""
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


def style_source(img: bpy.types.Image) -> StyleSource:
    """A style image as the backend gets it: its file's bytes, its packed bytes, or its pixels (sRGB-encoded)."""
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
        px = px.copy()
        px[..., :3] = srgb_encode(px[..., :3])
    return StyleSource(key=f"pixels:{img.name}:{w}x{h}:{hash(px.tobytes())}", pixels=np.ascontiguousarray(px))
