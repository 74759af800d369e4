"""The render hook's arithmetic without Blender: slot masks from Cryptomatte, alpha, sRGB, and the session state."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from addon.cryptomatte import name_id
from addon.frames import FrameCancelledError, FrameError, SlotJob, StyleSource
from addon.render_maths import (
    PASS,
    SceneSnapshot,
    SlotSnapshot,
    build_job,
    covering,
    premultiply,
    slot_pass_name,
    srgb_encode,
    unpremultiply,
)
from addon.session import RenderSession

H, W = 4, 6
STYLE = ((StyleSource("s", data=b"x"), 1.0),)


def _id_float(name: str) -> np.float32:
    return np.array([name_id(name)], np.uint32).view(np.float32)[0]


def crypto_pass(left: str, right: str) -> np.ndarray:
    """One Cryptomatte rank, Blender's row order: ``left`` covers columns 0-2 fully, ``right`` columns 3-5 half."""
    p = np.zeros((H, W, 4), np.float32)
    p[:, :3, 0], p[:, :3, 1] = _id_float(left), 1.0
    p[:, 3:, 0], p[:, 3:, 1] = _id_float(right), 0.5
    return p


def slot(name: str, target: str, names: tuple[str, ...] = ()) -> SlotSnapshot:
    return SlotSnapshot(SlotJob(name, STYLE), target, frozenset(names))


def snap(*slots: SlotSnapshot) -> SceneSnapshot:
    return SceneSnapshot(1, True, None, slots)  # type: ignore[arg-type]  (the view is not used by build_job)


def display(alpha: float = 1.0) -> np.ndarray:
    d = np.zeros((H, W, 4), np.float32)
    d[..., 0] = np.arange(H)[:, None] / H  # red grows with the row in Blender's order (bottom row first)
    d[..., 3] = alpha
    return d


def test_one_slot_over_everything_needs_no_mask_and_the_rows_are_flipped():
    job = build_job(snap(slot("all", "OTHER")), lambda kind: [], display(), W, H)
    assert job.masks is None and job.image.shape == (H, W, 3)
    assert job.image[0, 0, 0] == pytest.approx((H - 1) / H)  # top row first


def test_object_slot_and_everything_else_share_the_frame():
    passes = [crypto_pass("Cube", "Floor")]
    asked: list[str] = []

    def crypto(kind: str) -> list[np.ndarray]:
        asked.append(kind)
        return passes

    job = build_job(snap(slot("cube", "OBJECTS", ("Cube",)), slot("rest", "OTHER")), crypto, display(), W, H)
    assert asked == ["Object"] and job.masks is not None and job.masks.shape == (2, H, W)
    assert np.allclose(job.masks[0][:, :3], 1.0) and np.allclose(job.masks[0][:, 3:], 0.0)
    assert np.allclose(job.masks.sum(axis=0), 1.0)  # the rest is what the cube leaves


def test_two_everything_else_slots_split_the_rest_equally_and_materials_read_their_passes():
    job = build_job(
        snap(slot("m", "MATERIALS", ("Floor",)), slot("a", "OTHER"), slot("b", "OTHER")),
        lambda kind: [crypto_pass("Cube", "Floor")] if kind == "Material" else [],
        display(),
        W,
        H,
    )
    assert job.masks is not None
    assert np.allclose(job.masks[0][:, 3:], 0.5) and np.allclose(job.masks[1][:, 3:], 0.25)
    assert np.allclose(job.masks[1], job.masks[2])


def test_a_missing_cryptomatte_pass_says_what_to_do():
    with pytest.raises(FrameError, match="Set up AdaIN"):
        build_job(snap(slot("cube", "OBJECTS", ("Cube",))), lambda kind: [], display(), W, H)


def test_empty_pixels_belong_to_no_slot():
    d = display()
    d[:, 0, 3] = 0.0  # nothing rendered in the first column
    job = build_job(snap(slot("all", "OTHER")), lambda kind: [], d, W, H)
    assert job.masks is not None and np.all(job.masks[0][:, 0] == 0.0) and np.all(job.masks[0][:, 1:] == 1.0)


def test_covering_drops_the_ranks_that_cover_nothing_but_keeps_one():
    full, empty = crypto_pass("A", "B"), np.zeros((H, W, 4), np.float32)
    assert len(covering([full, empty, empty])) == 1
    assert len(covering([empty, empty])) == 1
    second = empty.copy()
    second[0, 0, 3] = 0.2
    assert len(covering([full, second, empty])) == 2


def test_premultiplied_alpha_round_trip_and_empty_pixels_carry_no_colour():
    rng = np.random.default_rng(0)
    straight = rng.random((H, W, 4), dtype=np.float32)
    straight[0, 0, 3] = 0.0
    alpha = straight[..., 3:4].copy()
    pre = premultiply(straight.copy(), alpha)
    assert np.allclose(pre[..., :3], straight[..., :3] * alpha) and np.array_equal(pre[..., 3], alpha[..., 0])
    back = unpremultiply(pre)
    assert np.allclose(back[1:, :, :3], straight[1:, :, :3], atol=1e-5)
    assert np.all(back[0, 0, :3] == 0.0) and back is not pre


def test_srgb_encode_matches_the_standard_curve():
    lin = np.array([-1.0, 0.0, 0.0031308, 0.18, 0.5, 1.0, 2.0], np.float32)
    assert np.allclose(srgb_encode(lin), [0.0, 0.0, 0.04045, 0.46135, 0.73536, 1.0, 1.0], atol=1e-4)


def test_pass_names():
    assert PASS == "AdaIN" and slot_pass_name("Sky") == "AdaIN Sky"


def test_session_style_ids_belong_to_one_connection_and_reset_forgets_everything():
    session = RenderSession()
    a, b = object(), object()
    session.ids_for(a)._ids["k"] = "id"  # type: ignore[attr-defined]
    assert session.ids_for(a)._ids == {"k": "id"}  # type: ignore[attr-defined]
    assert session.ids_for(b)._ids == {}  # type: ignore[attr-defined]
    session.status.failed_frames.add(3)
    session.last_render.append(object())  # type: ignore[arg-type]
    session.reset()
    assert session.status.failed_frames == set() and session.last_render == []


def test_session_client_lock_is_exclusive_and_its_wait_can_be_cancelled():
    session = RenderSession()
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with session.client_lock():
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    with pytest.raises(FrameCancelledError, match="cancelled"), session.client_lock(lambda: True):
        pass
    release.set()
    t.join(10)
    with session.client_lock():  # free again
        pass
