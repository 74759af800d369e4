"""The sample styles bundled with the add-on, in real Blender: Set up gives a first slot with one, so the first
F12 is stylized; every sample loads; the images are packed, so a saved file renders without the add-on's copy."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest

from tests.blender.scene import fresh_scene, render_still

from addon import samples  # isort: skip  (scene.py put the repository on sys.path)
from addon.session import SESSION  # isort: skip


def test_set_up_alone_gives_a_stylized_first_render(model_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=96, height=72)  # factory settings, then only "Set up AdaIN"
    slot = scene.adain.slots[0]
    assert slot.target == "OTHER" and len(slot.styles) == 1
    img = slot.styles[0].image
    assert img is not None and img.packed_file is not None and samples.by_key(samples.DEFAULT).title in img.name
    stylized = render_still(scene, tmp_path / "first.png")
    assert SESSION.status.ok, SESSION.status.message
    scene.adain.enabled = False
    plain = render_still(scene, tmp_path / "plain.png")
    assert np.abs(stylized - plain).mean() > 3.0


def test_every_sample_loads_into_a_slot_once(identity_backend: str) -> None:
    scene = fresh_scene(width=32, height=24)
    slot = scene.adain.slots[0]
    for sample in samples.SAMPLES:
        assert bpy.ops.adain.style_sample(index=0, sample=sample.key) == {"FINISHED"}
    images = [s.image for s in slot.styles]
    assert len(images) == len(samples.SAMPLES)  # the default was in the slot already: not added twice
    assert len({i.name for i in images}) == len(samples.SAMPLES)
    for img in images:
        assert img.packed_file is not None and img.size[0] > 0 and img.size[1] > 0
    with pytest.raises(RuntimeError, match="no style slot 7"):
        bpy.ops.adain.style_sample(index=7, sample=samples.DEFAULT)


def test_a_saved_file_keeps_its_sample_style(identity_backend: str, tmp_path: Path) -> None:
    fresh_scene(width=32, height=24)
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    img = bpy.context.scene.adain.slots[0].styles[0].image
    assert img is not None and img.packed_file is not None and len(bytes(img.packed_file.data)) > 10_000
    render_still(bpy.context.scene, tmp_path / "out.png")
    assert SESSION.status.ok, SESSION.status.message
