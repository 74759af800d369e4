"""Temporal smoothing of stylized animations along the render's motion vectors (no bpy).

Stylizing each frame on its own makes textures flicker and swim: the network answers a slightly different frame
(a moved camera, Cycles' noise with an animated seed) with a slightly different pattern. Cycles knows where every
pixel was one frame earlier (its Vector pass), so each stylized frame is blended with the previous *smoothed*
frame, moved there:

    out_t = (1 - w) * stylized_t + w * warp(out_{t-1}),    w = strength * valid

``valid`` says the surface is the same: the render itself, moved the same way, must match the current render
(within ``TOLERANCE`` of display values, softly). Where something appears from behind another object, leaves the
frame or changes colour, the frame keeps its own stylization, so moving objects leave no trails.

Images are (H, W, C) float32 display-referred with rows top to bottom. ``flow_from_vector`` turns Blender's
Vector pass (rows bottom to top, y up: x and y of the offset to the pixel's position in the previous frame, then
the same toward the next frame) into that row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE = (0.04, 0.12)  # mean |RGB| difference of the renders: blend fully below, not at all above


def flow_from_vector(vector: np.ndarray) -> np.ndarray:
    """Blender's (H, W, 4) Vector pass, bottom row first -> (H, W, 2) offsets (dx, drow) to where each pixel was in
    the previous frame, top row first."""
    if vector.ndim != 3 or vector.shape[2] != 4:
        raise ValueError(f"the Vector pass must be (H, W, 4), got {vector.shape}")
    v = vector[::-1]
    return np.ascontiguousarray(np.stack([v[..., 0], -v[..., 1]], axis=-1), np.float32)


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``image`` (H, W, C) at each pixel + ``flow`` (H, W, 2: dx, drow), bilinearly.

    Returns the warped image and an (H, W) bool mask of the pixels whose source lies inside the image.
    """
    h, w = image.shape[:2]
    if flow.shape != (h, w, 2):
        raise ValueError(f"flow must be ({h}, {w}, 2) for a {h}x{w} image, got {flow.shape}")
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    sx = cols + flow[..., 0]
    sy = rows + flow[..., 1]
    inside = (sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)
    sx = np.clip(sx, 0.0, w - 1.0)
    sy = np.clip(sy, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(sx).astype(np.intp), max(w - 2, 0))
    y0 = np.minimum(np.floor(sy).astype(np.intp), max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx = (sx - x0)[..., None]
    fy = (sy - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32), inside


def blend_weight(content: np.ndarray, warped_content: np.ndarray, inside: np.ndarray, strength: float) -> np.ndarray:
    """(H, W) weight of the previous frame: ``strength`` where the moved render matches, 0 where it does not."""
    lo, hi = TOLERANCE
    err = np.abs(content[..., :3] - warped_content[..., :3]).mean(axis=-1)
    valid = np.clip((hi - err) / (hi - lo), 0.0, 1.0) * inside
    return (np.float32(strength) * valid).astype(np.float32)


def smooth(
    stylized: np.ndarray, content: np.ndarray, prev_out: np.ndarray, prev_content: np.ndarray, flow: np.ndarray, strength: float
) -> np.ndarray:
    """One step of the recursion in the module docstring; all images (H, W, 3) float32, top row first."""
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"strength must be within [0, 1), got {strength}")
    both, inside = warp(np.concatenate([prev_out, prev_content[..., :3]], axis=-1), flow)
    c = prev_out.shape[-1]
    wt = blend_weight(content, both[..., c:], inside, strength)[..., None]
    return (stylized * (1 - wt) + both[..., :c] * wt).astype(np.float32)


@dataclass(frozen=True, eq=False)
class _Previous:
    frame: int
    out: np.ndarray
    content: np.ndarray


class Smoother:
    """The previous smoothed frame per view layer, for one animation render (``reset`` at each new render)."""

    def __init__(self) -> None:
        self._previous: dict[str, _Previous] = {}

    def reset(self) -> None:
        self._previous.clear()

    def apply(
        self, key: str, frame: int, stylized: np.ndarray, content: np.ndarray, flow: np.ndarray | None, strength: float
    ) -> tuple[np.ndarray, bool]:
        """Smooth frame ``frame`` of ``key`` with the previous one when it is frame - 1 of the same size and a flow
        is given; remember the result either way. Returns (the frame, whether it was smoothed)."""
        prev = self._previous.get(key)
        out, smoothed = stylized, False
        usable = prev is not None and prev.frame == frame - 1 and prev.out.shape == stylized.shape
        if strength > 0.0 and flow is not None and usable:
            assert prev is not None
            out, smoothed = smooth(stylized, content[..., :3], prev.out, prev.content, flow, strength), True
        self._previous[key] = _Previous(frame, out, np.ascontiguousarray(content[..., :3]))
        return out, smoothed
