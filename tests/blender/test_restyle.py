"""Restyle Last Render in real Blender: the last frame stylized again with changed slots, without rendering,
through a real backend subprocess (the shipped decoder). The operator runs as from a script (``execute``, which
waits); the UI's modal path runs the same ``restyle.start``/``finish`` with the task polled from a timer."""

from __future__ import annotations

import time
from pathlib import Path

import bpy
import numpy as np
import pytest

from tests.blender.scene import fresh_scene, read_png, render_still, set_slot
from tests.blender.test_render import STYLE_COOL, STYLE_WARM

from addon import restyle  # isort: skip  (scene.py put the repository on sys.path)
from addon.session import SESSION  # isort: skip
from addon.frames import FrameCancelledError, FrameError  # isort: skip


def _restyled_png(scene: bpy.types.Scene, path: Path) -> np.ndarray:
    """The restyle image as the render would be written: through the scene's view transform, 8 bits."""
    bpy.data.images[restyle.IMAGE].save_render(str(path), scene=scene)
    return read_png(path)


def test_restyle_gives_what_a_new_render_with_the_changed_slots_gives(model_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=128, height=96, view="AgX")
    set_slot(scene, 0, "Warm", "MATERIALS", STYLE_WARM, ("Red",))
    set_slot(scene, 1, "Cool", "OBJECTS", STYLE_COOL, ("Sphere",))
    first = render_still(scene, tmp_path / "first.png")
    assert SESSION.status.ok, SESSION.status.message
    assert [(rl.scene, rl.frame) for rl in SESSION.last_render] == [(scene.name, 1)]

    # change styles, a slot's kind of target and an alpha, then restyle: no render
    set_slot(scene, 0, "Warm", "OBJECTS", STYLE_COOL, ("Cube",))
    set_slot(scene, 1, "Cool", "MATERIALS", STYLE_WARM, ("Blue",))
    scene.adain.slots[1].alpha = 0.6
    renders_before = list(SESSION.status.stylized_frames)
    assert bpy.ops.adain.restyle() == {"FINISHED"}
    assert SESSION.status.stylized_frames == renders_before, "restyling must not render"
    restyled = _restyled_png(scene, tmp_path / "restyled.png")

    again = render_still(scene, tmp_path / "again.png")  # the same slots, rendered
    assert SESSION.status.ok, SESSION.status.message
    diff = np.abs(restyled - again)
    assert diff.max() <= 2, f"restyle differs from a render with the same slots by up to {diff.max()}/255"
    assert np.abs(restyled - first).mean() > 2.0, "the changed slots do not show"


def test_restyle_of_an_animation_frame_and_its_limits(model_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=64, height=48)
    set_slot(scene, 0, "Cube", "OBJECTS", STYLE_WARM, ("Cube",))
    scene.frame_start, scene.frame_end = 1, 2
    scene.render.filepath = str(tmp_path / "anim_")
    bpy.ops.render.render(animation=True)
    assert SESSION.status.ok, SESSION.status.message
    assert [rl.frame for rl in SESSION.last_render] == [2]
    assert set(SESSION.last_render[0].crypto) == {"Object"}, "an animation keeps only the masks its slots used"

    scene.adain.slots[0].alpha = 0.5  # same kind of target: works
    assert bpy.ops.adain.restyle() == {"FINISHED"}
    scene.adain.slot_passes = True  # per-slot passes are not shown by a restyle: not asked of the backend either
    assert not any(job.slot_passes for job in restyle.plan(scene).jobs)
    set_slot(scene, 0, "Red", "MATERIALS", STYLE_WARM, ("Red",))  # material masks were not kept: say so
    with pytest.raises(RuntimeError, match=r"kept no Cryptomatte Material masks.*render the frame again"):
        bpy.ops.adain.restyle()
    scene.adain.enabled = False
    with pytest.raises(FrameError, match="AdaIN is off"):
        restyle.plan(scene)
    scene.adain.enabled = True
    other = bpy.data.scenes.new("Other")
    with pytest.raises(FrameError, match="last render was of scene"):
        restyle.plan(other)


def test_cancelled_restyle_leaves_the_backend_usable(model_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=128, height=96)
    set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    render_still(scene, tmp_path / "first.png")
    with SESSION.client_lock():  # a render is using the backend connection, so the restyle must wait for it...
        _plan, task = restyle.start(scene)
        time.sleep(0.3)
        assert not task.done()
        task.cancel()  # ...and Esc (the modal operator passes it on) ends the wait
        assert task.wait(5)
    with pytest.raises(FrameCancelledError):
        task.result()
    assert bpy.ops.adain.restyle() == {"FINISHED"}  # the lock and the connection were given back
    render_still(scene, tmp_path / "after.png")
    assert SESSION.status.ok, SESSION.status.message


def test_nothing_to_restyle_before_a_render(identity_backend: str) -> None:
    scene = fresh_scene(width=32, height=24)
    set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    SESSION.last_render.clear()
    assert not bpy.ops.adain.restyle.poll()
    with pytest.raises(FrameError, match="nothing to restyle yet"):
        restyle.plan(scene)
    assert "Nothing to restyle" in restyle.describe_last()
