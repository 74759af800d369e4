"""scripts/temporal_eval.py's measurement in real Blender: the warping error along Cycles' own Vector pass, on a case
whose answer is known. A textured plane, seen by an orthographic camera, slides exactly one pixel per frame: the
rendered frames move one pixel each, so the error of the render itself is near 0; noise of a known size added to
each frame gives 3 channels x 2 sigma^2.

(The plane moves, not the camera: Cycles 4.5 writes a moving *orthographic* camera's motion 11 % too long in the
Vector pass, 1.11 px for a 1 px pan, while the frames move exactly 1 px; see docs/temporal.md.)"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest

from tests.blender.scene import fresh_scene, set_slot
from tests.blender.test_render import STYLE_COOL
from tests.scripts.script_loader import load_script

from addon import exr, render  # isort: skip  (scene.py put the repository on sys.path)
from addon.session import SESSION  # isort: skip

W, H, FRAMES = 64, 40, 5


def _panning_plane() -> bpy.types.Scene:
    scene = fresh_scene(width=W, height=H, samples=32)
    for name in ("Cube", "Sphere", "Floor"):
        bpy.data.objects.remove(bpy.data.objects[name])
    bpy.ops.mesh.primitive_plane_add(size=40, location=(0, 0, 0))
    m = bpy.data.materials.new("Texture")
    m.use_nodes = True
    nodes, links = m.node_tree.nodes, m.node_tree.links
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 1.5
    emission = nodes.new("ShaderNodeEmission")
    links.new(noise.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], nodes["Material Output"].inputs["Surface"])
    bpy.context.object.data.materials.append(m)
    plane = bpy.context.object
    camera = scene.camera
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = 8.0
    camera.rotation_euler, camera.location = (0, 0, 0), (0, 0, 10)
    pixel = camera.data.ortho_scale / W  # world units per pixel
    for frame in range(0, FRAMES + 2):  # a key on every frame: exact positions whatever the interpolation
        plane.location = (-(frame - 1) * pixel, 0, 0)
        plane.keyframe_insert("location", frame=frame)
    scene.frame_start, scene.frame_end = 1, FRAMES
    for vl in scene.view_layers:
        vl.use_pass_vector = True
    set_slot(scene, 0, "Everything", "OTHER", STYLE_COOL)
    return scene


def test_a_one_pixel_pan_has_no_warping_error_and_noise_has_its_known_one(
    identity_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    te, we = load_script("temporal_eval"), load_script("warp_error")
    monkeypatch.setattr(render, "process_result", render.process_result)  # (the tap wraps it: restored afterwards)
    tap = te.Tap()
    tap.install()
    scene = _panning_plane()
    scene.render.filepath = str(tmp_path / "f_")
    bpy.ops.render.render(animation=True)
    assert SESSION.status.ok, SESSION.status.message
    frames = [tap.frames[f] for f in range(1, FRAMES + 1)]
    vectors = [tap.vectors[f] for f in range(1, FRAMES + 1)]
    assert np.abs(frames[1][:, 1:] - frames[0][:, :-1]).mean() > 5 * np.abs(frames[1] - frames[0]).mean() / 100, (
        "the frames must differ (the plane is textured)"
    )
    dx = float(np.median(vectors[2][..., 0]))
    assert abs(abs(dx) - 1.0) < 0.01, f"the pan should move every pixel by one, the Vector pass says {dx}"
    seen = we.non_occlusion(vectors[2], vectors[1])
    assert seen.mean() > 0.9 and seen[:, -1:].max() == 0.0, "all but the column that came in on the right are seen twice"
    plain = we.warping_error(frames, vectors)
    assert plain < 2e-4, f"the render moved along its own motion should match itself: {plain}"
    sigma = 0.04
    rng = np.random.default_rng(0)
    noisy = [f + rng.normal(0, sigma, f.shape).astype(np.float32) for f in frames]
    assert we.warping_error(noisy, vectors) == pytest.approx(3 * 2 * sigma**2 + plain, rel=0.1)
    wrong = [np.zeros_like(v) for v in vectors]  # and motion ignored: clearly not near 0
    assert we.warping_error(frames, wrong) > 20 * plain


def test_eevee_writes_the_vector_pass_in_cycles_convention(tmp_path: Path) -> None:
    """Temporal smoothing reads EEVEE's Vector pass as Cycles': (previous x, y, current minus next x, y), so a plane in
    steady motion has (a, b, a, b) (``temporal.next_flow_from_vector``). Checked on the same scene, moving one pixel
    right and half a pixel down per frame, rendered by both engines."""
    scene = _panning_plane()
    plane = bpy.data.objects["Plane"]
    pixel = scene.camera.data.ortho_scale / W
    plane.animation_data_clear()
    for frame in range(0, FRAMES + 2):
        plane.location = ((frame - 1) * pixel, -(frame - 1) * pixel / 2, 0)
        plane.keyframe_insert("location", frame=frame)
    scene.adain.enabled = False
    scene.eevee.taa_render_samples = 1
    f = scene.render.image_settings
    if hasattr(f, "media_type"):
        f.media_type = "MULTI_LAYER_IMAGE"
    f.file_format, f.exr_codec, f.color_depth = "OPEN_EXR_MULTILAYER", "NONE", "32"
    scene.frame_set(3)
    vectors = {}
    for engine in ("CYCLES", "BLENDER_EEVEE_NEXT" if bpy.app.version < (5, 0, 0) else "BLENDER_EEVEE"):
        scene.render.engine = engine
        scene.render.filepath = str(tmp_path / f"{engine}.exr")
        bpy.ops.render.render(write_still=True)
        layers = exr.read_layers(tmp_path / f"{engine}.exr")
        vectors[engine] = next(p["Vector"] for p in layers.values() if "Vector" in p)
    for engine, v in vectors.items():
        median = np.median(v.reshape(-1, 4), axis=0)
        assert np.allclose(median, (-1.0, 0.5, -1.0, 0.5), atol=0.01), f"{engine}: {median}"
    cycles, eevee = vectors.values()
    assert np.abs(cycles - eevee).mean() < 0.01
