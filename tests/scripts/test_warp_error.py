"""scripts/warp_error.py on synthetic frames whose motion is known exactly (the Vector pass built by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.scripts.script_loader import load_script

RNG = np.random.default_rng(4)


def pan(n: int, h: int = 24, w: int = 40, dx: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A texture moving dx pixels right per frame, and its Vector pass as Blender writes it (bottom row first):
    previous minus current x = -dx, current minus next x = -dx."""
    wide = RNG.random((h, w + n * dx, 3), dtype=np.float32)
    frames = [np.ascontiguousarray(wide[:, n * dx - t * dx : n * dx - t * dx + w]) for t in range(n)]
    vector = np.zeros((h, w, 4), np.float32)
    vector[..., 0], vector[..., 2] = -dx, -dx
    return frames, [vector] * n


def test_a_pan_moved_along_its_own_motion_has_no_error_and_noise_has_its_known_error():
    we = load_script("warp_error")
    frames, vectors = pan(6)
    assert we.warping_error(frames, vectors) < 1e-10
    # independent noise of sigma per channel and frame: E = 3 channels x 2 sigma^2 (both frames' noise)
    sigma = 0.05
    noisy = [f + RNG.normal(0, sigma, f.shape).astype(np.float32) for f in frames]
    assert we.warping_error(noisy, vectors) == pytest.approx(3 * 2 * sigma**2, rel=0.1)
    # a wrong motion (ignoring the pan) is far from zero
    still = [np.zeros_like(v) for v in vectors]
    assert we.warping_error(frames, still) > 0.05


def test_what_came_into_view_is_masked_out():
    we = load_script("warp_error")
    _, vectors = pan(3, dx=2)
    mask = we.non_occlusion(vectors[1], vectors[0])
    assert mask[:, :2].sum() == 0 and mask[:, 2:].min() == 1.0  # the 2 new columns on the left


def test_lag_counts_frames_until_the_smoothed_output_catches_up():
    we = load_script("warp_error")
    frames, vectors = pan(10)
    per_frame = [f * (0.3 if t < 4 else 1.0) for t, f in enumerate(frames)]  # a sudden change at frame 4
    smoothed, prev = [], None
    for f in per_frame:  # an exponential follower, as temporal smoothing at strength 0.6 is: the gap shrinks 0.6x a frame
        prev = f if prev is None else 0.4 * f + 0.6 * np.roll(prev, 1, axis=1)
        smoothed.append(prev)
    result = we.lag(per_frame, smoothed, vectors)
    assert result.frame == 4 and result.frames == 3 and result.peak > 0.05  # 0.6**3 < 1/4 < 0.6**2
    assert we.lag(frames, frames, vectors).frame is None  # nothing stands out


def test_trail_is_measured_where_something_was_uncovered():
    we = load_script("warp_error")
    frames, vectors = pan(4, dx=2)
    dragged = [f.copy() for f in frames]
    for t in range(1, 4):  # old content dragged into the 2 uncovered columns: a trail
        dragged[t][:, :2] = frames[t - 1][:, :2]
    on_uncovered, elsewhere = we.trail(frames, dragged, vectors)
    assert on_uncovered > 0.1 and elsewhere == 0.0
    assert we.trail(frames, frames, vectors) == (0.0, 0.0)
