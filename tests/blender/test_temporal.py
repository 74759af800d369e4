"""Temporal smoothing in real Blender: animations rendered with Cycles, stylized by the real backend (shipped
decoder), with and without smoothing along Cycles' own motion vectors."""

from __future__ import annotations

import sys
from itertools import pairwise
from pathlib import Path

import bpy
import numpy as np
import pytest
from mathutils import Vector

from tests.blender.scene import fresh_scene, object_box, read_png, set_slot
from tests.blender.test_render import STYLE_COOL

from addon.session import SESSION  # isort: skip


def _animation(scene: bpy.types.Scene, folder: Path, strength: float) -> list[np.ndarray]:
    scene.adain.temporal = strength
    scene.render.filepath = str(folder / f"s{strength:g}_")
    bpy.ops.render.render(animation=True)
    assert SESSION.status.ok, SESSION.status.message
    frames = range(scene.frame_start, scene.frame_end + 1)
    assert sorted(SESSION.status.stylized_frames) == list(frames)
    return [read_png(Path(scene.render.frame_path(frame=f))) for f in frames]


def _flicker(frames: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(b - a).mean() for a, b in pairwise(frames)]))


def test_smoothing_steadies_a_noisy_still_shot(model_backend: str, tmp_path: Path) -> None:
    """A still camera and Cycles' noise changing every frame (animated seed): frame to frame changes drop."""
    scene = fresh_scene(width=96, height=72, samples=16)
    scene.cycles.use_animated_seed = True
    set_slot(scene, 0, "Everything", "OTHER", STYLE_COOL)
    scene.frame_start, scene.frame_end = 1, 4
    plain = _animation(scene, tmp_path, 0.0)
    steady = _animation(scene, tmp_path, 0.7)
    assert all(vl.use_pass_vector for vl in scene.view_layers), "turning smoothing on turns on the Vector pass"
    assert np.abs(steady[0] - plain[0]).max() <= 1, "the first frame has nothing before it: unchanged"
    before, after = _flicker(plain), _flicker(steady)
    assert before > 0.5, f"the test scene should flicker without smoothing ({before:.2f})"
    assert after < 0.6 * before, f"smoothing should cut the frame-to-frame change: {before:.2f} -> {after:.2f}"


def _columns(scene: bpy.types.Scene, name: str) -> tuple[int, int]:
    """The image columns the object's bounding box spans at the current frame."""
    from bpy_extras.object_utils import world_to_camera_view

    obj = bpy.data.objects[name]
    xs = [world_to_camera_view(scene, scene.camera, obj.matrix_world @ Vector(c)).x for c in obj.bound_box]
    w = scene.render.resolution_x
    return int(min(xs) * w), int(np.ceil(max(xs) * w))


def test_smoothing_follows_a_moving_object_and_leaves_no_trail(model_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=128, height=96, samples=16)
    set_slot(scene, 0, "Everything", "OTHER", STYLE_COOL)
    bpy.data.objects["Sphere"].hide_render = True  # out of the cube's way
    cube = bpy.data.objects["Cube"]
    for frame, x in ((1, -2.2), (2, 0.8), (3, 3.8)):
        cube.location.x = x
        cube.keyframe_insert("location", index=0, frame=frame)
    scene.frame_start, scene.frame_end = 1, 2
    scene.frame_set(1)
    was_rows, was_cols = object_box(scene, "Cube", half=0.03)
    scene.frame_set(2)
    now_rows, now_cols = object_box(scene, "Cube", half=0.06)
    assert was_cols.stop < _columns(scene, "Cube")[0] - 4, "the cube must move clear of where it was"
    plain = _animation(scene, tmp_path, 0.0)
    steady = _animation(scene, tmp_path, 0.7)
    change = np.abs(steady[1].astype(np.float64) - plain[1])
    # on the cube, the previous frame's cube, moved along the motion vectors, is blended in (a wrong sign or unit
    # would find the background there, which does not match the cube, and blend nothing)
    on_cube = change[now_rows, now_cols].mean()
    # where the cube was, the floor and sky now show: the previous frame's cube must not be dragged there
    trail = change[was_rows, was_cols].mean()
    assert on_cube > 2.0, f"the moving cube was not smoothed along its motion ({on_cube:.2f})"
    assert trail < 0.5 * on_cube, f"smoothing left a trail where the cube was ({trail:.2f} vs {on_cube:.2f} on it)"


def test_motion_blur_turns_smoothing_off_and_says_so(model_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=48, height=36, samples=4)
    set_slot(scene, 0, "Everything", "OTHER", STYLE_COOL)
    scene.render.use_motion_blur = True
    scene.frame_start, scene.frame_end = 1, 2
    frames = _animation(scene, tmp_path, 0.5)
    assert len(frames) == 2
    assert "no temporal smoothing while Motion Blur is on" in SESSION.status.message


@pytest.mark.parametrize("strength", [0.5])
def test_a_still_render_is_never_smoothed(model_backend: str, tmp_path: Path, strength: float) -> None:
    scene = fresh_scene(width=48, height=36, samples=4)
    set_slot(scene, 0, "Everything", "OTHER", STYLE_COOL)
    scene.adain.temporal = strength
    for name in ("a.png", "b.png"):
        scene.render.filepath = str(tmp_path / name)
        bpy.ops.render.render(write_still=True)
        assert SESSION.status.ok and "temporal" not in SESSION.status.message
    assert np.abs(read_png(tmp_path / "a.png") - read_png(tmp_path / "b.png")).max() <= 1


def _farm_scene(strength: float) -> bpy.types.Scene:
    """Noise that changes every frame and a cube that moves: what smoothing carries from frame to frame."""
    scene = fresh_scene(width=48, height=36, samples=4)
    scene.cycles.use_animated_seed = True
    set_slot(scene, 0, "Everything", "OTHER", STYLE_COOL)
    cube = bpy.data.objects["Cube"]
    for frame, x in ((-20, -3.0), (12, 1.0)):
        cube.location.x = x
        cube.keyframe_insert("location", index=0, frame=frame)
    scene.adain.temporal = strength
    return scene


def _job(scene: bpy.types.Scene, folder: Path, first: int, last: int) -> dict[int, np.ndarray]:
    """What ``blender -b file.blend -s FIRST -e LAST -a`` renders (the add-on reads the job kind from sys.argv)."""
    scene.frame_start, scene.frame_end = first, last
    scene.render.filepath = str(folder / "f_")
    bpy.ops.render.render(animation=True)
    assert SESSION.status.ok, SESSION.status.message
    assert sorted(SESSION.status.stylized_frames) == list(range(first, last + 1)), "seed frames are not frames of the job"
    return {f: read_png(Path(scene.render.frame_path(frame=f))) for f in range(first, last + 1)}


@pytest.mark.slow
def test_a_farm_chunk_comes_out_as_in_one_long_run(model_backend: str, tmp_path: Path, monkeypatch) -> None:
    """Frames 1-12 in one job, and as the chunks 1-6 and 7-12 (two machines): equal within 1/255, because each job
    first stylizes, without writing, the frames before its first one (temporal.seed_frames: 9 at strength 0.5)."""
    from addon import temporal

    monkeypatch.setattr(sys, "argv", ["blender", "-b", "farm.blend", "-a"])
    assert bpy.app.background
    scene = _farm_scene(0.5)
    assert temporal.seed_frames(0.5) == 9
    whole = _job(scene, tmp_path / "whole", 1, 12)
    assert not list((tmp_path / "whole").glob("f_000[0]*")) and not list((tmp_path / "whole").glob("f_-*")), (
        "seed frames are not written"
    )
    chunks = {**_job(scene, tmp_path / "a", 1, 6), **_job(scene, tmp_path / "b", 7, 12)}
    worst = max(int(np.abs(whole[f].astype(np.int16) - chunks[f]).max()) for f in whole)
    assert worst <= 1, f"a chunk's frames differ from the long run's by up to {worst}/255"
    # and the seed matters: without it, the second chunk's first frame is not smoothed and differs
    monkeypatch.setattr(sys, "argv", ["blender", "-b", "farm.blend"])
    unseeded = _job(scene, tmp_path / "c", 7, 7)[7]
    assert np.abs(unseeded.astype(np.int16) - whole[7]).max() > 1


def test_smoothing_off_keeps_no_history_and_seeds_nothing(identity_backend: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["blender", "-b", "farm.blend", "-a"])
    scene = _farm_scene(0.0)
    _job(scene, tmp_path, 3, 4)
    assert SESSION.smoother._previous == {}


@pytest.mark.slow
def test_smoothing_on_the_backend_equals_smoothing_in_blender(model_backend: str, tmp_path: Path, monkeypatch) -> None:
    """ADAIN_SMOOTH_ON=backend: each step runs as the backend's smooth op (here on its CPU); the frames equal those
    smoothed in Blender within 1/255 (the frames travel as float16)."""
    from addon import smooth_backend

    scene = _farm_scene(0.6)
    steps: list[bool] = []
    real_remote = smooth_backend.remote

    def counting_remote(*args, **kwargs):  # type: ignore[no-untyped-def]
        step = real_remote(*args, **kwargs)
        if step is None:
            return None

        def counted(*a):  # type: ignore[no-untyped-def]
            out = step(*a)
            steps.append(out is not None)
            return out

        return counted

    monkeypatch.setattr(smooth_backend, "remote", counting_remote)
    monkeypatch.setenv(smooth_backend.SMOOTH_ON_ENV, "blender")
    here = _job(scene, tmp_path / "blender", 1, 4)
    assert steps == [], "ADAIN_SMOOTH_ON=blender sends no step"
    monkeypatch.setenv(smooth_backend.SMOOTH_ON_ENV, "backend")
    there = _job(scene, tmp_path / "backend", 1, 4)
    assert steps == [True, True, True], "frames 2-4 were smoothed by the backend"
    worst = max(int(np.abs(here[f].astype(np.int16) - there[f]).max()) for f in here)
    assert worst <= 1, f"smoothing on the backend differs from smoothing in Blender by up to {worst}/255"
    plain = _job(_farm_scene(0.0), tmp_path / "plain", 1, 4)
    assert np.abs(plain[4].astype(np.int16) - there[4]).max() > 2, "and the frames were smoothed"
