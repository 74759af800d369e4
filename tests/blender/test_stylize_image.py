"""Stylize Image in real Blender: image datablocks (8-bit sRGB, float scene-linear) stylized with a style slot, through
a real backend subprocess. The identity backend gives the colour round trip (within 1/255); the shipped decoder shows
that the slot's styles and alpha are applied. Scripts run the operator with the image named (``execute``, which
waits); the UI's modal path runs the same ``stylize_image.start``/``finish`` with the task polled from a timer."""

from __future__ import annotations

import time

import bpy
import numpy as np
import pytest

from tests.blender.scene import fresh_scene, set_slot
from tests.blender.test_render import STYLE_WARM

from addon import colour, stylize_image  # isort: skip  (scene.py put the repository on sys.path)
from addon.frames import FrameCancelledError  # isort: skip
from addon.session import SESSION  # isort: skip

W, H = 64, 48


def _pixels(img: bpy.types.Image) -> np.ndarray:
    px = np.empty(img.size[0] * img.size[1] * img.channels, np.float32)
    img.pixels.foreach_get(px)
    return px.reshape(img.size[1], img.size[0], img.channels)


def _byte_photo(name: str = "Photo") -> tuple[bpy.types.Image, np.ndarray]:
    """An 8-bit sRGB image of smooth colour gradients plus noise (values on the 8-bit grid), opaque."""
    img = bpy.data.images.new(name, W, H, alpha=True)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    rng = np.random.default_rng(1)
    rgb = np.stack([x / W, y / H, 0.5 + 0.4 * np.sin(x / 5)], axis=2) + rng.normal(0, 0.05, (H, W, 3))
    px = np.concatenate([np.round(np.clip(rgb, 0, 1) * 255) / 255, np.ones((H, W, 1))], axis=2).astype(np.float32)
    img.pixels.foreach_set(px.ravel())
    img.update()
    return img, _pixels(img)  # as stored: 8 bits


def _float_photo(name: str = "Linear") -> tuple[bpy.types.Image, np.ndarray]:
    """A float (scene-linear) image with values from dark to a little above 1, opaque."""
    img = bpy.data.images.new(name, W, H, alpha=True, float_buffer=True)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    rgb = np.stack([(x / W) ** 2.2, (y / H) ** 2.2 * 1.2, 0.02 + 0.3 * (x * y) / (W * H)], axis=2)
    px = np.concatenate([rgb, np.ones((H, W, 1))], axis=2).astype(np.float32)
    img.pixels.foreach_set(px.ravel())
    img.update()
    assert img.is_float
    return img, px


def test_byte_image_round_trip_new_and_replace(identity_backend: str) -> None:
    scene = fresh_scene(width=32, height=24)
    img, before = _byte_photo()
    assert bpy.ops.adain.stylize_image(image="Photo", slot=0, mode="NEW") == {"FINISHED"}
    new = bpy.data.images["Photo AdaIN"]
    assert not new.is_float and tuple(new.size) == (W, H)
    assert new.packed_file is not None, "the new image's pixels must live in the .blend"
    assert np.abs(_pixels(new) - before).max() <= 1 / 255 + 1e-6
    assert np.array_equal(_pixels(img), before), "NEW must leave the image itself alone"

    assert bpy.ops.adain.stylize_image(image="Photo", slot=0, mode="NEW") == {"FINISHED"}  # again: the same image reused
    assert [i.name for i in bpy.data.images if i.name.startswith("Photo AdaIN")] == ["Photo AdaIN"]

    assert bpy.ops.adain.stylize_image(image="Photo", slot=0, mode="REPLACE") == {"FINISHED"}
    assert np.abs(_pixels(img) - before).max() <= 1 / 255 + 1e-6
    assert img.is_dirty, "replaced pixels are an unsaved edit of the image"
    assert scene.adain.slots[0].styles[0].image is not None


@pytest.mark.parametrize("view", ["Standard", "AgX"])
def test_float_linear_image_round_trip_through_the_view(identity_backend: str, view: str) -> None:
    scene = fresh_scene(width=32, height=24, view=view)
    img, before = _float_photo()
    assert bpy.ops.adain.stylize_image(image="Linear", slot=0, mode="NEW") == {"FINISHED"}
    new = bpy.data.images["Linear AdaIN"]
    assert new.is_float and new.packed_file is not None
    after = _pixels(new)
    vs = colour.View.of(scene)
    seen_before = np.round(colour.to_display(vs, before)[..., :3] * 255)
    seen_after = np.round(colour.to_display(vs, after)[..., :3] * 255)
    diff = np.abs(seen_after - seen_before)
    assert diff.max() <= 1, f"{view}: the image as displayed is off by {diff.max()}/255 at worst"
    assert np.abs(after - before).max() < 0.02, "scene-linear values must come back too"

    assert bpy.ops.adain.stylize_image(image="Linear", slot=0, mode="REPLACE") == {"FINISHED"}
    seen_replaced = np.round(colour.to_display(vs, _pixels(img))[..., :3] * 255)
    assert np.abs(seen_replaced - seen_before).max() <= 1


def test_what_stylize_image_refuses(identity_backend: str) -> None:
    scene = fresh_scene(width=32, height=24)
    img, _ = _byte_photo("Normal map")
    img.colorspace_settings.name = "Non-Color"  # (Blender makes a generated image anew: its pixels are reset)
    before = _pixels(img)
    with pytest.raises(RuntimeError, match=r"Non-Color data .*set its Color Space to sRGB"):
        bpy.ops.adain.stylize_image(image="Normal map", slot=0, mode="REPLACE")
    assert np.array_equal(_pixels(img), before)
    img.colorspace_settings.name = "Linear Rec.709"
    with pytest.raises(RuntimeError, match=r"8-bit image in colour space 'Linear Rec.709'"):
        bpy.ops.adain.stylize_image(image="Normal map", slot=0)
    with pytest.raises(RuntimeError, match=r"no image 'Missing'"):
        bpy.ops.adain.stylize_image(image="Missing")
    img.colorspace_settings.name = "sRGB"
    with pytest.raises(RuntimeError, match=r"has no style slot 5"):
        bpy.ops.adain.stylize_image(image="Normal map", slot=5)
    scene.adain.slots[0].styles.clear()
    with pytest.raises(RuntimeError, match=r"has no style image"):
        bpy.ops.adain.stylize_image(image="Normal map", slot=0)


def test_cancelled_stylize_image_leaves_the_image_and_the_backend_usable(identity_backend: str) -> None:
    scene = fresh_scene(width=32, height=24)
    img, before = _byte_photo()
    with SESSION.client_lock():  # a render is using the backend connection, so the task must wait for it...
        _plan, task = stylize_image.start(scene, img, 0, "REPLACE")
        time.sleep(0.3)
        assert not task.done()
        task.cancel()  # ...and Esc (the modal operator passes it on) ends the wait
        assert task.wait(5)
    with pytest.raises(FrameCancelledError):
        task.result()
    assert np.array_equal(_pixels(img), before)
    assert bpy.ops.adain.stylize_image(image="Photo", slot=0, mode="REPLACE") == {"FINISHED"}


def test_the_slot_style_and_alpha_are_applied(model_backend: str) -> None:
    scene = fresh_scene(width=32, height=24)
    set_slot(scene, 0, "Warm", "OTHER", STYLE_WARM)
    _, before = _byte_photo()
    assert bpy.ops.adain.stylize_image(image="Photo", slot=0, mode="NEW", new_name="Full") == {"FINISHED"}
    full = _pixels(bpy.data.images["Full"])
    assert np.abs(full - before)[..., :3].mean() > 0.03, "the style does not show"
    scene.adain.slots[0].alpha = 0.0  # alpha 0 is the image itself
    assert bpy.ops.adain.stylize_image(image="Photo", slot=0, mode="NEW", new_name="None") == {"FINISHED"}
    assert np.abs(_pixels(bpy.data.images["None"]) - before).max() <= 1 / 255 + 1e-6
