"""Scene-linear render <-> display-referred pixels, through the scene's own colour management (bpy).

The network was trained on display-referred sRGB images, so a render goes to it the way the artist sees it:

- forward: the scene-linear Combined pass is put in a scratch image and saved "as render" (16-bit PNG) with a
  private scene carrying the user's view transform, look, exposure, gamma and display: Blender's OpenColorIO
  applies exactly what the final render gets;
- back: the stylized display values are written as a 16-bit PNG and loaded into a scratch image whose colour
  space is the view's display encoding ("AgX Base sRGB", "Filmic sRGB", "sRGB"...), so Blender's OpenColorIO
  inverts the view; exposure and gamma are undone here (gamma before, exposure after).

The compositor and the final view transform then reproduce the network's output; an identity backend gives back
the plain render (tests/blender checks within 1/255). Looks and curves cannot be inverted: ``check_view`` says so.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from .frames import FrameError
from .png16 import write_png16

PRIVATE_SCENE = ".AdaIN Colour"
IMG_LINEAR, IMG_DISPLAY, IMG_BACK = ".AdaIN linear", ".AdaIN display", ".AdaIN back"
_VIEW_SPACE = {
    "AgX": "AgX Base {display}",
    "Filmic": "Filmic sRGB",
    "Khronos PBR Neutral": "Khronos PBR Neutral sRGB",
    "Raw": "Non-Color",
    "Standard": "{display}",
}
_tmp: Path | None = None


@dataclass(frozen=True)
class View:
    """A scene's colour management, read once per frame (evaluated: exposure and gamma may be keyframed)."""

    view_transform: str
    display: str
    look: str = "None"
    exposure: float = 0.0
    gamma: float = 1.0
    use_curves: bool = False

    @classmethod
    def of(cls, scene: bpy.types.Scene) -> View:
        v = scene.view_settings
        return cls(v.view_transform, scene.display_settings.display_device, v.look, float(v.exposure), float(v.gamma),
                   bool(v.use_curve_mapping))  # fmt: skip


def _tmpdir() -> Path:
    global _tmp
    if _tmp is None or not _tmp.is_dir():
        _tmp = Path(tempfile.mkdtemp(prefix="adain-colour-"))
    return _tmp


def view_colourspace(v: View) -> str:
    """The colour space whose decoding inverts the scene's view transform on its display."""
    view, display = v.view_transform, v.display
    pattern = _VIEW_SPACE.get(view)
    if pattern is None:
        raise FrameError(
            f"the view transform {view!r} cannot be inverted, so a stylized frame would not come back as the network "
            f"made it: use Standard, AgX, Filmic or Khronos PBR Neutral (Render properties > Colour Management)"
        )
    return pattern.format(display=display)


def check_view(vs: View) -> list[str]:
    """Warnings about colour settings the round trip cannot honour exactly."""
    out = []
    if vs.look not in ("None", "") and not vs.look.endswith("Base Contrast"):
        out.append(f"look {vs.look!r} is applied again after stylization; set Look to None for an exact round trip")
    if vs.use_curves:
        out.append("view curves are applied again after stylization; turn Use Curves off for an exact round trip")
    return out


def _private_scene(u: View) -> bpy.types.Scene:
    priv = bpy.data.scenes.get(PRIVATE_SCENE)
    if priv is None:
        priv = bpy.data.scenes.new(PRIVATE_SCENE)
        priv.use_fake_user = False
    f = priv.render.image_settings
    f.file_format = "PNG"
    f.color_mode = "RGBA"
    f.color_depth = "16"
    f.compression = 0
    if hasattr(f, "color_management"):
        f.color_management = "FOLLOW_SCENE"
    priv.display_settings.display_device = u.display
    v = priv.view_settings
    v.view_transform = u.view_transform
    v.look = u.look
    v.exposure = u.exposure
    v.gamma = u.gamma
    v.use_curve_mapping = False
    return priv


def prepare() -> None:
    """Create the private scene and the scratch images now, on the main thread (an operator, a load handler),
    so that renders only reuse them: creating datablocks from Blender's render thread is not safe in the UI."""
    if bpy.data.scenes.get(PRIVATE_SCENE) is None:
        bpy.data.scenes.new(PRIVATE_SCENE)
    for name in (IMG_LINEAR, IMG_DISPLAY, IMG_BACK):
        if bpy.data.images.get(name) is None:
            bpy.data.images.new(name, 1, 1, alpha=True, float_buffer=True)


def _scratch(name: str, w: int, h: int, float_buffer: bool = True) -> bpy.types.Image:
    img = bpy.data.images.get(name)
    if img is None:
        img = bpy.data.images.new(name, w, h, alpha=True, float_buffer=float_buffer)
    elif tuple(img.size) != (w, h):
        img.scale(w, h)
    return img


def _read(img: bpy.types.Image, w: int, h: int) -> np.ndarray:
    if tuple(img.size) != (w, h):
        raise FrameError(f"internal: image {img.name} is {tuple(img.size)}, expected {(w, h)}")
    out = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(out)
    return out.reshape(h, w, 4)


def _load(name: str, path: Path, colourspace: str) -> bpy.types.Image:
    img = bpy.data.images.get(name)
    if img is None:
        img = bpy.data.images.load(os.fspath(path), check_existing=False)
        img.name = name
    else:
        img.filepath = os.fspath(path)
    img.source = "FILE"
    try:
        img.colorspace_settings.name = colourspace
    except TypeError as e:
        raise FrameError(f"Blender's colour configuration has no colour space {colourspace!r}: {e}") from e
    img.reload()
    return img


def to_display(view: View, linear: np.ndarray) -> np.ndarray:
    """(H, W, 4) scene-linear, Blender row order -> (H, W, 4) display-referred in [0, 1], same row order."""
    h, w = linear.shape[:2]
    priv = _private_scene(view)
    src = _scratch(IMG_LINEAR, w, h)
    src.pixels.foreach_set(np.ascontiguousarray(linear, np.float32).ravel())
    path = _tmpdir() / "forward.png"
    src.save_render(os.fspath(path), scene=priv)
    disp = _load(IMG_DISPLAY, path, "Non-Color")
    return _read(disp, w, h).copy()


def _inverse(vs: View, rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if vs.gamma != 1.0:
        rgb = rgb ** float(vs.gamma)
    rgba = np.concatenate([rgb, np.ones((h, w, 1), np.float32)], axis=2)
    path = _tmpdir() / "back.png"
    write_png16(path, rgba[::-1], level=0)  # PNG rows run top to bottom, Blender's bottom to top; read at once
    back = _read(_load(IMG_BACK, path, view_colourspace(vs)), w, h).copy()
    if vs.exposure != 0.0:
        back[..., :3] *= np.float32(2.0 ** -float(vs.exposure))
    return back


def to_linear(
    vs: View,
    display: np.ndarray,
    anchor: tuple[np.ndarray, np.ndarray] | None = None,
    refine: bool | None = None,
) -> np.ndarray:
    """(H, W, 3|4) display-referred, Blender row order -> (H, W, 4) scene-linear that the view maps back to it.

    Views built on 3D LUTs (AgX, Filmic...) are inverted by other LUTs, which are off by a few 1/255 in places
    and cannot invert colours the view has squeezed together (saturated highlights). Two remedies:

    - ``anchor`` = (the render's scene-linear pixels, their display values from ``to_display``): the result is
      the render plus the *change* the network made, ``L0 + G(d) - G(d0)``, so the inverse's own error cancels
      (an unchanged pixel comes back exactly as rendered);
    - ``refine`` (default: every view but Standard and Raw) runs the forward view once on the result and
      corrects by what is still off.
    """
    view_colourspace(vs)  # fail early, before any work, on a view that cannot be inverted
    h = display.shape[0]
    rgb = np.clip(np.asarray(display[..., :3], np.float32), 0.0, 1.0)
    if anchor is None:
        g_rgb = _inverse(vs, rgb)
        base = g_rgb.copy()
    else:
        lin0, disp0 = anchor
        both = _inverse(vs, np.concatenate([rgb, np.clip(disp0[..., :3], 0.0, 1.0)], axis=0))
        g_rgb = both[:h]
        base = g_rgb.copy()
        base[..., :3] += lin0[..., :3] - both[h:, :, :3]
    if refine is None:
        refine = vs.view_transform not in ("Standard", "Raw")
    if refine:  # the inverse is per pixel, so G(rgb) from above is reused: one more inverse, not two
        again = to_display(vs, base)[..., :3]
        g = _inverse(vs, np.clip(rgb + (rgb - again), 0.0, 1.0))
        base[..., :3] += g[..., :3] - g_rgb[..., :3]
    return base
