"""The add-on's settings: preferences (the backend, its install) and per-scene style slots (bpy)."""

from __future__ import annotations

import functools
import os
import textwrap
from pathlib import Path

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from adain_wire.options import COLOR_MODES, DEFAULT_ENDPOINT, STYLE_SIZES

from . import backend_install, install_state

ADDON_ID = __package__ or "adain_stylize"
ADDON_DIR = Path(__file__).resolve().parent

TARGET_ITEMS = [
    ("MATERIALS", "Materials", "Pixels whose surface uses one of the listed materials (Cryptomatte)"),
    ("OBJECTS", "Objects", "Pixels of the listed objects or of the objects in a collection (Cryptomatte)"),
    ("OTHER", "Everything else", "Pixels no other slot covers"),
]
PRESERVE_ITEMS = [
    ("none", "Style colours", "Take colours from the style"),
    ("coral", "Keep colours", "Recolour the style to the render's colours first (CORAL)"),
    ("luminance", "Luminance only", "Stylize luminance only, keep the render's colour"),
]
assert tuple(i[0] for i in PRESERVE_ITEMS) == COLOR_MODES


class ADAIN_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    mode: EnumProperty(  # type: ignore[valid-type]
        name="Backend",
        items=[
            ("LOCAL", "Start local backend", "Run the backend as a subprocess of Blender: the one Install Backend "
             "installed, or the command under Advanced"),
            ("REMOTE", "Connect to backend", "Connect to a backend running elsewhere (another machine or a service)"),
        ],
        default="LOCAL",
    )  # fmt: skip
    endpoint: StringProperty(name="Address", default=DEFAULT_ENDPOINT)  # type: ignore[valid-type]
    command: StringProperty(  # type: ignore[valid-type]
        name="Command",
        description="For experts: how to start the backend instead of the installed one, a Python that has the adain "
        "backend installed, then -m backend (empty: the backend Install Backend installed)",
        default="",
    )
    python: StringProperty(  # type: ignore[valid-type]
        name="Python",
        description="The Python 3.11 that Install Backend makes the backend's environment with (empty: Blender's own, "
        "else python3.11 on PATH)",
        subtype="FILE_PATH",
    )
    show_advanced: BoolProperty(name="Advanced", default=False)  # type: ignore[valid-type]
    device: EnumProperty(  # type: ignore[valid-type]
        name="Device", items=[("auto", "Auto", "GPU when there is one"), ("cpu", "CPU", ""), ("cuda", "CUDA GPU", "")]
    )
    server_public_key: StringProperty(name="Server public key", subtype="FILE_PATH")  # type: ignore[valid-type]
    client_secret_key: StringProperty(name="Client secret key", subtype="FILE_PATH")  # type: ignore[valid-type]

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "mode", expand=True)
        if self.mode == "LOCAL":
            draw_installed(layout.box(), self)
            layout.prop(self, "device")
            icon = "DISCLOSURE_TRI_DOWN" if self.show_advanced else "DISCLOSURE_TRI_RIGHT"
            layout.prop(self, "show_advanced", icon=icon, emboss=False)
            if self.show_advanced:
                col = layout.column()
                col.prop(self, "command")
                col.prop(self, "python")
                col.prop(self, "endpoint")
        else:
            layout.prop(self, "endpoint")
            layout.prop(self, "server_public_key")
            layout.prop(self, "client_secret_key")
        row = layout.row()
        row.operator("adain.backend_check", icon="CHECKMARK")
        row.operator("adain.backend_stop", icon="CANCEL")
        row.operator("adain.backend_release", icon="TRASH")
        if os.environ.get("ADAIN_BACKEND") or os.environ.get("ADAIN_BACKEND_COMMAND"):
            layout.label(text="ADAIN_BACKEND / ADAIN_BACKEND_COMMAND are set and override these settings", icon="INFO")


def install_root(create: bool = False) -> Path:
    """The extension's user folder, where *Install Backend* puts the backend's environment (a folder in Blender's
    user config when the add-on is not installed as an extension, e.g. run from the repository by the tests)."""
    if ADDON_ID.startswith("bl_ext."):
        return Path(bpy.utils.extension_path_user(ADDON_ID, path="", create=create))
    return Path(bpy.utils.user_resource("CONFIG", path="adain_stylize", create=create))


@functools.cache
def bundled_version() -> str | None:
    """The version of the backend wheel in this add-on (None: an add-on run from source has none)."""
    try:
        return backend_install.wheel_version(backend_install.bundled_wheel(ADDON_DIR))
    except backend_install.InstallError:
        return None


def draw_installed(box: bpy.types.UILayout, prefs: ADAIN_AddonPreferences) -> None:
    """The preferences' Install Backend box: progress while installing, else what is installed, Reinstall and Remove."""
    state = install_state.STATE
    if state.install is not None:
        p = state.install.progress
        box.progress(factor=p.fraction, type="BAR", text=p.line()[:90])
        box.label(text="Installing the backend… Esc cancels", icon="INFO")
        return
    info = backend_install.installed(install_root())
    if info is not None:
        box.label(text=f"Backend installed: {info.describe()}", icon="CHECKMARK")
        version = bundled_version()
        if version is not None and info.backend != version:
            box.label(text=f"This add-on carries backend {version}: Reinstall to use it", icon="ERROR")
        row = box.row()
        row.operator("adain.backend_install", text="Reinstall", icon="FILE_REFRESH")
        row.operator("adain.backend_remove", text="Remove", icon="TRASH")
    else:
        box.label(text="No backend installed. Install Backend downloads PyTorch: about 1 GB (3 GB with CUDA)")
        box.operator("adain.backend_install", icon="IMPORT")
    if state.message:
        for i, line in enumerate(textwrap.wrap(state.message, 90)):
            box.label(text=line, icon=("ERROR" if state.failed else "INFO") if i == 0 else "BLANK1")
    log = install_root() / backend_install.LOG_NAME
    if log.is_file():
        box.operator("wm.path_open", text="Open the install log", icon="TEXT").filepath = str(log)
    if prefs.command.strip():
        box.label(text="The command under Advanced is used instead of the installed backend", icon="INFO")


class ADAIN_StyleItem(bpy.types.PropertyGroup):
    image: PointerProperty(name="Style", type=bpy.types.Image)  # type: ignore[valid-type]
    weight: FloatProperty(name="Weight", default=1.0, min=0.0, soft_max=10.0)  # type: ignore[valid-type]


class ADAIN_TargetItem(bpy.types.PropertyGroup):
    object: PointerProperty(name="Object", type=bpy.types.Object)  # type: ignore[valid-type]
    material: PointerProperty(name="Material", type=bpy.types.Material)  # type: ignore[valid-type]
    collection: PointerProperty(name="Collection", type=bpy.types.Collection)  # type: ignore[valid-type]


class ADAIN_StyleSlot(bpy.types.PropertyGroup):
    name: StringProperty(name="Name", default="Slot")  # type: ignore[valid-type]
    enabled: BoolProperty(name="Enabled", default=True)  # type: ignore[valid-type]
    target: EnumProperty(name="Target", items=TARGET_ITEMS, default="OTHER")  # type: ignore[valid-type]
    targets: CollectionProperty(type=ADAIN_TargetItem)  # type: ignore[valid-type]
    styles: CollectionProperty(type=ADAIN_StyleItem)  # type: ignore[valid-type]
    alpha: FloatProperty(  # type: ignore[valid-type]
        name="Alpha", description="Style strength (0: the render, 1: fully stylized); keyframable",
        default=1.0, min=0.0, max=1.0, subtype="FACTOR",
    )  # fmt: skip
    preserve_color: EnumProperty(name="Colour", items=PRESERVE_ITEMS, default="none")  # type: ignore[valid-type]
    style_size: IntProperty(  # type: ignore[valid-type]
        name="Style size", description="This slot's style scale: the shorter side, in pixels, its style images are "
        "resized to before their statistics are taken (0: the scene's Style size)", default=0, min=0, max=STYLE_SIZES[1],
    )  # fmt: skip


def enable_motion_vectors(scene: bpy.types.Scene) -> None:
    """Cycles' Vector pass on every view layer: what temporal smoothing follows."""
    for vl in scene.view_layers:
        vl.use_pass_vector = True


def _temporal_changed(self: ADAIN_SceneSettings, context: bpy.types.Context) -> None:
    if self.temporal > 0.0 and context.scene is not None:
        enable_motion_vectors(context.scene)


class ADAIN_SceneSettings(bpy.types.PropertyGroup):
    enabled: BoolProperty(  # type: ignore[valid-type]
        name="Stylize renders", description="Stylize every render of this scene, Cycles, EEVEE or Workbench (F12, Ctrl-F12, -b)",
        default=False,
    )  # fmt: skip
    alpha: FloatProperty(  # type: ignore[valid-type]
        name="Global alpha", description="Multiplies every slot's alpha; keyframable", default=1.0, min=0.0, max=1.0,
        subtype="FACTOR",
    )  # fmt: skip
    slots: CollectionProperty(type=ADAIN_StyleSlot)  # type: ignore[valid-type]
    active_slot: IntProperty(default=0)  # type: ignore[valid-type]
    slot_passes: BoolProperty(  # type: ignore[valid-type]
        name="Per-slot passes", description="Also write each slot's styles over the whole frame as passes 'AdaIN <slot>'",
        default=False,
    )  # fmt: skip
    style_size: IntProperty(  # type: ignore[valid-type]
        name="Style size", description="Shorter side of the style images, in pixels (style scale)", default=512,
        min=64, max=2048,
    )  # fmt: skip
    tile: IntProperty(  # type: ignore[valid-type]
        name="Tile", description="Process large frames in tiles of this size (0: whole frame)", default=0, min=0, max=8192
    )
    temporal: FloatProperty(  # type: ignore[valid-type]
        name="Temporal smoothing",
        description="Animations: blend each frame with the previous stylized frame, moved along Cycles' motion "
        "vectors, where the render shows the same surface (less flicker and swimming; 0: off). Turns on the Vector "
        "pass; needs Motion Blur off",
        default=0.0, min=0.0, max=0.9, subtype="FACTOR", update=_temporal_changed,
    )  # fmt: skip
    last_status: StringProperty(name="Status", default="")  # type: ignore[valid-type]


CLASSES = (ADAIN_AddonPreferences, ADAIN_StyleItem, ADAIN_TargetItem, ADAIN_StyleSlot, ADAIN_SceneSettings)


def register_props() -> None:
    bpy.types.Scene.adain = PointerProperty(type=ADAIN_SceneSettings)


def unregister_props() -> None:
    del bpy.types.Scene.adain
