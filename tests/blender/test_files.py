"""Saved .blend files in real Blender: what ``blender -b shot.blend -a`` does is load the file (``load_post``
handlers run) and render its frame range. The bpy module has no ``blender`` binary, so the file is opened with
``wm.open_mainfile`` and rendered with ``render.render(animation=True)``, the same two steps."""

from __future__ import annotations

from pathlib import Path

import bpy

from tests.blender.scene import fresh_scene, set_slot
from tests.blender.test_render import STYLE_WARM

from addon import compositor  # isort: skip  (scene.py put the repository on sys.path)
from addon.session import SESSION  # isort: skip

EEVEE = "BLENDER_EEVEE_NEXT" if bpy.app.version < (5, 0, 0) else "BLENDER_EEVEE"


def _node(scene: bpy.types.Scene) -> bpy.types.Node:
    tree = scene.compositing_node_group if bpy.app.version >= (5, 0, 0) else scene.node_tree
    return tree.nodes[compositor.NODE]


def test_a_saved_file_reopens_and_renders_its_animation_stylized(identity_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=64, height=48)
    set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    scene.frame_start, scene.frame_end = 1, 2
    scene.render.filepath = str(tmp_path / "frames" / "shot_")
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_homefile(use_empty=True)  # nothing of the scene left in memory
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    assert scene.adain.enabled and scene.adain.slots[0].styles[0].image is not None
    bpy.ops.render.render(animation=True)
    assert SESSION.status.ok, SESSION.status.message
    assert sorted(SESSION.status.stylized_frames) == [1, 2]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["shot_0001.png", "shot_0002.png"]


def test_a_file_saved_with_eevee_opens_with_the_adain_node_bypassed(tmp_path: Path) -> None:
    scene = fresh_scene(width=48, height=32)
    scene.render.engine = EEVEE  # in background mode no message bus runs, so only the file load can fix the node
    assert not _node(scene).mute
    blend = tmp_path / "eevee.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert _node(bpy.context.scene).mute
