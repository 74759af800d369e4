"""The add-on in real Blender (bpy 4.5 LTS and 5.0), rendering with Cycles on the CPU, against a real backend
subprocess: the shipped decoder for stylization, ``--identity`` for the colour round trip.

Run: ``ADAIN_BACKEND_PYTHON=.venv/bin/python .venv-bpy45/bin/python -m pytest tests/blender`` (scripts/test.sh
does, for both Blender versions).
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy
import numpy as np
import pytest

from tests.blender.backends import backend_command
from tests.blender.scene import (
    SAMPLES,
    fresh_scene,
    group_factor,
    object_box,
    read_png,
    render_still,
    set_slot,
)

from addon import render_result  # isort: skip  (scene.py put the repository on sys.path)
from addon.session import SESSION  # isort: skip
from addon import frames  # isort: skip
from addon.frames import FrameJob, stylize_frame  # isort: skip

STYLE_WARM = "style_wesnoth_trow_great_tree.jpg"  # yellow-green, high contrast
STYLE_COOL = "style_wesnoth_painted_mountains.jpg"  # blue, soft


def _stats(pixels: np.ndarray) -> np.ndarray:
    """Mean colour (the spread of a small region depends on how much of the style's structure fits in it)."""
    return pixels.reshape(-1, 3).astype(np.float64).mean(0)


def _chroma(mean_rgb: np.ndarray) -> np.ndarray:
    """Chromaticity r, g, b (summing to 1): the colour character, free of how brightly the region is lit."""
    return mean_rgb / max(float(mean_rgb.sum()), 1e-6)


def _style_stats(name: str) -> np.ndarray:
    img = bpy.data.images.load(str(SAMPLES / name), check_existing=True)
    img.colorspace_settings.name = "Non-Color"
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    return _stats(px.reshape(h, w, 4)[..., :3] * 255)


# ------------------------------------------------------------------------------ colour round trip
@pytest.mark.parametrize("view", ["Standard", "AgX", "Filmic"])
def test_identity_backend_reproduces_the_render(identity_backend: str, view: str, tmp_path: Path) -> None:
    scene = fresh_scene(view=view)
    set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    stylized = render_still(scene, tmp_path / "stylized.png")
    assert SESSION.status.ok, SESSION.status.message
    assert SESSION.status.stylized_frames == [1]
    scene.adain.enabled = False
    plain = render_still(scene, tmp_path / "plain.png")
    diff = np.abs(stylized - plain)
    assert diff.max() <= 1, f"{view}: round trip off by {diff.max()}/255 at worst (mean {diff.mean():.3f})"


def test_identity_round_trip_holds_with_exposure_and_gamma(identity_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(view="Standard")
    scene.view_settings.exposure, scene.view_settings.gamma = 0.7, 1.3
    set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    stylized = render_still(scene, tmp_path / "stylized.png")
    assert SESSION.status.ok, SESSION.status.message
    scene.adain.enabled = False
    plain = render_still(scene, tmp_path / "plain.png")
    assert np.abs(stylized - plain).max() <= 1


def test_the_network_sees_the_denoised_render(identity_backend: str, tmp_path: Path) -> None:
    """With Cycles' denoiser on, the frame sent is the denoised Combined pass, not the noisy one."""
    scene = fresh_scene(samples=4)
    scene.cycles.use_denoising = True
    set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    stylized = render_still(scene, tmp_path / "stylized.png")
    assert SESSION.status.ok, SESSION.status.message
    scene.adain.enabled = False
    denoised = render_still(scene, tmp_path / "denoised.png")
    scene.cycles.use_denoising = False
    noisy = render_still(scene, tmp_path / "noisy.png")
    assert np.abs(denoised - noisy).mean() > 1.0, "4 samples should be visibly noisy without the denoiser"
    assert np.abs(stylized - denoised).max() <= 1


# ------------------------------------------------------------------------------ real stylization
def test_per_material_styles_reach_the_compositor_output(model_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=256, height=192)  # objects large enough for their own feature statistics
    set_slot(scene, 0, "Warm", "MATERIALS", STYLE_WARM, ("Red",))
    set_slot(scene, 1, "Cool", "MATERIALS", STYLE_COOL, ("Blue",))
    stylized = render_still(scene, tmp_path / "stylized.png")
    assert SESSION.status.ok, SESSION.status.message
    group_factor(scene, 0.0)  # the node group's mix factor at 0 gives the plain render back
    plain = render_still(scene, tmp_path / "plain.png")
    assert SESSION.status.ok, SESSION.status.message
    assert np.abs(stylized - plain).mean() > 3.0, "the compositor output does not show the stylized frame"

    # Each object takes its own slot's style: with the two styles swapped between the materials, each object's
    # colour leans the other way (blue minus red chromaticity; the cool style is the bluer one).
    warm, cool = _chroma(_style_stats(STYLE_WARM)), _chroma(_style_stats(STYLE_COOL))
    assert cool[2] - cool[0] > warm[2] - warm[0]
    group_factor(scene, 1.0)
    set_slot(scene, 0, "Warm", "MATERIALS", STYLE_COOL, ("Red",))
    set_slot(scene, 1, "Cool", "MATERIALS", STYLE_WARM, ("Blue",))
    swapped = render_still(scene, tmp_path / "swapped.png")
    assert SESSION.status.ok, SESSION.status.message

    def blue_lean(px: np.ndarray) -> float:
        c = _chroma(_stats(px))
        return float(c[2] - c[0])

    for obj, sign in (("Cube", -1.0), ("Sphere", 1.0)):  # Cube: warm first; Sphere: cool first
        rows, cols = object_box(scene, obj)
        first, second = blue_lean(stylized[rows, cols]), blue_lean(swapped[rows, cols])
        assert sign * (first - second) > 0.005, f"{obj}: its slot's style does not show ({first:.3f} vs {second:.3f})"
    # the floor and the sky belong to no slot: they keep the render
    rows, cols = slice(4, 16), slice(4, 24)
    assert np.abs(stylized[rows, cols] - plain[rows, cols]).max() <= 2


def test_keyframed_alpha_moves_the_output(model_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=96, height=72)
    slot = set_slot(scene, 0, "Everything", "OTHER", STYLE_COOL)
    scene.frame_start, scene.frame_end = 1, 3
    for frame, alpha in ((1, 0.0), (3, 1.0)):
        slot.alpha = alpha
        slot.keyframe_insert("alpha", frame=frame)
    scene.render.filepath = str(tmp_path / "anim_")
    bpy.ops.render.render(animation=True)
    assert sorted(SESSION.status.stylized_frames) == [1, 2, 3], SESSION.status.message
    frames = [read_png(Path(scene.render.frame_path(frame=f))) for f in (1, 2, 3)]
    scene.adain.enabled = False
    scene.frame_set(1)
    plain = render_still(scene, tmp_path / "plain.png")
    assert np.abs(frames[0] - plain).mean() <= 0.5, "alpha 0 must give the render"
    style = _style_stats(STYLE_COOL)
    towards = [float(np.abs(_stats(f) - style).sum()) for f in frames]
    assert towards[0] > towards[1] > towards[2], f"the colour should move toward the style as alpha rises: {towards}"
    assert np.abs(frames[2] - plain).mean() > 5.0


def _render_exr(scene: bpy.types.Scene, path: Path) -> np.ndarray:
    """Render to a float RGBA EXR (premultiplied, as Blender keeps renders) and read it back, bottom row first."""
    fmt = scene.render.image_settings
    fmt.file_format, fmt.color_mode, fmt.color_depth = "OPEN_EXR", "RGBA", "32"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(str(path), check_existing=False)
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    return px.reshape(h, w, 4)


def _transparent_scene() -> bpy.types.Scene:
    scene = fresh_scene(width=96, height=72)
    bpy.data.objects["Floor"].hide_render = True  # the objects against nothing: alpha 0 around, soft edges
    scene.render.film_transparent = True
    return scene


def test_transparent_film_round_trips_exactly(identity_backend: str, tmp_path: Path) -> None:
    scene = _transparent_scene()
    set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    stylized = _render_exr(scene, tmp_path / "stylized.exr")
    assert SESSION.status.ok, SESSION.status.message
    scene.adain.enabled = False
    plain = _render_exr(scene, tmp_path / "plain.exr")
    a = plain[..., 3]
    assert (a == 0).any() and ((a > 0) & (a < 1)).any() and (a == 1).any()
    assert np.abs(stylized[a == 0]).max() == 0.0
    np.testing.assert_allclose(stylized, plain, atol=1e-3)  # frames travel as float16: ~1/2000 of a value


def test_transparent_film_keeps_the_stylized_colour_inside_the_alpha(
    model_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renders are premultiplied: where nothing was rendered (alpha 0) there must be no colour, or compositing the
    frame over a background would add the stylized background to it as light. And the empty background is left
    out of the slot's mask, so it does not count in the content statistics as black."""
    scene = _transparent_scene()
    set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    jobs: list[FrameJob] = []

    def recording(client: object, ids: object, job: FrameJob, **kw: object) -> object:  # a spy: the real call
        jobs.append(job)
        return stylize_frame(client, ids, job, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(frames, "stylize_frame", recording)  # (what render_result's stylize_reconnecting calls)
    stylized = _render_exr(scene, tmp_path / "stylized.exr")
    assert SESSION.status.ok, SESSION.status.message
    assert len(jobs) == 1 and jobs[0].masks is not None
    mask = jobs[0].masks[0][::-1]  # top-down -> Blender's row order
    assert (mask[stylized[..., 3] == 0] == 0).all() and (mask[stylized[..., 3] > 0] == 1).all()
    a = stylized[..., 3]
    rgb = stylized[..., :3]
    assert np.abs(rgb[a == 0]).max() == 0.0, "colour where the frame is transparent"
    edge = (a > 0) & (a < 1)
    assert (rgb[edge] <= a[edge, None] + 1e-3).all(), "edge pixels brighter than their coverage allows (Standard view)"
    scene.adain.enabled = False
    plain = _render_exr(scene, tmp_path / "plain.exr")
    np.testing.assert_array_equal(a, plain[..., 3])
    assert np.abs(rgb[a == 1] - plain[..., :3][a == 1]).mean() > 0.02, "the opaque part is stylized"


def test_keyframed_style_weights_morph_between_styles(model_backend: str, tmp_path: Path) -> None:
    """A slot with two styles whose weights are keyed (1, 0) -> (0, 1): the first frame is the first style alone,
    the last the second alone (checked against stills of each), the middle one between them."""
    scene = fresh_scene(width=96, height=72)
    slot = set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    slot.styles.add().image = bpy.data.images.load(str(SAMPLES / STYLE_COOL), check_existing=True)
    warm, cool = slot.styles
    scene.frame_start, scene.frame_end = 1, 3
    for frame, w in ((1, 1.0), (3, 0.0)):
        warm.weight, cool.weight = w, 1.0 - w
        warm.keyframe_insert("weight", frame=frame)
        cool.keyframe_insert("weight", frame=frame)
    scene.render.filepath = str(tmp_path / "morph_")
    bpy.ops.render.render(animation=True)
    assert sorted(SESSION.status.stylized_frames) == [1, 2, 3], SESSION.status.message
    frames = [read_png(Path(scene.render.frame_path(frame=f))) for f in (1, 2, 3)]
    scene.animation_data_clear()  # each end against a still with that style alone
    slot.styles.remove(1)
    slot.styles[0].weight = 1.0
    scene.frame_set(1)
    warm_only = render_still(scene, tmp_path / "warm.png")
    slot.styles[0].image = bpy.data.images.load(str(SAMPLES / STYLE_COOL), check_existing=True)
    cool_only = render_still(scene, tmp_path / "cool.png")
    assert np.abs(frames[0] - warm_only).max() <= 2 and np.abs(frames[2] - cool_only).max() <= 2
    between = np.abs(frames[1] - warm_only).mean(), np.abs(frames[1] - cool_only).mean()
    assert min(between) > 1.0, f"the middle frame should be a mix, not one of the styles: {between}"


def test_slot_passes_are_render_passes(model_backend: str) -> None:
    scene = fresh_scene(width=64, height=48)
    set_slot(scene, 0, "Warm", "OBJECTS", STYLE_WARM, ("Cube",))
    scene.adain.slot_passes = True
    scene.view_layers[0].update_render_passes()
    tree = scene.compositing_node_group if bpy.app.version >= (5, 0, 0) else scene.node_tree
    rl = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers")
    assert "AdaIN" in rl.outputs and "AdaIN Warm" in rl.outputs


def test_multilayer_exr_carries_the_adain_passes(model_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=64, height=48)
    set_slot(scene, 0, "Warm", "OBJECTS", STYLE_WARM, ("Cube",))
    scene.adain.slot_passes = True
    fmt = scene.render.image_settings
    if bpy.app.version >= (5, 0, 0):  # 5.0 chooses multilayer by media type
        fmt.media_type = "MULTI_LAYER_IMAGE"
        fmt.file_format = "OPEN_EXR_MULTILAYER"
    else:
        fmt.file_format = "OPEN_EXR_MULTILAYER"
    scene.render.filepath = str(tmp_path / "frame.exr")
    bpy.ops.render.render(write_still=True)
    assert SESSION.status.ok, SESSION.status.message
    header = (tmp_path / "frame.exr").read_bytes()[:65536]  # the channel list is plain text in the header
    for channel in (b"ViewLayer.AdaIN.R", b"ViewLayer.AdaIN Warm.R", b"Combined.R"):
        assert channel in header, f"{channel!r} missing from the EXR's channels"


# ------------------------------------------------------------------------------ failures
def test_dead_backend_keeps_the_plain_render_and_reruns_resume(dead_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=64, height=48)
    set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    scene.frame_start, scene.frame_end = 1, 2
    scene.render.filepath = str(tmp_path / "anim_")
    # the error is reported (the operator raises it in scripts) and the animation stops at the failed frame
    with pytest.raises(RuntimeError, match="no AdaIN backend"):
        bpy.ops.render.render(animation=True)
    assert not SESSION.status.ok
    assert "no AdaIN backend" in SESSION.status.message and "plain render is kept" in SESSION.status.message
    assert SESSION.status.failed_frames == {1}
    assert not list(tmp_path.iterdir()), "a frame that was not stylized must not be written as if it were"
    # the render window keeps the plain render
    bpy.data.images["Render Result"].save_render(str(tmp_path / "kept.png"), scene=scene)
    kept = read_png(tmp_path / "kept.png")
    scene.adain.enabled = False
    scene.frame_set(1)
    plain = render_still(scene, tmp_path / "plain.png")
    assert np.abs(kept - plain).max() <= 1

    # the backend comes back (identity mode is enough): re-running renders exactly the missing frames
    os.environ["ADAIN_BACKEND_COMMAND"] = backend_command("--identity", "--device", "cpu")
    scene.adain.enabled = True
    scene.render.use_overwrite = False
    for p in tmp_path.iterdir():
        p.unlink()
    scene.render.filepath = str(tmp_path / "anim_")
    bpy.ops.render.render(animation=True)
    assert SESSION.status.ok, SESSION.status.message
    assert sorted(SESSION.status.stylized_frames) == [1, 2]
    assert (tmp_path / "anim_0001.png").is_file() and (tmp_path / "anim_0002.png").is_file()


def test_a_slot_s_style_size(identity_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=32, height=24)
    slot = set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    slot.style_size = 128  # this slot's own style scale
    render_still(scene, tmp_path / "a.png")
    assert SESSION.status.ok, SESSION.status.message
    slot.style_size = 32
    with pytest.raises(RuntimeError, match="style size 32 is too small"):
        render_still(scene, tmp_path / "b.png")


def test_slot_without_style_is_reported(identity_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=64, height=48)
    slot = set_slot(scene, 0, "Empty", "MATERIALS", STYLE_WARM, ("Red",))
    slot.styles.clear()
    with pytest.raises(RuntimeError, match="has no style image"):
        render_still(scene, tmp_path / "out.png")
    bpy.data.images["Render Result"].save_render(str(tmp_path / "kept.png"), scene=scene)
    out = read_png(tmp_path / "kept.png")
    assert not SESSION.status.ok
    assert "has no style image" in SESSION.status.message
    scene.adain.enabled = False
    assert np.abs(out - render_still(scene, tmp_path / "plain.png")).max() == 0


def test_esc_cancels_the_backend_request_keeps_the_plain_render_and_the_next_render_works(
    model_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Esc in Blender makes ``RenderEngine.test_break()`` true; the bpy module has no window to press it in, and
    ``test_break`` is a C function that Python cannot replace on the engine, so ``render_result.esc_pressed`` (the add-on's
    one call of it) answers True, as after Esc pressed once the frame has been sent (the add-on polls it every 0.1 s
    while it waits for the backend). The rest is real: Cycles, the backend, the cancel request, the plain frame."""
    scene = fresh_scene(width=128, height=96)
    set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    render_still(scene, tmp_path / "warm_up.png")  # style put and model warm, so the next request is a frame only
    calls: list[int] = []

    def esc_pressed(engine: object) -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(render_result, "esc_pressed", esc_pressed)
    with pytest.raises(RuntimeError, match="cancelled"):
        render_still(scene, tmp_path / "cancelled.png")
    assert calls and not SESSION.status.ok and "cancelled" in SESSION.status.message
    bpy.data.images["Render Result"].save_render(str(tmp_path / "kept.png"), scene=scene)
    kept = read_png(tmp_path / "kept.png")
    monkeypatch.undo()
    stylized = render_still(scene, tmp_path / "after.png")  # the client and backend are fine afterwards
    assert SESSION.status.ok, SESSION.status.message
    scene.adain.enabled = False
    plain = render_still(scene, tmp_path / "plain.png")
    assert np.abs(kept - plain).max() <= 1, "a cancelled frame shows the plain render"
    assert np.abs(stylized - plain).mean() > 3.0
