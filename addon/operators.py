"""Operators: thin wrappers that gather inputs, call the bpy-free parts, and report errors (bpy)."""

from __future__ import annotations

import time
from typing import Any

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from adain_wire.manager import BackendUnavailableError

from . import colour, compositor, engine_hook, samples, session_backend
from .frames import FrameCancelledError, FrameError
from .modal_task import ModalTask
from .properties import enable_motion_vectors
from .session import SESSION


def _settings(context: bpy.types.Context) -> Any:
    return context.scene.adain


def enable_masks(scene: bpy.types.Scene) -> None:
    """Cryptomatte object and material passes on every view layer (what slot masks are made from)."""
    for vl in scene.view_layers:
        vl.use_pass_cryptomatte_object = True
        vl.use_pass_cryptomatte_material = True
        vl.pass_cryptomatte_depth = max(vl.pass_cryptomatte_depth, 6)


class ADAIN_OT_setup(bpy.types.Operator):
    """Turn stylization on: Cryptomatte masks, and with Cycles the AdaIN Stylize node group in the compositor (an
    engine AdaIN cannot stylize is switched to Cycles)"""

    bl_idname = "adain.setup"
    bl_label = "Set up AdaIN"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        if scene.render.engine != "CYCLES" and scene.render.engine not in engine_hook.ENGINES:
            scene.render.engine = "CYCLES"
            self.report({"INFO"}, "Render engine set to Cycles (AdaIN stylizes Cycles, EEVEE and Workbench renders)")
        enable_masks(scene)
        if scene.adain.temporal > 0.0:
            enable_motion_vectors(scene)
        if scene.render.engine == "CYCLES":  # (other engines are stylized after the compositor: no node needed)
            try:
                compositor.install(scene)
            except RuntimeError as e:
                self.report({"ERROR"}, str(e))
                return {"CANCELLED"}
        compositor.sync_engine(scene)  # unmute a node muted while the scene rendered with another engine
        colour.prepare()
        st = _settings(context)
        st.enabled = True
        if not st.slots:  # a first slot with a sample style: the next F12 is stylized
            slot = st.slots.add()
            slot.name, slot.target = "Everything", "OTHER"
            try:
                slot.styles.add().image = load_sample(samples.DEFAULT)
            except RuntimeError as e:
                self.report({"WARNING"}, f"no sample style added: {e}")
        return {"FINISHED"}


def load_sample(key: str) -> bpy.types.Image:
    """The bundled sample style as an image packed into the .blend (so the file renders anywhere, a farm too).
    Raises RuntimeError when the add-on's copy of it is missing."""
    sample = samples.by_key(key)
    name = f"AdaIN {sample.title}"
    img = bpy.data.images.get(name)
    if img is not None and img.packed_file is not None:
        return img
    if not sample.path.is_file():
        raise RuntimeError(f"the sample style {sample.file} is missing from the add-on: reinstall it")
    img = bpy.data.images.load(str(sample.path), check_existing=False)
    img.name = name
    img.pack()
    return img


def _sample_items(self: Any, context: Any) -> list[tuple[str, str, str]]:
    return [(s.key, s.title, f"{s.title} (public domain; bundled with the add-on)") for s in samples.SAMPLES]


class ADAIN_OT_style_sample(bpy.types.Operator):
    """Add one of the sample styles bundled with the add-on (public-domain paintings) to the slot"""

    bl_idname = "adain.style_sample"
    bl_label = "Add Sample Style"
    bl_options = {"REGISTER", "UNDO"}
    bl_property = "sample"
    index: IntProperty()  # type: ignore[valid-type]
    sample: EnumProperty(name="Sample", items=_sample_items)  # type: ignore[valid-type]

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        slots = _settings(context).slots
        if not 0 <= self.index < len(slots):
            self.report({"ERROR"}, f"no style slot {self.index}")
            return {"CANCELLED"}
        try:
            img = load_sample(self.sample)
        except RuntimeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        slot = slots[self.index]
        if any(s.image == img for s in slot.styles):
            self.report({"INFO"}, f"{img.name!r} is already in slot {slot.name!r}")
            return {"FINISHED"}
        item = next((s for s in slot.styles if s.image is None), None) or slot.styles.add()
        item.image = img
        return {"FINISHED"}


class ADAIN_OT_slot_add(bpy.types.Operator):
    """Add a style slot"""

    bl_idname = "adain.slot_add"
    bl_label = "Add Style Slot"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        st = _settings(context)
        slot = st.slots.add()
        slot.name = f"Slot {len(st.slots)}"
        slot.target = "MATERIALS" if len(st.slots) > 1 else "OTHER"
        slot.styles.add()
        st.active_slot = len(st.slots) - 1
        enable_masks(context.scene)
        return {"FINISHED"}


class ADAIN_OT_slot_remove(bpy.types.Operator):
    """Remove this style slot"""

    bl_idname = "adain.slot_remove"
    bl_label = "Remove Style Slot"
    bl_options = {"REGISTER", "UNDO"}
    index: IntProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        st = _settings(context)
        if not 0 <= self.index < len(st.slots):
            self.report({"ERROR"}, f"no style slot {self.index}")
            return {"CANCELLED"}
        st.slots.remove(self.index)
        st.active_slot = min(st.active_slot, max(len(st.slots) - 1, 0))
        return {"FINISHED"}


class ADAIN_OT_item_add(bpy.types.Operator):
    """Add a style or a target to a slot"""

    bl_idname = "adain.item_add"
    bl_label = "Add"
    bl_options = {"REGISTER", "UNDO"}
    index: IntProperty()  # type: ignore[valid-type]
    kind: StringProperty(default="styles")  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        slot = _settings(context).slots[self.index]
        getattr(slot, self.kind).add()
        return {"FINISHED"}


class ADAIN_OT_item_remove(bpy.types.Operator):
    """Remove a style or a target from a slot"""

    bl_idname = "adain.item_remove"
    bl_label = "Remove"
    bl_options = {"REGISTER", "UNDO"}
    index: IntProperty()  # type: ignore[valid-type]
    item: IntProperty()  # type: ignore[valid-type]
    kind: StringProperty(default="styles")  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        getattr(_settings(context).slots[self.index], self.kind).remove(self.item)
        return {"FINISHED"}


class ADAIN_OT_style_load(bpy.types.Operator):
    """Load style images from disk into the slot"""

    bl_idname = "adain.style_load"
    bl_label = "Load Style Images"
    bl_options = {"REGISTER", "UNDO"}
    index: IntProperty()  # type: ignore[valid-type]
    filepath: StringProperty(subtype="FILE_PATH")  # type: ignore[valid-type]
    directory: StringProperty(subtype="DIR_PATH")  # type: ignore[valid-type]
    files: bpy.props.CollectionProperty(type=bpy.types.OperatorFileListElement)  # type: ignore[valid-type]
    filter_image: bpy.props.BoolProperty(default=True, options={"HIDDEN"})  # type: ignore[valid-type]

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        import os

        slot = _settings(context).slots[self.index]
        paths = [os.path.join(self.directory, f.name) for f in self.files if f.name] or [self.filepath]
        for path in paths:
            try:
                img = bpy.data.images.load(path, check_existing=True)
            except RuntimeError as e:
                self.report({"ERROR"}, f"cannot load style image {path}: {e}")
                return {"CANCELLED"}
            item = next((s for s in slot.styles if s.image is None), None) or slot.styles.add()
            item.image = img
        return {"FINISHED"}


class ADAIN_OT_backend_check(bpy.types.Operator):
    """Connect to the backend (starting the local one if configured) and show what it runs on"""

    bl_idname = "adain.backend_check"
    bl_label = "Check Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            b = session_backend.backend()
            b.client()
        except BackendUnavailableError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"AdaIN backend: {b.describe()}")
        return {"FINISHED"}


class ADAIN_OT_backend_stop(bpy.types.Operator):
    """Stop the local backend (frees its GPU memory entirely)"""

    bl_idname = "adain.backend_stop"
    bl_label = "Stop Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        session_backend.shutdown()
        self.report({"INFO"}, "AdaIN backend stopped")
        return {"FINISHED"}


class ADAIN_OT_backend_release(bpy.types.Operator):
    """Ask the backend to free the GPU memory it keeps cached"""

    bl_idname = "adain.backend_release"
    bl_label = "Release GPU Memory"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            reserved = session_backend.backend().release()
        except BackendUnavailableError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"AdaIN backend released memory ({reserved / 2**20:.0f} MiB still reserved)")
        return {"FINISHED"}


class ADAIN_OT_restyle(ModalTask, bpy.types.Operator):
    """Stylize the last rendered frame again with the style slots as they are now, without rendering it again
    (into the image "AdaIN Restyle"; Esc cancels)"""

    bl_idname = "adain.restyle"
    bl_label = "Restyle Last Render"
    CANCEL_TEXT = "AdaIN: cancelling the restyle…"

    _plan: Any = None
    _t0 = 0.0

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not SESSION.last_render:
            cls.poll_message_set("Render a frame with AdaIN on first (F12)")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:  # scripts and blender -b: blocking
        from . import restyle

        t0 = time.perf_counter()
        try:
            plan, task = restyle.start(context.scene)
            task.wait()
            images = restyle.finish(plan, task.result())
        except (FrameError, BackendUnavailableError) as e:
            self.report({"ERROR"}, f"AdaIN: {e}")
            return {"CANCELLED"}
        self.report({"INFO"}, restyle.message(plan, images, time.perf_counter() - t0))
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:  # the UI: stays responsive, Esc cancels
        from . import restyle

        self._t0 = time.perf_counter()
        try:
            self._plan, task = restyle.start(context.scene)
        except (FrameError, BackendUnavailableError) as e:
            self.report({"ERROR"}, f"AdaIN: {e}")
            return {"CANCELLED"}
        return self._run_modal(context, task)

    def _finish(self, context: bpy.types.Context) -> set[str]:
        from . import restyle

        assert self._task is not None
        try:
            images = restyle.finish(self._plan, self._task.result())
        except FrameCancelledError:
            self.report({"WARNING"}, "AdaIN: restyle cancelled")
            return {"CANCELLED"}
        except (FrameError, BackendUnavailableError) as e:
            self.report({"ERROR"}, f"AdaIN: {e}")
            return {"CANCELLED"}
        except Exception as e:  # a bug of ours: say so instead of leaving the operator hanging
            self.report({"ERROR"}, f"AdaIN: internal error while restyling ({type(e).__name__}: {e})")
            return {"CANCELLED"}
        restyle.show(context, images)
        self.report({"INFO"}, restyle.message(self._plan, images, time.perf_counter() - self._t0))
        return {"FINISHED"}


CLASSES = (
    ADAIN_OT_setup,
    ADAIN_OT_slot_add,
    ADAIN_OT_slot_remove,
    ADAIN_OT_item_add,
    ADAIN_OT_item_remove,
    ADAIN_OT_style_load,
    ADAIN_OT_style_sample,
    ADAIN_OT_backend_check,
    ADAIN_OT_backend_stop,
    ADAIN_OT_backend_release,
    ADAIN_OT_restyle,
)
