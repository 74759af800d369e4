"""Temporal smoothing along motion vectors (``addon.temporal``), on synthetic frames whose motion is known.
The Vector pass's sign convention is checked against real Cycles renders in tests/blender/test_temporal.py."""

from __future__ import annotations

import numpy as np
import pytest

from addon.temporal import Smoother, blend_weight, flow_from_vector, smooth, warp

RNG = np.random.default_rng(3)


def texture(h: int = 20, w: int = 30, c: int = 3) -> np.ndarray:
    return RNG.random((h, w, c), dtype=np.float32)


def test_integer_flow_moves_the_image_and_marks_what_came_from_outside():
    img = texture()
    flow = np.zeros((20, 30, 2), np.float32)
    flow[..., 0] = -3.0  # each pixel was 3 columns further left a frame ago: the content moved right
    out, inside = warp(img, flow)
    np.testing.assert_allclose(out[:, 3:], img[:, :-3], atol=1e-6)
    assert not inside[:, :3].any() and inside[:, 3:].all()
    flow[..., 0], flow[..., 1] = 0.0, 2.0  # from 2 rows below
    out, inside = warp(img, flow)
    np.testing.assert_allclose(out[:-2], img[2:], atol=1e-6)
    assert not inside[-2:].any()


def test_half_pixel_flow_interpolates():
    img = texture()
    flow = np.zeros((20, 30, 2), np.float32)
    flow[..., 0] = 0.5
    out, _ = warp(img, flow)
    np.testing.assert_allclose(out[:, :-1], (img[:, :-1] + img[:, 1:]) / 2, atol=1e-6)


def test_blender_vector_pass_becomes_top_down_offsets():
    h, w = 4, 5
    vector = np.zeros((h, w, 4), np.float32)
    vector[0, :, 1] = 2.0  # Blender's bottom row: was 2 pixels higher (y up) a frame ago
    vector[..., 0] = -1.5
    flow = flow_from_vector(vector)
    assert flow.shape == (h, w, 2)
    assert (flow[..., 0] == -1.5).all()
    assert (flow[-1, :, 1] == -2.0).all() and (flow[:-1, :, 1] == 0.0).all()  # top-down: 2 rows up
    with pytest.raises(ValueError, match=r"\(H, W, 4\)"):
        flow_from_vector(np.zeros((4, 5, 3), np.float32))


def test_where_the_moved_render_matches_the_previous_frame_is_blended_in():
    content = texture()
    stylized = texture()
    prev_out = texture()
    flow = np.zeros((20, 30, 2), np.float32)
    out = smooth(stylized, content, prev_out, content, flow, 0.6)
    np.testing.assert_allclose(out, 0.4 * stylized + 0.6 * prev_out, atol=1e-6)


def test_where_the_render_changed_the_frame_keeps_its_own_stylization():
    content = texture()
    prev_content = content.copy()
    prev_content[5:10, 5:10] = 1.0 - prev_content[5:10, 5:10] + 0.5  # something else was there
    stylized, prev_out = texture(), texture()
    out = smooth(stylized, content, prev_out, prev_content, np.zeros((20, 30, 2), np.float32), 0.6)
    changed = np.abs(content[5:10, 5:10] - prev_content[5:10, 5:10]).mean(-1) > 0.12
    assert changed.mean() > 0.8
    np.testing.assert_allclose(out[5:10, 5:10][changed], stylized[5:10, 5:10][changed], atol=1e-6)
    np.testing.assert_allclose(out[12:], 0.4 * stylized[12:] + 0.6 * prev_out[12:], atol=1e-6)


def test_weight_ramps_softly_between_the_tolerances():
    a = np.zeros((1, 3, 3), np.float32)
    b = np.array([[[0.0] * 3, [0.08] * 3, [0.2] * 3]], np.float32)
    wt = blend_weight(a, b, np.ones((1, 3), bool), 1.0)
    np.testing.assert_allclose(wt[0], [1.0, 0.5, 0.0], atol=1e-6)


def test_smoother_only_uses_the_frame_just_before_and_starts_over_on_reset():
    s = Smoother()
    content, flow = texture(), np.zeros((20, 30, 2), np.float32)
    f1, f2, f4 = texture(), texture(), texture()
    out1, smoothed = s.apply("ViewLayer", 1, f1, content, flow, 0.5)
    assert not smoothed and out1 is f1
    out2, smoothed = s.apply("ViewLayer", 2, f2, content, flow, 0.5)
    assert smoothed
    np.testing.assert_allclose(out2, 0.5 * f2 + 0.5 * f1, atol=1e-6)
    out4, smoothed = s.apply("ViewLayer", 4, f4, content, flow, 0.5)  # frame 3 is missing: no motion to it
    assert not smoothed and out4 is f4
    _, smoothed = s.apply("Other layer", 5, f4, content, flow, 0.5)
    assert not smoothed
    _, smoothed = s.apply("ViewLayer", 5, f1, content, None, 0.5)  # no Vector pass
    assert not smoothed
    s.reset()
    _, smoothed = s.apply("ViewLayer", 6, f2, content, flow, 0.5)
    assert not smoothed


def test_bad_arguments_say_what_was_wrong():
    with pytest.raises(ValueError, match="flow must be"):
        warp(texture(), np.zeros((3, 3, 2), np.float32))
    with pytest.raises(ValueError, match="strength"):
        smooth(texture(), texture(), texture(), texture(), np.zeros((20, 30, 2), np.float32), 1.0)


@pytest.mark.parametrize("workers", [1, 3])
def test_smoothing_in_bands_on_threads_equals_the_whole_frame_formula(monkeypatch, workers):
    """Frames taller than a band are smoothed band by band (on threads): the same as the formula on the whole
    frame, at every band boundary too."""
    import addon.temporal as temporal

    monkeypatch.setattr(temporal, "WORKERS", workers)
    h, w = 3 * temporal.BAND_ROWS + 17, 24
    stylized, content, prev_out = texture(h, w), texture(h, w), texture(h, w)
    prev_content = content + np.float32(0.02) * texture(h, w)
    flow = (RNG.random((h, w, 2), dtype=np.float32) - 0.5) * 5
    warped, inside = warp(np.concatenate([prev_out, prev_content], axis=-1), flow)
    wt = blend_weight(content, warped[..., 3:], inside, 0.6)[..., None]
    want = stylized * (1 - wt) + warped[..., :3] * wt
    np.testing.assert_allclose(smooth(stylized, content, prev_out, prev_content, flow, 0.6), want, atol=2e-6)
    np.testing.assert_array_equal(smooth(stylized, content, prev_out, prev_content, flow, 0.0), stylized)


def test_seed_frames_leave_at_most_half_a_level_of_the_older_history():
    from addon.temporal import MAX_SEED_FRAMES, SEED_ERROR, seed_frames

    assert seed_frames(0.0) == 0
    for strength in (0.1, 0.5, 0.7, 0.8, 0.9):  # (0.9: the panel's maximum, 60 frames)
        n = seed_frames(strength)
        assert strength**n <= SEED_ERROR < strength ** (n - 1)
    assert seed_frames(0.99) == MAX_SEED_FRAMES


def test_a_pixel_hidden_in_the_previous_frame_takes_nothing_from_it_even_if_it_looks_alike():
    """With the previous frame's motion toward the next one, the round trip back and forth must come home: where it
    does not (the pixel was covered, and what covered it moved away), the frame keeps its own stylization."""
    from addon.temporal import Smoother, next_flow_from_vector

    h, w = 20, 30
    back = np.zeros((h, w, 2), np.float32)
    back[..., 0] = 1.0  # each pixel was one pixel to the right in the previous frame
    c1 = texture(h, w)
    c2, _ = warp(c1, back)  # the render moved along the motion: colour alone would blend everywhere
    f1, f2 = texture(h, w), texture(h, w)
    for ahead_dx, expect in ((-1.0, 0.5), (3.0, 0.0), (0.0, 0.25)):  # consistent; 4 px off; 1 px off (half weight)
        s = Smoother()
        ahead = np.zeros((h, w, 2), np.float32)
        ahead[..., 0] = ahead_dx
        s.apply("L", 1, f1, c1, None, 0.5, ahead)
        out, smoothed = s.apply("L", 2, f2, c2, back, 0.5, ahead)
        assert smoothed
        moved, _ = warp(f1, back)
        inner = (slice(None), slice(0, w - 2))  # away from the right edge, where the source leaves the frame
        np.testing.assert_allclose(out[inner], (f2 + expect * (moved - f2))[inner], atol=1e-5)
    vector = np.zeros((h, w, 4), np.float32)
    vector[..., 2], vector[..., 3] = 2.0, 1.0  # Blender: current minus next, y up
    np.testing.assert_array_equal(next_flow_from_vector(vector)[0, 0], [-2.0, 1.0])


def test_strength_zero_is_the_per_frame_output_exactly():
    """Strength 0 (the panel's "off") gives each frame as stylized, bit for bit, even with a previous frame and
    motion at hand; so does the backend's step (tests/backend/test_smooth.py)."""
    s = Smoother()
    content, flow = texture(), np.zeros((20, 30, 2), np.float32)
    s.apply("ViewLayer", 1, texture(), content, flow, 0.5)
    f2 = texture()
    out, smoothed = s.apply("ViewLayer", 2, f2, content, flow, 0.0)
    assert not smoothed and out is f2
    np.testing.assert_array_equal(smooth(f2, content, texture(), content, flow, 0.0), f2)
