"""The render hook's arithmetic, without bpy (unit-tested anywhere): what a frame asks and how its answer is stored.

- ``SceneSnapshot``: everything a frame needs from the scene, read while Blender's evaluated scene exists;
- ``build_job``: the frame's request, with each slot's soft mask composed from Cryptomatte coverage;
- ``covering``: a Cryptomatte pass list trimmed to the ranks that cover anything;
- ``unpremultiply`` / ``premultiply``: render passes are premultiplied by alpha, the network works on straight colour;
- ``srgb_encode``: scene-linear to sRGB-encoded values, as a display shows them (style images in float buffers);
- ``PASS`` and ``slot_pass_name``: the names of the render passes the add-on writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import cryptomatte
from .frames import FrameError, FrameJob, SlotJob, rendered_only

if TYPE_CHECKING:
    from .colour import View

PASS = "AdaIN"  # the stylized frame; "AdaIN <slot>" per slot when the scene asks for slot passes


def slot_pass_name(slot_name: str) -> str:
    return f"{PASS} {slot_name}"


@dataclass(frozen=True)
class SlotSnapshot:
    job: SlotJob
    target: str  # OBJECTS, MATERIALS or OTHER
    names: frozenset[str]  # the objects or materials it covers (empty for OTHER)


@dataclass(frozen=True)
class SceneSnapshot:
    """Everything a frame needs from the scene, read while the evaluated scene exists (alphas as keyframed)."""

    frame: int
    enabled: bool
    view: View
    slots: tuple[SlotSnapshot, ...] = ()
    slot_passes: bool = False
    style_size: int = 512
    tile: int | None = None
    error: str = ""  # the scene's settings are unusable: the frame fails with this message
    scene: str = ""
    temporal: float = 0.0
    motion_blur: bool = False
    warnings: tuple[str, ...] = ()  # why the output would not show the stylized frame (compositor settings)


def covering(passes: list[np.ndarray]) -> list[np.ndarray]:
    """The passes up to the last one that covers anything (ranks are sorted by coverage; one is always kept)."""
    n = 1
    for i, p in enumerate(passes):
        if np.any(p[..., 1]) or np.any(p[..., 3]):
            n = i + 1
    return passes[:n]


def build_job(
    snap: SceneSnapshot, crypto_passes: Callable[[str], list[np.ndarray]], display: np.ndarray, w: int, h: int
) -> FrameJob:
    """The frame's request: slots and their soft masks from Cryptomatte (``crypto_passes("Object")`` or
    ``("Material")`` gives a kind's passes, in Blender's row order), rows top to bottom.

    A slot of objects or materials gets their coverage; the "everything else" slots share what the others leave
    (equally, when there are several). One slot alone that covers everything needs no mask. Pixels the render
    left empty (alpha 0) belong to no slot.
    """
    crypto: dict[str, list[np.ndarray]] = {}
    masks: list[np.ndarray | None] = []
    others = 0
    for slot in snap.slots:
        if slot.target == "OTHER":
            others += 1
            masks.append(None)
            continue
        kind = "Material" if slot.target == "MATERIALS" else "Object"
        if kind not in crypto:
            crypto[kind] = crypto_passes(kind)
            if not crypto[kind]:
                raise FrameError(
                    f"slot {slot.job.name!r} targets {slot.target.lower()} but the view layer has no Cryptomatte {kind} "
                    f"pass: press 'Set up AdaIN' in the AdaIN panel (or enable View Layer > Passes > Cryptomatte > {kind})"
                )
        masks.append(cryptomatte.coverage(crypto[kind], slot.names)[::-1])
    mask_arr = None
    if len(snap.slots) > 1 or others == 0:
        covered = np.zeros((h, w), np.float32)
        for m in masks:
            if m is not None:
                covered += m
        rest = np.clip(1.0 - covered, 0.0, 1.0) / max(others, 1)
        mask_arr = np.stack([rest if m is None else m for m in masks]).astype(np.float32)
    image = np.ascontiguousarray(display[::-1, :, :3])
    mask_arr = rendered_only(mask_arr, display[::-1, :, 3], len(snap.slots))
    return FrameJob(image, tuple(s.job for s in snap.slots), mask_arr, snap.slot_passes, snap.tile)


def unpremultiply(rgba: np.ndarray) -> np.ndarray:
    """Straight colour from a premultiplied (H, W, 4) pass: colour divided by alpha; 0 where alpha is 0. A copy."""
    alpha = rgba[..., 3:4]
    straight = rgba.copy()
    straight[..., :3] = np.where(alpha > 0.0, rgba[..., :3] / np.where(alpha > 0.0, alpha, 1.0), 0.0)
    return straight


def premultiply(rgba: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgba`` (H, W, 4) with its colour multiplied by ``alpha`` (H, W, 1) and that alpha in channel 3, in place."""
    rgba[..., :3] *= alpha
    rgba[..., 3] = alpha[..., 0]
    return rgba


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Scene-linear values -> sRGB-encoded (the piecewise IEC 61966-2-1 curve), clipped to [0, 1] first."""
    rgb = np.clip(linear, 0.0, 1.0)
    return np.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * rgb ** (1 / 2.4) - 0.055)
