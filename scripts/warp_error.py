"""The warping error of Lai et al. 2018 ("Learning Blind Video Temporal Consistency") on a rendered animation, with
the renderer's exact motion instead of an optical-flow estimate (no bpy: numpy and ``addon.temporal``).

    E = mean over t of  sum_p M_t(p) * ||O_t(p) - W(O_{t-1})(p)||^2  /  sum_p M_t(p)

- ``O_t``: the frames as shown, (H, W, 3) display-referred in [0, 1], rows top to bottom; ||.||^2 sums the three
  channels.
- ``W`` warps the previous frame along Blender's Vector pass, whose first two channels point from each pixel to
  where its surface was one frame earlier (``addon.temporal.flow_from_vector``, bilinear).
- ``M_t``, the non-occlusion mask, comes from the render's own motion: a pixel counts where its source lies inside
  the previous frame and the motion is consistent both ways. Following the vector to the previous frame and then
  that frame's motion to the next frame (the Vector pass's last two channels) must come back to the pixel within
  ``CONSISTENCY_PX``. Surfaces that were hidden in the previous frame, or that leave the frame, fail the test.

The lag figure says how far smoothed frames trail the per-frame ones after a sudden change (a keyed alpha or
style: ``temporal_eval`` finds them in the file's keys; without one, the per-frame sequence's largest jump if it
stands out). Smoothed frames always differ from per-frame ones somewhat (that is the smoothing); after a change the
difference grows. The lag counts the frames until that extra difference, beyond its median before the change, is
down to 1/4 of its peak.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from addon.temporal import flow_from_vector, next_flow_from_vector, warp

CONSISTENCY_PX = 0.5
UNCOVERED_PX = 2.0  # a round trip this far off: clearly uncovered, not a depth edge's blurred vectors (``trail``)


def non_occlusion(vector_t: np.ndarray, vector_prev: np.ndarray, tolerance: float = CONSISTENCY_PX) -> np.ndarray:
    """(H, W) float mask M_t: 1 where frame t's pixel is seen, and consistently moved (within ``tolerance`` px), in
    frame t-1."""
    back = flow_from_vector(vector_t)
    forth_prev, inside = warp(next_flow_from_vector(vector_prev), back)  # frame t-1's forward motion, at where the pixel was
    round_trip = np.linalg.norm(back + forth_prev, axis=-1)
    return (inside & (round_trip < tolerance)).astype(np.float32)


def frame_errors(frames: list[np.ndarray], vectors: list[np.ndarray]) -> list[float]:
    """The masked mean squared difference of each frame t >= 1 with frame t-1 moved onto it."""
    if len(frames) != len(vectors) or len(frames) < 2:
        raise ValueError(f"need as many Vector passes as frames, at least 2; got {len(frames)} and {len(vectors)}")
    out = []
    for t in range(1, len(frames)):
        mask = non_occlusion(vectors[t], vectors[t - 1])
        moved, _ = warp(frames[t - 1], flow_from_vector(vectors[t]))
        sq = ((frames[t] - moved) ** 2).sum(axis=-1)
        out.append(float((sq * mask).sum() / max(float(mask.sum()), 1.0)))
    return out


def warping_error(frames: list[np.ndarray], vectors: list[np.ndarray]) -> float:
    return float(np.mean(frame_errors(frames, vectors)))


def trail(per_frame: list[np.ndarray], smoothed: list[np.ndarray], vectors: list[np.ndarray]) -> tuple[float, float]:
    """Mean |smoothed - per-frame| (over RGB) where something was clearly uncovered (the motion's round trip misses
    by UNCOVERED_PX or more, or comes from outside the frame) and where it was seen (M_t = 1), frames t >= 1.
    Smoothing must leave uncovered pixels to the frame's own stylization, so the first figure should stay near 0,
    while the second shows how much smoothing changed the rest. Pixels in between (depth edges, whose vectors blur
    across the edge) count in neither."""
    uncovered, seen = [], []
    for t in range(1, len(per_frame)):
        clear = non_occlusion(vectors[t], vectors[t - 1], UNCOVERED_PX) < 0.5
        mask = non_occlusion(vectors[t], vectors[t - 1]) > 0.5
        gap = np.abs(smoothed[t] - per_frame[t]).mean(axis=-1)
        uncovered.append(gap[clear])
        seen.append(gap[mask])
    a, b = np.concatenate(uncovered), np.concatenate(seen)
    return (float(a.mean()) if a.size else 0.0), (float(b.mean()) if b.size else 0.0)


@dataclass(frozen=True)
class Lag:
    frame: int | None  # index of the change in the sequence (None: no change stands out)
    frames: int  # frames until the smoothed output's extra distance from the per-frame one fell to 1/4 of its peak
    peak: float  # that peak: mean |smoothed - per-frame| after the change, beyond its median before the change


def lag(per_frame: list[np.ndarray], smoothed: list[np.ndarray], vectors: list[np.ndarray], change: int | None = None) -> Lag:
    """How long the smoothed frames trail the per-frame ones after a change: at index ``change`` (a keyed alpha or
    style change the caller knows of), or else the per-frame sequence's largest jump if it stands out (3x the
    median of the others)."""
    if change is None:
        errors = frame_errors(per_frame, vectors)
        jump = int(np.argmax(errors))
        others = np.delete(np.asarray(errors), jump)
        if len(others) and errors[jump] < 3.0 * float(np.median(others)) + 1e-6:
            return Lag(None, 0, 0.0)
        change = jump + 1  # the index of the frame the change appears in
    gaps = [float(np.abs(smoothed[t] - per_frame[t]).mean()) for t in range(len(per_frame))]
    base = float(np.median(gaps[1:change])) if change > 1 else 0.0  # smoothing's usual distance before the change
    excess = [g - base for g in gaps[change:]]
    peak = max(excess)
    top = int(np.argmax(excess))
    trailing = next((i for i, e in enumerate(excess) if i > top and e <= peak / 4), len(excess))
    return Lag(change, trailing, peak)
