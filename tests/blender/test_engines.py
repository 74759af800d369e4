"""EEVEE and Workbench renders stylized after the compositor (addon/engine_hook.py), in real Blender 4.5 and 5.0.

One small scene for the whole module (EEVEE compiles its shaders on the first frame, tens of seconds here): the
cube ("Red") and the sphere ("Blue") on two material slots, the global alpha keyed 0 at frame 1 and 1 at frame 3.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import bpy
import numpy as np
import pytest

from tests.blender.backends import backend_command
from tests.blender.scene import SAMPLES, fresh_scene, movie_output, object_box, read_png, render_still, set_slot

from addon import engine_hook, exr  # isort: skip  (scene.py put the repository on sys.path)
from addon.session import SESSION  # isort: skip

EEVEE = "BLENDER_EEVEE_NEXT" if bpy.app.version < (5, 0, 0) else "BLENDER_EEVEE"
WARM = "style_wesnoth_trow_great_tree.jpg"  # yellow-green
COOL = "style_wesnoth_painted_mountains.jpg"  # blue


@pytest.fixture(scope="module")
def scene() -> Iterator[bpy.types.Scene]:
    sc = fresh_scene(width=256, height=192)  # objects large enough for their own feature statistics
    sc.render.engine = EEVEE
    sc.eevee.taa_render_samples = 2
    sc.view_layers[0].use_pass_vector = True
    sc.frame_start, sc.frame_end = 1, 3
    sc.render.dither_intensity = 0.0
    for frame, alpha in ((1, 0.0), (3, 1.0)):
        sc.adain.alpha = alpha
        sc.adain.keyframe_insert("alpha", frame=frame)
    yield sc


def _slots(scene: bpy.types.Scene, red: str, blue: str) -> None:
    set_slot(scene, 0, "Red", "MATERIALS", red, ("Red",))
    set_slot(scene, 1, "Blue", "MATERIALS", blue, ("Blue",))


def _still(scene: bpy.types.Scene, frame: int, path: Path, enabled: bool = True) -> np.ndarray:
    scene.adain.enabled = enabled
    scene.frame_set(frame)
    try:
        return render_still(scene, path)
    finally:
        scene.adain.enabled = True


def _blue_lean(px: np.ndarray) -> float:
    mean = px.reshape(-1, 3).astype(np.float64).mean(0)
    c = mean / max(float(mean.sum()), 1e-6)
    return float(c[2] - c[0])


def test_eevee_identity_round_trip_shows_the_frame_and_restyles(
    scene: bpy.types.Scene, identity_backend: str, tmp_path: Path
) -> None:
    _slots(scene, WARM, COOL)
    stylized = _still(scene, 3, tmp_path / "stylized.png")
    assert SESSION.status.ok, SESSION.status.message
    assert SESSION.status.stylized_frames == [3] and "after the compositor" in SESSION.status.message
    plain = _still(scene, 3, tmp_path / "plain.png", enabled=False)
    diff = np.abs(stylized - plain)
    assert float(plain.mean()) > 30 and diff.max() <= 1, f"round trip off by {diff.max()}/255"
    assert engine_hook.RESULT_IMAGE in bpy.data.images  # what F12 shows
    assert SESSION.last_render and SESSION.last_render[0].frame == 3
    scene.frame_set(3)
    assert bpy.ops.adain.restyle() == {"FINISHED"}
    assert "AdaIN Restyle" in bpy.data.images


def _multilayer(scene: bpy.types.Scene, on: bool) -> None:
    f = scene.render.image_settings
    if hasattr(f, "media_type"):  # Blender 5.0
        f.media_type = "MULTI_LAYER_IMAGE" if on else "IMAGE"
    f.file_format = "OPEN_EXR_MULTILAYER" if on else "PNG"
    if not on:
        f.color_mode, f.color_depth = "RGB", "8"


def test_eevee_multilayer_exr_keeps_the_passes_and_the_cryptomatte_manifest(
    scene: bpy.types.Scene, identity_backend: str, tmp_path: Path
) -> None:
    _slots(scene, WARM, COOL)
    scene.frame_set(3)
    _multilayer(scene, True)
    try:
        scene.adain.enabled = False
        scene.render.filepath = str(tmp_path / "plain.exr")
        bpy.ops.render.render(write_still=True)
        scene.adain.enabled = True
        scene.render.filepath = str(tmp_path / "stylized.exr")
        bpy.ops.render.render(write_still=True)
    finally:
        scene.adain.enabled = True
        _multilayer(scene, False)
    assert SESSION.status.ok, SESSION.status.message
    plain, stylized = (exr.read_metadata(tmp_path / name) for name in ("plain.exr", "stylized.exr"))
    crypto = {k: v for k, v in plain.items() if k.startswith("cryptomatte/")}
    manifests = [v[1].decode() for k, v in crypto.items() if k.endswith("/manifest")]
    assert len(manifests) == 2 and any('"Cube"' in m for m in manifests) and any('"Red"' in m for m in manifests)
    assert {k: v for k, v in stylized.items() if k.startswith("cryptomatte/")} == crypto, "Cryptomatte's metadata is kept"
    assert set(stylized) == set(plain), "every header attribute Blender wrote is kept"
    layers = exr.read_layers(tmp_path / "stylized.exr")
    view_layer = scene.view_layers[0].name
    assert "AdaIN" in layers[view_layer] and "CryptoMaterial00" in layers[view_layer], sorted(layers[view_layer])
    assert np.abs(layers[view_layer]["AdaIN"] - layers["Composite"]["Combined"]).max() == 0


def test_eevee_animation_slots_alpha_and_swap(
    scene: bpy.types.Scene, model_backend: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _slots(scene, WARM, COOL)
    scene.render.filepath = str(tmp_path / "anim_")
    capfd.readouterr()
    bpy.ops.render.render(animation=True)
    assert sorted(SESSION.status.stylized_frames) == [1, 2, 3], SESSION.status.message
    err = capfd.readouterr().err  # (a handler cannot tell an animation at its first frame; from the second on it can)
    assert "stylizing frame 1 (EEVEE" in err and "stylizing frame 3 (3 of 3 in this job; EEVEE" in err, err
    frames = {f: read_png(Path(scene.render.frame_path(frame=f))) for f in (1, 3)}
    plain1 = _still(scene, 1, tmp_path / "plain1.png", enabled=False)
    plain3 = _still(scene, 3, tmp_path / "plain3.png", enabled=False)
    assert np.abs(frames[1] - plain1).max() <= 1, "global alpha 0 (keyed at frame 1) must give the plain render"
    assert np.abs(frames[3] - plain3).mean() > 2.0, "alpha 1 at frame 3 must stylize"
    rows, cols = slice(4, 24), slice(4, 60)  # the sky above the objects: no slot
    assert np.abs(frames[3][rows, cols] - plain3[rows, cols]).max() <= 1, "unslotted pixels keep the render"

    _slots(scene, COOL, WARM)
    swapped = _still(scene, 3, tmp_path / "swapped.png")
    assert SESSION.status.ok, SESSION.status.message
    for obj, sign in (("Cube", -1.0), ("Sphere", 1.0)):  # Cube: warm first; Sphere: cool first
        r, c = object_box(scene, obj)
        first, second = _blue_lean(frames[3][r, c]), _blue_lean(swapped[r, c])
        assert sign * (first - second) > 0.005, f"{obj}: its slot's style does not show ({first:.3f} vs {second:.3f})"


def test_eevee_dead_backend_keeps_the_plain_frame_and_stops(scene: bpy.types.Scene, dead_backend: str, tmp_path: Path) -> None:
    _slots(scene, WARM, COOL)
    scene.frame_set(2)
    scene.render.filepath = str(tmp_path / "anim_")
    bpy.ops.render.render(animation=True)
    assert not SESSION.status.ok
    assert "no AdaIN backend" in SESSION.status.message and "plain render is kept" in SESSION.status.message
    assert SESSION.status.failed_frames == {1}, "the animation stops at the failed frame"
    assert not list(tmp_path.iterdir()), "a frame that was not stylized must not be written as if it were"
    assert scene.frame_current == 2, "the scene's frame is put back"

    os.environ["ADAIN_BACKEND_COMMAND"] = backend_command("--identity", "--device", "cpu")
    scene.render.use_overwrite = False
    try:
        (tmp_path / "anim_0003.png").write_bytes(b"kept")  # a frame already there is not rendered again
        bpy.ops.render.render(animation=True)
    finally:
        scene.render.use_overwrite = True
    assert SESSION.status.ok, SESSION.status.message
    assert sorted(SESSION.status.stylized_frames) == [1, 2]
    assert (tmp_path / "anim_0003.png").read_bytes() == b"kept"


def test_eevee_esc_cancels_the_frame_leaves_it_unwritten_and_stops(
    scene: bpy.types.Scene, model_backend: str, tmp_path: Path
) -> None:
    """Esc in the UI sets ``SESSION.render_break`` (``escape_watch``'s modal operator: the bpy module has no window
    to press it in, so a render_pre handler sets the flag as frame 2 starts). The rest is real: EEVEE, the backend,
    the handler that polls the flag while it waits, the file Blender wrote deleted, the animation stopped."""
    _slots(scene, WARM, COOL)
    scene.frame_set(1)
    scene.render.filepath = str(tmp_path / "anim_")

    def press_esc_at_frame_2(sc: bpy.types.Scene, *_: object) -> None:
        if sc.frame_current == 2:
            SESSION.render_break.set()

    bpy.app.handlers.render_pre.append(press_esc_at_frame_2)
    try:
        bpy.ops.render.render(animation=True)
    finally:
        bpy.app.handlers.render_pre.remove(press_esc_at_frame_2)
    assert not SESSION.status.ok and "cancelled (Esc)" in SESSION.status.message, SESSION.status.message
    assert SESSION.status.stylized_frames == [1] and SESSION.status.failed_frames == {2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anim_0001.png"], "frame 2 unwritten, frame 3 not rendered"
    assert scene.frame_current == 1, "the scene's frame is put back"

    scene.render.use_overwrite = False
    try:
        bpy.ops.render.render(animation=True)  # the next job clears the flag and renders exactly the missing frames
    finally:
        scene.render.use_overwrite = True
    assert SESSION.status.ok, SESSION.status.message
    assert sorted(SESSION.status.stylized_frames) == [2, 3]


def test_workbench_whole_frame_fallback(scene: bpy.types.Scene, identity_backend: str, tmp_path: Path) -> None:
    _slots(scene, WARM, COOL)
    scene.render.engine = "BLENDER_WORKBENCH"
    try:
        stylized = _still(scene, 3, tmp_path / "wb.png")
        assert SESSION.status.ok, SESSION.status.message
        assert "whole frame" in SESSION.status.message
        plain = _still(scene, 3, tmp_path / "wb_plain.png", enabled=False)
        assert float(plain.mean()) > 30 and np.abs(stylized - plain).max() <= 1
    finally:
        scene.render.engine = EEVEE


def test_workbench_model_styles_the_whole_frame(scene: bpy.types.Scene, model_backend: str, tmp_path: Path) -> None:
    _slots(scene, COOL, WARM)
    scene.render.engine = "BLENDER_WORKBENCH"
    try:
        stylized = _still(scene, 3, tmp_path / "wb.png")
        assert SESSION.status.ok, SESSION.status.message
        plain = _still(scene, 3, tmp_path / "wb_plain.png", enabled=False)
        zero = _still(scene, 1, tmp_path / "wb_zero.png")
        plain1 = _still(scene, 1, tmp_path / "wb_plain1.png", enabled=False)
    finally:
        scene.render.engine = EEVEE
    assert np.abs(zero - plain1).max() <= 1, "alpha 0 gives the plain render"
    rows, cols = slice(4, 24), slice(4, 60)  # the sky: styled too, the first slot covers the whole frame
    assert np.abs(stylized[rows, cols] - plain[rows, cols]).mean() > 2.0
    assert _blue_lean(stylized) > _blue_lean(plain), "the first slot's (cool) style shows"
    assert SAMPLES.is_dir()


def test_a_movie_output_stays_plain_and_the_status_says_so(
    scene: bpy.types.Scene, identity_backend: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _slots(scene, WARM, COOL)
    scene.render.engine = "BLENDER_WORKBENCH"  # (fast; EEVEE takes the same path)
    movie_output(scene, True)
    scene.frame_start, scene.frame_end = 1, 2
    scene.render.filepath = str(tmp_path / "movie_")
    try:
        bpy.ops.render.render(animation=True)
    finally:
        movie_output(scene, False)
        scene.render.engine, scene.frame_end = EEVEE, 3
    # frame 1 is stylized (shown in "AdaIN Result": a handler cannot tell an animation at its first frame); from the
    # second on nothing is computed that the movie could not take
    assert SESSION.status.ok and SESSION.status.stylized_frames == [1], SESSION.status.message
    assert "frame 2 not stylized: the movie output stays plain with Workbench" in SESSION.status.message
    assert capfd.readouterr().err.count("movie output stays plain") == 1, "the console is told once per job"
    assert [p.stat().st_size > 0 for p in tmp_path.iterdir()] == [True], "Blender's movie is written, untouched"


def test_a_farm_job_says_where_each_frame_stands(
    scene: bpy.types.Scene, identity_backend: str, tmp_path: Path, monkeypatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """``blender -b f.blend -s 2 -e 3 -a``: the console names each frame's place in the job (Workbench: fast)."""
    monkeypatch.setattr(sys, "argv", ["blender", "-b", "f.blend", "-s", "2", "-e", "3", "-a"])
    _slots(scene, WARM, COOL)
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.frame_start, scene.render.filepath = 2, str(tmp_path / "f_")
    try:
        bpy.ops.render.render(animation=True)
    finally:
        scene.render.engine, scene.frame_start = EEVEE, 1
    err = capfd.readouterr().err
    assert SESSION.status.ok and sorted(SESSION.status.stylized_frames) == [2, 3], SESSION.status.message
    for line in ("stylizing frame 2 (1 of 2 in this job; Workbench", "stylizing frame 3 (2 of 2 in this job; Workbench"):
        assert line in err, err
