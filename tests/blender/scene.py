"""A small test scene, built from scratch in real Blender: two objects with different materials (bpy)."""

from __future__ import annotations

import sys
from pathlib import Path

import bpy
import numpy as np

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "adain" / "data" / "samples"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import addon  # noqa: E402 - the repository's add-on package, registered as the tests need it
from addon import render  # noqa: E402

_registered = False


def fresh_scene(width: int = 128, height: int = 96, samples: int = 8, view: str = "Standard") -> bpy.types.Scene:
    """Factory settings, then: cube (material "Red") on the left, sphere ("Blue") on the right, a grey floor,
    a sun, a camera; Cycles on the CPU; the add-on registered and set up (Cryptomatte, node group)."""
    global _registered
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if not _registered:
        addon.register()
        _registered = True
    render.install()  # factory settings may have re-registered Cycles' classes
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_depth = "8"
    scene.view_settings.view_transform = view
    scene.view_settings.look = "None"

    def material(name: str, rgb: tuple[float, float, float]) -> bpy.types.Material:
        m = bpy.data.materials.new(name)
        m.use_nodes = True
        m.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*rgb, 1.0)
        return m

    bpy.ops.mesh.primitive_plane_add(size=20, location=(0, 0, -1))
    bpy.context.object.name = "Floor"
    bpy.context.object.data.materials.append(material("Grey", (0.4, 0.4, 0.4)))
    bpy.ops.mesh.primitive_cube_add(size=1.8, location=(-1.4, 0, 0))
    bpy.context.object.name = "Cube"
    bpy.context.object.data.materials.append(material("Red", (0.8, 0.15, 0.1)))
    bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, location=(1.4, 0, 0))
    bpy.context.object.name = "Sphere"
    bpy.context.object.data.materials.append(material("Blue", (0.1, 0.25, 0.8)))
    bpy.ops.object.light_add(type="SUN", location=(0, 0, 5))
    bpy.context.object.data.energy = 3.0
    bpy.ops.object.camera_add(location=(0, -9.0, 0.8), rotation=(1.5, 0, 0))
    scene.camera = bpy.context.object
    world = bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs[0].default_value = (0.25, 0.25, 0.28, 1.0)
    assert bpy.ops.adain.setup() == {"FINISHED"}
    return scene


def style_image(name: str) -> bpy.types.Image:
    return bpy.data.images.load(str(SAMPLES / name), check_existing=True)


def set_slot(scene: bpy.types.Scene, index: int, name: str, target: str, style: str, things: tuple[str, ...] = ()) -> object:
    st = scene.adain
    while len(st.slots) <= index:
        st.slots.add()
    slot = st.slots[index]
    slot.name, slot.target, slot.enabled = name, target, True
    slot.styles.clear()
    slot.styles.add().image = style_image(style)
    slot.targets.clear()
    for t in things:
        item = slot.targets.add()
        if target == "MATERIALS":
            item.material = bpy.data.materials[t]
        else:
            item.object = bpy.data.objects[t]
    return slot


def render_still(scene: bpy.types.Scene, path: Path) -> np.ndarray:
    """Render with F12 semantics (write_still) and return the written 8-bit file as (H, W, 3) uint8, top row first."""
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return read_png(path)


def read_png(path: Path) -> np.ndarray:
    img = bpy.data.images.load(str(path), check_existing=False)
    img.colorspace_settings.name = "Non-Color"
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    return np.round(px.reshape(h, w, 4)[::-1, :, :3] * 255).astype(np.int16)


def object_box(scene: bpy.types.Scene, name: str, half: float = 0.08) -> tuple[slice, slice]:
    """Rows and columns of a small box around the object's centre in the image (top row first)."""
    from bpy_extras.object_utils import world_to_camera_view

    co = world_to_camera_view(scene, scene.camera, bpy.data.objects[name].location)
    w, h = scene.render.resolution_x, scene.render.resolution_y
    cx, cy = int(co.x * w), int((1 - co.y) * h)
    dx, dy = max(2, int(half * w)), max(2, int(half * h))
    return slice(cy - dy, cy + dy), slice(cx - dx, cx + dx)


def group_factor(scene: bpy.types.Scene, value: float) -> None:
    tree = scene.compositing_node_group if bpy.app.version >= (5, 0, 0) else scene.node_tree
    tree.nodes["AdaIN Stylize"].inputs["Factor"].default_value = value


def movie_output(scene: bpy.types.Scene, on: bool) -> None:
    """A movie (FFmpeg) output, or back to 8-bit PNG."""
    f = scene.render.image_settings
    if hasattr(f, "media_type"):  # Blender 5.0
        f.media_type = "VIDEO" if on else "IMAGE"
    f.file_format = "FFMPEG" if on else "PNG"
