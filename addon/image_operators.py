"""Stylize Image, the operator and its entries in the Image Editor's Image menu (bpy); the work is ``stylize_image``."""

from __future__ import annotations

import time
from typing import Any

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from adain_wire.manager import BackendUnavailableError

from .frames import FrameCancelledError, FrameError
from .modal_task import ModalTask

MODE_ITEMS = [
    ("NEW", "New image", "Write the result into a new image, '<image> AdaIN' (packed into the .blend)"),
    ("REPLACE", "Replace pixels", "Write the result over the image's own pixels (Ctrl-Z undoes it)"),
]


def _target(op: Any, context: bpy.types.Context) -> bpy.types.Image | None:
    if op.image:
        return bpy.data.images.get(op.image)
    image = getattr(context, "edit_image", None)
    if image is None:
        space = getattr(context, "space_data", None)
        image = getattr(space, "image", None) if getattr(space, "type", "") == "IMAGE_EDITOR" else None
    return image


class ADAIN_OT_stylize_image(ModalTask, bpy.types.Operator):
    """Stylize an image with a style slot's styles, weights, alpha and colour mode, into a new image or over its own
    pixels (no render; Esc cancels)"""

    bl_idname = "adain.stylize_image"
    bl_label = "Stylize Image"
    bl_options = {"REGISTER", "UNDO"}

    image: StringProperty(  # type: ignore[valid-type]
        name="Image",
        description="Name of the image to stylize (empty: the image shown in the Image Editor)",
        options={"SKIP_SAVE"},
    )
    slot: IntProperty(  # type: ignore[valid-type]
        name="Slot",
        description="Index of the scene's style slot to use (-1: the active slot)",
        default=-1,
        min=-1,
        options={"SKIP_SAVE"},
    )
    mode: EnumProperty(name="Result", items=MODE_ITEMS, default="NEW")  # type: ignore[valid-type]
    new_name: StringProperty(  # type: ignore[valid-type]
        name="New image name", description="Name of the new image (empty: '<image> AdaIN')", options={"SKIP_SAVE"}
    )

    CANCEL_TEXT = "AdaIN: cancelling Stylize Image…"

    _plan: Any = None
    _t0 = 0.0

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and hasattr(context.scene, "adain")

    def _start(self, context: bpy.types.Context) -> bool:
        from . import stylize_image

        image = _target(self, context)
        if image is None:
            self.report({"ERROR"}, f"AdaIN: no image {self.image!r}" if self.image else "AdaIN: no image to stylize: open one")
            return False
        self._t0 = time.perf_counter()
        try:
            self._plan, self._task = stylize_image.start(context.scene, image, self.slot, self.mode, self.new_name)
        except (FrameError, BackendUnavailableError) as e:
            self.report({"ERROR"}, f"AdaIN: {e}")
            return False
        return True

    def _finish(self, context: bpy.types.Context) -> set[str]:
        from . import stylize_image

        assert self._task is not None
        try:
            img = stylize_image.finish(self._plan, self._task.result())
        except FrameCancelledError:
            self.report({"WARNING"}, "AdaIN: Stylize Image cancelled; the image is unchanged")
            return {"CANCELLED"}
        except (FrameError, BackendUnavailableError) as e:
            self.report({"ERROR"}, f"AdaIN: {e}")
            return {"CANCELLED"}
        except Exception as e:  # a bug of ours: say so instead of leaving the operator hanging
            self.report({"ERROR"}, f"AdaIN: internal error while stylizing the image ({type(e).__name__}: {e})")
            return {"CANCELLED"}
        stylize_image.show(context, img)
        self.report({"INFO"}, stylize_image.message(self._plan, img, time.perf_counter() - self._t0))
        return {"FINISHED"}

    def execute(self, context: bpy.types.Context) -> set[str]:  # scripts and blender -b: blocking
        if not self._start(context) or self._task is None:
            return {"CANCELLED"}
        self._task.wait()
        return self._finish(context)

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:  # the UI: stays responsive, Esc cancels
        if not self._start(context):
            return {"CANCELLED"}
        assert self._task is not None
        return self._run_modal(context, self._task)


def image_menu(self: Any, context: bpy.types.Context) -> None:
    """Entries in the Image Editor's Image menu."""
    layout = self.layout
    layout.separator()
    layout.operator_context = "INVOKE_DEFAULT"
    layout.operator(ADAIN_OT_stylize_image.bl_idname, text="AdaIN: Stylize into New Image", icon="IMAGE_DATA").mode = "NEW"
    layout.operator(ADAIN_OT_stylize_image.bl_idname, text="AdaIN: Stylize in Place").mode = "REPLACE"


def register_menu() -> None:
    bpy.types.IMAGE_MT_image.append(image_menu)


def unregister_menu() -> None:
    bpy.types.IMAGE_MT_image.remove(image_menu)


CLASSES = (ADAIN_OT_stylize_image,)
