"""Render-farm chunks with EEVEE (real Blender 4.5 and 5.0): ``blender -b f.blend -s S -e E -a`` first stylizes the
frames before its first one without writing them (``render.seed_history``, through the after-compositor hook), so
temporal smoothing along EEVEE's Vector pass starts from the same history as in one long run.

A tiny scene (EEVEE compiles its shaders on the first frame): the cube moving left to right, one slot over
everything, the real model's decoder."""

from __future__ import annotations

import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

from tests.blender.scene import fresh_scene, read_png, set_slot

from addon import render, temporal  # isort: skip  (scene.py put the repository on sys.path)
from addon.session import SESSION  # isort: skip

EEVEE = "BLENDER_EEVEE_NEXT" if bpy.app.version < (5, 0, 0) else "BLENDER_EEVEE"
STYLE = "style_wesnoth_painted_mountains.jpg"


def _scene(strength: float) -> bpy.types.Scene:
    scene = fresh_scene(width=48, height=36)
    scene.render.engine = EEVEE
    scene.eevee.taa_render_samples = 2
    set_slot(scene, 0, "Everything", "OTHER", STYLE)
    cube = bpy.data.objects["Cube"]
    for frame, x in ((-20, -3.0), (12, 1.0)):
        cube.location.x = x
        cube.keyframe_insert("location", index=0, frame=frame)
    scene.adain.temporal = strength
    assert all(vl.use_pass_vector for vl in scene.view_layers), "smoothing turns on the Vector pass"
    return scene


def _job(scene: bpy.types.Scene, folder: Path, first: int, last: int) -> dict[int, np.ndarray]:
    """What ``blender -b file.blend -s FIRST -e LAST -a`` renders (the add-on reads the job kind from sys.argv)."""
    scene.frame_start, scene.frame_end = first, last
    scene.frame_set(first)
    scene.render.filepath = str(folder / "f_")
    bpy.ops.render.render(animation=True)
    assert SESSION.status.ok, SESSION.status.message
    assert sorted(SESSION.status.stylized_frames) == list(range(first, last + 1)), "seed frames are not frames of the job"
    assert sorted(p.name for p in folder.iterdir()) == [f"f_{f:04d}.png" for f in range(first, last + 1)], (
        "seed frames are not written"
    )
    return {f: read_png(folder / f"f_{f:04d}.png") for f in range(first, last + 1)}


def test_an_eevee_farm_chunk_comes_out_as_in_one_long_run(model_backend: str, tmp_path: Path, monkeypatch) -> None:
    """Frames 1-6 in one job, and as the chunks 1-3 and 4-6: equal within 1/255 (4 seed frames at strength 0.2: each
    EEVEE frame costs seconds here, so the test keeps the seed short); without the seed, the second chunk's first
    frame is not smoothed and differs."""
    monkeypatch.setattr(sys, "argv", ["blender", "-b", "farm.blend", "-a"])
    assert bpy.app.background
    scene = _scene(0.2)
    assert temporal.seed_frames(0.2) == 4
    whole = _job(scene, tmp_path / "whole", 1, 6)
    chunks = {**_job(scene, tmp_path / "a", 1, 3), **_job(scene, tmp_path / "b", 4, 6)}
    worst = max(int(np.abs(whole[f] - chunks[f]).max()) for f in whole)
    assert worst <= 1, f"a chunk's frames differ from the long run's by up to {worst}/255"
    monkeypatch.setattr(sys, "argv", ["blender", "-b", "farm.blend"])  # not an -a job: no seed
    unseeded = _job(scene, tmp_path / "c", 4, 4)[4]
    differs = int(np.abs(unseeded - whole[4]).max())
    assert differs > 1, f"without the seed the chunk's first frame is not smoothed, yet it differs by {differs}/255 only"


def test_a_seed_frame_that_fails_leaves_the_first_frame_unsmoothed(
    dead_backend: str, tmp_path: Path, monkeypatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The seed's error is said once and the job goes on (here its frames fail too: no backend), without a seed
    frame in the job's status."""
    monkeypatch.setattr(sys, "argv", ["blender", "-b", "farm.blend", "-a"])
    scene = _scene(0.2)
    scene.frame_start, scene.frame_end = 4, 5
    scene.render.filepath = str(tmp_path / "f_")
    SESSION.new_render()
    render.seed_history(scene)
    err = capfd.readouterr().err
    assert "temporal smoothing not seeded" in err and "no AdaIN backend" in err, err
    assert SESSION.status.failed_frames == set(), "a seed frame is not a frame of the job"
    assert SESSION.smoother._previous == {}
    assert not list(tmp_path.iterdir())
