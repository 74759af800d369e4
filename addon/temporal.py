"""Temporal smoothing of stylized animations along the render's motion vectors (no bpy).

Stylizing each frame on its own makes textures flicker and swim: the network answers a slightly different frame
(a moved camera, Cycles' noise with an animated seed) with a slightly different pattern. Cycles knows where every
pixel was one frame earlier (its Vector pass), so each stylized frame is blended with the previous *smoothed*
frame, moved there:

    out_t = (1 - w) * stylized_t + w * warp(out_{t-1}),    w = strength * valid

``valid`` says the surface is the same: the render itself, moved the same way, must match the current render
(within ``TOLERANCE`` of display values, softly). Where something appears from behind another object, leaves the
frame or changes colour, the frame keeps its own stylization, so moving objects leave no trails.

Render farms split an animation into chunks that run on different machines. The recursion remembers every frame
before, weighted ``strength**n``, so a chunk starts by stylizing ``seed_frames(strength)`` frames before its first
one without writing them (``render.seed_history``): its first frame then comes out as in one long run, within half
an 8-bit level.

Images are (H, W, C) float32 display-referred with rows top to bottom. ``flow_from_vector`` turns Blender's
Vector pass (rows bottom to top, y up: x and y of the offset to the pixel's position in the previous frame, then
the same toward the next frame) into that row order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from adain_wire.options import MOTION_TOLERANCE  # px a motion's round trip may miss by: blend fully below, not above
from adain_wire.options import SMOOTH_TOLERANCE as TOLERANCE  # mean |RGB| difference of the renders: the same

SEED_ERROR = 0.5 / 255  # what the frames before the seed may still change a chunk's first frame by (half a level)
MAX_SEED_FRAMES = 64


def seed_frames(strength: float) -> int:
    """How many frames before a chunk's first one to stylize (and not write) so that the chunk comes out as in one
    long run within SEED_ERROR: what is older than that reaches the chunk's first frame weighted strength**n."""
    if strength <= 0.0:
        return 0
    return min(MAX_SEED_FRAMES, max(1, math.ceil(math.log(SEED_ERROR) / math.log(strength))))


def flow_from_vector(vector: np.ndarray) -> np.ndarray:
    """Blender's (H, W, 4) Vector pass, bottom row first -> (H, W, 2) offsets (dx, drow) to where each pixel was in
    the previous frame, top row first."""
    if vector.ndim != 3 or vector.shape[2] != 4:
        raise ValueError(f"the Vector pass must be (H, W, 4), got {vector.shape}")
    v = vector[::-1]
    return np.ascontiguousarray(np.stack([v[..., 0], -v[..., 1]], axis=-1), np.float32)


def next_flow_from_vector(vector: np.ndarray) -> np.ndarray:
    """Blender's (H, W, 4) Vector pass, bottom row first -> (H, W, 2) offsets (dx, drow) to where each pixel will be
    in the next frame, top row first. Blender writes its last two channels as "current minus next" (x, y up), the
    opposite sense of the first two: a surface in steady motion has the vector (a, b, a, b). (Checked against real
    Cycles renders in tests/blender/test_warp_error.py.)"""
    if vector.ndim != 3 or vector.shape[2] != 4:
        raise ValueError(f"the Vector pass must be (H, W, 4), got {vector.shape}")
    v = vector[::-1]
    return np.ascontiguousarray(np.stack([-v[..., 2], v[..., 3]], axis=-1), np.float32)


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``image`` (H, W, C) at each pixel + ``flow`` (H, W, 2: dx, drow), bilinearly.

    Returns the warped image (float32) and an (H, W) bool mask of the pixels whose source lies inside the image.
    The four neighbours are gathered from the flattened image with one ``take`` each, and the interpolation runs
    in place: a 1080p frame of 6 channels costs a third of what 2-D fancy indexing did (scripts/bench_temporal.py).
    """
    h, w = image.shape[:2]
    if flow.shape != (h, w, 2):
        raise ValueError(f"flow must be ({h}, {w}, 2) for a {h}x{w} image, got {flow.shape}")
    return _warp_rows(image, flow, 0)


def _warp_rows(image: np.ndarray, flow: np.ndarray, row0: int) -> tuple[np.ndarray, np.ndarray]:
    """``warp`` for the rows row0 .. row0 + len(flow) of the output (``flow`` holds just those rows)."""
    h, w = image.shape[:2]
    sx = flow[..., 0] + np.arange(w, dtype=np.float32)[None, :]
    sy = flow[..., 1] + np.arange(row0, row0 + flow.shape[0], dtype=np.float32)[:, None]
    inside = (sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)
    np.clip(sx, 0.0, w - 1.0, out=sx)
    np.clip(sy, 0.0, h - 1.0, out=sy)
    x0 = sx.astype(np.intp)  # (sx >= 0: truncation is floor)
    y0 = sy.astype(np.intp)
    np.minimum(x0, max(w - 2, 0), out=x0)
    np.minimum(y0, max(h - 2, 0), out=y0)
    fx = (sx - x0)[..., None]
    fy = (sy - y0)[..., None]
    dx, dy = min(1, w - 1), (w if h > 1 else 0)  # the right and lower neighbours' offsets (0 on a 1-pixel side)
    flat = np.ascontiguousarray(image, np.float32).reshape(h * w, -1)
    idx = y0 * w + x0
    top = flat.take(idx, axis=0)
    right = flat.take(idx + dx, axis=0)
    right -= top
    right *= fx
    top += right
    bottom = flat.take(idx + dy, axis=0)
    corner = flat.take(idx + (dy + dx), axis=0)
    corner -= bottom
    corner *= fx
    bottom += corner
    bottom -= top
    bottom *= fy
    top += bottom
    return top, inside


def blend_weight(content: np.ndarray, warped_content: np.ndarray, inside: np.ndarray, strength: float) -> np.ndarray:
    """(H, W) weight of the previous frame: ``strength`` where the moved render matches, 0 where it does not."""
    lo, hi = TOLERANCE
    diff = np.abs(content[..., :3] - warped_content[..., :3])
    err = diff.sum(axis=-1)
    err *= np.float32(-strength / (3.0 * (hi - lo)))  # strength * (hi - mean err) / (hi - lo), clipped to [0, strength]
    err += np.float32(strength * hi / (hi - lo))
    np.clip(err, 0.0, strength, out=err)
    err *= inside
    return err.astype(np.float32, copy=False)


def smooth(
    stylized: np.ndarray, content: np.ndarray, prev_out: np.ndarray, prev_content: np.ndarray, flow: np.ndarray, strength: float
) -> np.ndarray:
    """One step of the recursion in the module docstring; all images (H, W, 3) float32, top row first."""
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"strength must be within [0, 1), got {strength}")
    c = prev_out.shape[-1]
    return _smooth_packed(stylized, content, np.concatenate([prev_out, prev_content[..., :3]], axis=-1), c, flow, strength)


def _smooth_packed(
    stylized: np.ndarray, content: np.ndarray, prev: np.ndarray, c: int, flow: np.ndarray, strength: float
) -> np.ndarray:
    """``smooth`` with the previous output and render packed side by side (H, W, c + 3), as ``Smoother`` keeps them,
    and optionally the previous frame's motion toward the next frame after them (H, W, c + 5): then a pixel is only
    blended where the motion is consistent both ways (it was not hidden in the previous frame: a surface uncovered
    behind a moving object takes nothing from what covered it, even where the two look alike).

    Runs in horizontal bands on a thread pool (numpy releases the GIL in its gathers and arithmetic), one band per
    ``BAND_ROWS`` rows: each band reads the whole previous frame and writes only its own rows."""
    h = stylized.shape[0]
    out = np.empty(stylized.shape, np.float32)
    prev = np.ascontiguousarray(prev, np.float32)

    def band(r0: int) -> None:
        r1 = min(h, r0 + BAND_ROWS)
        both, inside = _warp_rows(prev, flow[r0:r1], r0)
        wt = blend_weight(content[r0:r1], both[..., c : c + 3], inside, strength)
        if both.shape[-1] == c + 5:  # the round trip back to the previous frame and forward again must come home
            trip = np.hypot(flow[r0:r1, :, 0] + both[..., c + 3], flow[r0:r1, :, 1] + both[..., c + 4])
            lo, hi = MOTION_TOLERANCE
            wt *= np.clip((hi - trip) / (hi - lo), 0.0, 1.0)
        wt = wt[..., None]
        part = both[..., :c]
        part -= stylized[r0:r1]  # stylized + wt * (previous - stylized)
        part *= wt
        part += stylized[r0:r1]
        out[r0:r1] = part

    starts = range(0, h, BAND_ROWS)
    if len(starts) == 1 or WORKERS == 1:
        for r0 in starts:
            band(r0)
    else:
        list(_pool().map(band, starts))
    return out


BAND_ROWS = 128  # rows per band of work: 1080p makes 9 bands
WORKERS = max(1, min(8, os.cpu_count() or 1))  # threads that smooth bands at once (1: on the calling thread)
_executor: dict[int, ThreadPoolExecutor] = {}  # the pool, by its number of threads (WORKERS when it was made)


def _pool() -> ThreadPoolExecutor:
    """The module's thread pool, made on first use and again when WORKERS changed (idle threads are joined at exit)."""
    if WORKERS not in _executor:
        for old in _executor.values():
            old.shutdown(wait=False)
        _executor.clear()
        _executor[WORKERS] = ThreadPoolExecutor(WORKERS, thread_name_prefix="adain-smooth")
    return _executor[WORKERS]


@dataclass(frozen=True, eq=False)
class _Previous:
    frame: int
    packed: np.ndarray  # (H, W, C + 3 [+ 2]): the smoothed output, the render's display RGB [, its motion to the next]
    channels: int  # C


class Smoother:
    """The previous smoothed frame per view layer, for one animation render (``reset`` at each new render)."""

    def __init__(self) -> None:
        self._previous: dict[str, _Previous] = {}

    def reset(self) -> None:
        self._previous.clear()

    def apply(
        self,
        key: str,
        frame: int,
        stylized: np.ndarray,
        content: np.ndarray,
        flow: np.ndarray | None,
        strength: float,
        next_flow: np.ndarray | None = None,
        remote: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, bool]:
        """Smooth frame ``frame`` of ``key`` with the previous one when it is frame - 1 of the same size and a flow
        is given; remember the result either way. ``next_flow`` (this frame's motion toward the next one,
        ``next_flow_from_vector``) lets the next frame check that its pixels were not hidden in this one.
        ``remote(stylized, content, history, flow, strength)`` runs the step elsewhere (the backend's device:
        ``smooth_backend``); where it returns None, the step runs here. Returns (the frame, whether it was
        smoothed)."""
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be within [0, 1), got {strength}")
        prev = self._previous.get(key)
        out, smoothed = stylized, False
        c = stylized.shape[-1]
        usable = prev is not None and prev.frame == frame - 1 and prev.packed.shape[:2] == stylized.shape[:2]
        if strength > 0.0 and flow is not None and usable and prev is not None and prev.channels == c:
            done = None if remote is None else remote(stylized, content[..., :3], prev.packed, flow, strength)
            if done is None:
                done = _smooth_packed(stylized, content[..., :3], prev.packed, c, flow, strength)
            out, smoothed = done, True
        parts = [out, content[..., :3], *([next_flow] if next_flow is not None else [])]
        self._previous[key] = _Previous(frame, np.concatenate(parts, axis=-1, dtype=np.float32), c)
        return out, smoothed
