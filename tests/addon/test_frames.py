"""``stylize_frame`` against a real backend on tcp loopback: the identity backend (frames come back unchanged,
so composition must give the render back) and the real model (results checked against the adain library),
style ids sent once, validation, cancellation and a backend that went away.

Requests are counted from the backend's own debug log (``backend.server`` logs "OP ID from PEER" for every
request it decodes), so "sent once" is what the backend saw, not what the client believes it sent."""

from __future__ import annotations

import logging
import shutil
import time

import numpy as np
import pytest
import torch

from adain import Region
from adain_wire.client import Client, ClientError
from addon.frames import (
    FrameCancelledError,
    FrameError,
    FrameJob,
    SlotJob,
    StyleIds,
    StyleSource,
    rendered_only,
    style_source_from_file,
    stylize_frame,
)

RNG = np.random.default_rng(21)
STYLE_A = StyleSource("a", pixels=RNG.random((24, 20, 3), dtype=np.float32))
STYLE_B = StyleSource("b", pixels=RNG.random((20, 28, 3), dtype=np.float32))


def image(h: int = 24, w: int = 30, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c), dtype=np.float32)


def slot(name: str, *styles: tuple[StyleSource, float], alpha: float = 1.0, preserve: str = "none") -> SlotJob:
    return SlotJob(name, tuple(styles) or ((STYLE_A, 1.0),), alpha, preserve)


class Requests:
    """What the backend received, from its debug log."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="backend.server")
        self._caplog = caplog

    def count(self, op: str) -> int:
        return sum(1 for r in self._caplog.records if r.name == "backend.server" and r.getMessage().startswith(f"{op} "))


@pytest.fixture
def requests(caplog) -> Requests:
    return Requests(caplog)


@pytest.fixture
def ident(serve):
    """A client of an identity backend (frames come back unchanged; styles are only remembered)."""
    server = serve(identity=True)
    with Client(server.endpoint, timeout=5) as client:
        assert client.server is not None and client.server.model.decoder == "identity"
        yield client


def exact_job(*args: object, **kwargs: object) -> FrameJob:
    """A FrameJob whose frames and masks travel as float32, so identity round trips compare exactly
    (the float16 default is tested on its own below)."""
    kwargs.setdefault("wire", "float32")
    return FrameJob(*args, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ identity backend


def test_one_slot_without_masks_gives_the_frame_back_exactly(ident):
    frame = image(c=4)
    out = stylize_frame(ident, StyleIds(), exact_job(frame, (slot("Main"),)), style_size=0)
    assert out.combined.shape == (24, 30, 3) and out.combined.dtype == np.float32
    np.testing.assert_array_equal(out.combined, frame[..., :3])
    assert out.slot_passes == {} and out.compute_ms > 0.0


def test_masked_slots_compose_back_to_the_render(ident):
    frame = image(seed=1)
    masks = np.zeros((2, 24, 30), np.float32)
    masks[0, :, :10] = 1.0
    masks[1, :, 20:] = 1.0
    masks[0, :, 10] = 0.3  # anti-aliased edge: 0.3 slot, 0.7 render
    masks[1, :, 19] = 0.7
    job = exact_job(frame, (slot("Left"), slot("Right", (STYLE_B, 1.0))), masks)
    out = stylize_frame(ident, StyleIds(), job, style_size=0)
    exact = (masks.sum(axis=0) == 0.0) | (masks.max(axis=0) == 1.0)
    np.testing.assert_array_equal(out.combined[exact], frame[exact])  # covered: the backend's pixels; uncovered: the render
    np.testing.assert_allclose(out.combined, frame, atol=1e-6)


def test_slot_passes_come_back_under_the_slot_names(ident, requests):
    frame = image(seed=2)
    masks = np.zeros((3, 24, 30), np.float32)
    masks[0, :8], masks[1, 8:16], masks[2, 16:] = 1.0, 1.0, 1.0
    slots = (slot("Sky"), slot("Ground", preserve="luminance"), slot("Tree", (STYLE_B, 1.0), preserve="coral"))
    out = stylize_frame(ident, StyleIds(), exact_job(frame, slots, masks, slot_passes=True), style_size=0)
    assert sorted(out.slot_passes) == ["Ground", "Sky", "Tree"]
    for arr in out.slot_passes.values():
        assert arr.shape == (24, 30, 3)
        np.testing.assert_array_equal(arr, frame)
    assert requests.count("stylize") == 3  # one per colour mode in use
    np.testing.assert_allclose(out.combined, frame, atol=1e-6)


def test_style_ids_send_each_style_once(ident, requests):
    ids = StyleIds()
    masks = np.stack([np.ones((24, 30), np.float32), np.zeros((24, 30), np.float32)])
    job = exact_job(image(seed=3), (slot("A", (STYLE_A, 1.0)), slot("B", (STYLE_A, 1.0), (STYLE_B, 3.0))), masks)
    stylize_frame(ident, ids, job, style_size=0)
    assert (requests.count("style.put"), requests.count("stylize")) == (2, 1)
    stylize_frame(ident, ids, exact_job(image(seed=4), job.slots, masks), style_size=0)  # next frame: no put
    assert (requests.count("style.put"), requests.count("stylize")) == (2, 2)
    stylize_frame(ident, ids, job, style_size=64)  # another size is another style for the backend
    assert requests.count("style.put") == 4
    ids.clear()  # e.g. after a reconnect: everything is put again
    stylize_frame(ident, ids, job, style_size=0)
    assert requests.count("style.put") == 6


def test_style_files_are_keyed_by_content_and_put_once(ident, requests, samples, tmp_path):
    path = tmp_path / "style.jpg"
    shutil.copyfile(samples / "style_wesnoth_painted_mountains.jpg", path)
    ids = StyleIds()
    frame = image(seed=5)
    job = exact_job(frame, (SlotJob("S", ((style_source_from_file(path), 1.0),)),))
    np.testing.assert_array_equal(stylize_frame(ident, ids, job, style_size=32).combined, frame)
    job2 = exact_job(frame, (SlotJob("S", ((style_source_from_file(path), 1.0),)),))  # re-read, unchanged file
    stylize_frame(ident, ids, job2, style_size=32)
    assert requests.count("style.put") == 1
    shutil.copyfile(samples / "style_wesnoth_trow_great_tree.jpg", path)  # the file was replaced
    job3 = exact_job(frame, (SlotJob("S", ((style_source_from_file(path), 1.0),)),))
    stylize_frame(ident, ids, job3, style_size=32)
    assert requests.count("style.put") == 2


def test_slots_at_alpha_zero_keep_the_render_without_asking_the_backend(ident, requests):
    frame = image(seed=6)
    job = exact_job(frame, (slot("Off", alpha=0.0),), slot_passes=True)
    out = stylize_frame(ident, StyleIds(), job)
    np.testing.assert_array_equal(out.combined, frame)
    assert list(out.slot_passes) == ["Off"]
    np.testing.assert_array_equal(out.slot_passes["Off"], frame)
    assert requests.count("stylize") == 0 and requests.count("style.put") == 0


def test_cancelled_raises_and_the_client_stays_usable(ident):
    frame = image(seed=7)
    ids = StyleIds()
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return True

    with pytest.raises(FrameCancelledError, match="cancelled"):
        stylize_frame(ident, ids, exact_job(frame, (slot("S"),)), style_size=0, cancelled=cancelled)
    assert calls
    assert issubclass(FrameCancelledError, FrameError)
    out = stylize_frame(ident, ids, exact_job(frame, (slot("S"),)), style_size=0)  # the next frame still works
    np.testing.assert_array_equal(out.combined, frame)


def test_what_the_backend_refuses_is_a_frame_error_with_its_reason(ident):
    junk = SlotJob("Junk", ((StyleSource("junk", data=b"not an image"), 1.0),))
    with pytest.raises(FrameError, match=r"could not take a style image: cannot decode the style image .*send PNG or JPEG"):
        stylize_frame(ident, StyleIds(), exact_job(image(), (junk,)))
    with pytest.raises(FrameError, match=r"failed on this frame: .*frames must be at least 16x16"):
        stylize_frame(ident, StyleIds(), exact_job(image(8, 8), (slot("S"),)), style_size=0)
    with pytest.raises(FrameError, match="has neither a file nor pixels"):
        stylize_frame(ident, StyleIds(), exact_job(image(), (SlotJob("Empty", ((StyleSource("empty"), 1.0),)),)))


def test_style_file_that_cannot_be_read(tmp_path):
    with pytest.raises(FrameError, match=r"cannot read style image .*missing\.png: No such file"):
        style_source_from_file(tmp_path / "missing.png")


def test_a_backend_that_went_away_is_a_frame_error_saying_so(serve):
    server = serve(identity=True)
    client = Client(server.endpoint, timeout=0.3, give_up=1.0, heartbeat=0.1)
    try:
        client.connect()
        ids = StyleIds()
        frame = image(seed=8)
        np.testing.assert_array_equal(stylize_frame(client, ids, exact_job(frame, (slot("S"),)), style_size=0).combined, frame)
        server.stop(timeout=10)
        t0 = time.monotonic()
        with pytest.raises(FrameError, match=r"the backend failed on this frame: .*did not answer within 1 s") as info:
            stylize_frame(client, ids, exact_job(frame, (slot("S"),)), style_size=0)  # style known: the frame times out
        assert isinstance(info.value.__cause__, ClientError)
        with pytest.raises(FrameError, match=r"did not answer within 1 s"):
            stylize_frame(client, ids, exact_job(frame, (slot("T", (STYLE_B, 1.0)),)), style_size=0)  # a new style: the put
        assert time.monotonic() - t0 < 10
    finally:
        client.close()


# ------------------------------------------------------------------------------------ validation


def test_slot_validation():
    with pytest.raises(FrameError, match=r"style slot 'Hat' has no style: add a style image"):
        SlotJob("Hat", ())
    for alpha in (-0.01, 1.01, float("nan")):
        with pytest.raises(FrameError, match=r"style slot 'Hat': alpha must be within 0\.\.1"):
            SlotJob("Hat", ((STYLE_A, 1.0),), alpha=alpha)
    with pytest.raises(FrameError, match=r"colour mode 'sepia' is not one of \('none', 'coral', 'luminance'\)"):
        SlotJob("Hat", ((STYLE_A, 1.0),), preserve_color="sepia")
    for alpha in (0.0, 1.0):
        assert SlotJob("Hat", ((STYLE_A, 1.0),), alpha=alpha).alpha == alpha


def test_frame_job_validation():
    one, two = (slot("A"),), (slot("A"), slot("B"))
    with pytest.raises(FrameError, match="no style slot is enabled"):
        exact_job(image(), ())
    with pytest.raises(FrameError, match="2 style slots need masks"):
        exact_job(image(), two)
    with pytest.raises(FrameError, match=r"masks are \(2, 30, 24\), expected \(2, 24, 30\)"):
        exact_job(image(), two, np.zeros((2, 30, 24), np.float32))
    with pytest.raises(FrameError, match=r"masks are \(1, 24, 30\), expected \(2, 24, 30\)"):
        exact_job(image(), two, np.zeros((1, 24, 30), np.float32))
    for bad in (image().astype(np.float64), image()[..., 0], image(c=2), image(c=5)):
        with pytest.raises(FrameError, match=r"frame must be \(H, W, 3\|4\) float32, got"):
            exact_job(bad, one)
    assert exact_job(image(c=4), one).masks is None


# ------------------------------------------------------------------------------------ edge cases


def test_overlapping_slots_in_different_colour_modes_still_give_the_render_back(ident):
    frame = image(seed=9)
    masks = np.full((2, 24, 30), 0.8, np.float32)  # e.g. an object slot and a material slot on the same object
    job = exact_job(frame, (slot("Object"), slot("Material", preserve="luminance")), masks)
    out = stylize_frame(ident, StyleIds(), job, style_size=0)
    np.testing.assert_allclose(out.combined, frame, atol=1e-6)


def test_a_frame_the_client_refuses_before_sending_is_a_frame_error(serve):
    """render.py catches FrameError and BackendUnavailableError only: anything else loses the frame's plain-render fallback."""
    server = serve(identity=True, max_pixels=32 * 32)
    with Client(server.endpoint, timeout=5) as client:
        job = exact_job(image(40, 40), (slot("A"),))
        with pytest.raises(FrameError, match="cannot take this frame"):
            stylize_frame(client, StyleIds(), job, style_size=0)


def test_float64_masks_are_taken_as_float32(ident):
    frame = image()
    job = exact_job(frame, (slot("A"), slot("B")), np.full((2, 24, 30), 0.5))
    assert job.masks is not None and job.masks.dtype == np.float32
    np.testing.assert_allclose(stylize_frame(ident, StyleIds(), job, style_size=0).combined, frame[..., :3], atol=1e-6)


# ------------------------------------------------------------------------------------ the real model


@pytest.fixture(scope="module")
def real_inputs(samples):
    from adain.images import load_image

    content = load_image(samples / "content_coffee.jpg", 64)[:, :64, :72]
    assert tuple(content.shape) == (3, 64, 72)
    styles = [load_image(samples / f"style_wesnoth_{n}.jpg", 48) for n in ("painted_mountains", "trow_great_tree")]
    frame = np.ascontiguousarray(content.numpy().transpose(1, 2, 0))
    sources = [StyleSource(f"sample{i}", pixels=np.ascontiguousarray(s.numpy().transpose(1, 2, 0))) for i, s in enumerate(styles)]
    return frame, sources


def chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def hwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(1, 2, 0)


def stats(model, src: StyleSource):
    assert src.pixels is not None
    return model.encode_style(chw(src.pixels))


def test_real_model_one_slot_with_a_style_mix(real, model, real_inputs):
    frame, (sa, sb) = real_inputs
    job = exact_job(frame, (SlotJob("Mix", ((sa, 1.0), (sb, 3.0)), alpha=0.8),))
    out = stylize_frame(real, StyleIds(), job, style_size=0)
    want = model.stylize(chw(frame), [stats(model, sa), stats(model, sb)], 0.8, weights=[1.0, 3.0])
    np.testing.assert_allclose(out.combined, hwc(want), atol=1e-5)
    assert np.abs(out.combined - frame).mean() > 0.02  # it did stylize


def region_masks() -> np.ndarray:
    """Slot 0 on the left, slot 1 on the right, a soft seam, and the bottom rows covered by no slot."""
    m = np.zeros((2, 64, 72), np.float32)
    m[0, :48, :30] = 1.0
    m[0, :48, 30] = 0.7
    m[1, :48, 30] = 0.3
    m[1, :48, 31:] = 1.0
    m[0, 48:56, :] = 0.4  # a soft band over the render
    return m


def test_real_model_soft_masks_blend_slots_and_keep_the_render_uncovered(real, model, real_inputs, requests):
    frame, (sa, sb) = real_inputs
    masks = region_masks()
    job = exact_job(frame, (SlotJob("A", ((sa, 1.0),)), SlotJob("B", ((sb, 1.0),), alpha=0.6)), masks, slot_passes=True)
    out = stylize_frame(real, StyleIds(), job, style_size=0)
    assert requests.count("stylize") == 1
    regions = [Region([stats(model, sa)], alpha=1.0), Region([stats(model, sb)], alpha=0.6)]
    res = model.stylize_passes(chw(frame), regions=regions, masks=torch.from_numpy(masks))
    weight = np.clip(masks.sum(axis=0), 0.0, 1.0)[..., None]
    want = hwc(res.combined) * weight + frame * (1.0 - weight)
    np.testing.assert_allclose(out.combined, want, atol=1e-5)
    np.testing.assert_array_equal(out.combined[56:], frame[56:])  # no slot: the render itself
    assert np.abs(out.combined[:48] - frame[:48]).mean() > 0.02
    assert sorted(out.slot_passes) == ["A", "B"]
    np.testing.assert_allclose(out.slot_passes["A"], hwc(res.passes[0]), atol=1e-5)
    np.testing.assert_allclose(out.slot_passes["B"], hwc(res.passes[1]), atol=1e-5)


def test_real_model_two_colour_modes_are_two_requests_composed_by_masks(real, model, real_inputs, requests):
    frame, (sa, sb) = real_inputs
    masks = region_masks()
    slots = (SlotJob("Plain", ((sa, 1.0),)), SlotJob("Luma", ((sb, 1.0),), preserve_color="luminance"))
    out = stylize_frame(real, StyleIds(), exact_job(frame, slots, masks, slot_passes=True), style_size=0)
    assert requests.count("stylize") == 2
    regions = [Region([stats(model, sa)]), Region([stats(model, sb)])]
    m = torch.from_numpy(masks)
    plain = model.stylize_passes(chw(frame), regions=regions, masks=m, preserve_color="none")
    luma = model.stylize_passes(chw(frame), regions=regions, masks=m, preserve_color="luminance")
    want = hwc(plain.combined) * masks[0, ..., None] + hwc(luma.combined) * masks[1, ..., None]
    want += frame * np.clip(1.0 - masks.sum(axis=0), 0.0, 1.0)[..., None]
    np.testing.assert_allclose(out.combined, want, atol=1e-5)
    np.testing.assert_allclose(out.slot_passes["Plain"], hwc(plain.passes[0]), atol=1e-5)
    np.testing.assert_allclose(out.slot_passes["Luma"], hwc(luma.passes[1]), atol=1e-5)
    assert np.abs(hwc(plain.passes[1]) - hwc(luma.passes[1])).mean() > 0.01  # the modes do differ


def test_real_model_a_slot_at_alpha_zero_leaves_its_area_to_the_render(real, model, real_inputs, requests):
    frame, (sa, sb) = real_inputs
    masks = region_masks()
    slots = (SlotJob("On", ((sa, 1.0),)), SlotJob("Off", ((sb, 1.0),), alpha=0.0))
    out = stylize_frame(real, StyleIds(), exact_job(frame, slots, masks, slot_passes=True), style_size=0)
    assert requests.count("style.put") == 1  # the alpha-0 slot's style is not even sent
    res = model.stylize(chw(frame), regions=[Region([stats(model, sa)])], masks=torch.from_numpy(masks[:1]))
    want = hwc(res) * masks[0, ..., None] + frame * (1.0 - masks[0, ..., None])
    np.testing.assert_allclose(out.combined, want, atol=1e-5)
    np.testing.assert_array_equal(out.combined[:48, 31:], frame[:48, 31:])
    np.testing.assert_array_equal(out.slot_passes["Off"], frame)
    assert sorted(out.slot_passes) == ["Off", "On"]


def test_frames_and_masks_travel_as_float16_by_default_within_a_fraction_of_an_8bit_step(ident, monkeypatch):
    frame = image(c=4)
    masks = np.zeros((2, 24, 30), np.float32)
    masks[0, :, :15], masks[1, :, 15:] = 1.0, 0.7
    sent = []
    real = ident.submit
    monkeypatch.setattr(ident, "submit", lambda img, *a, **k: sent.append((img.dtype, k["masks"].dtype, k["output_dtype"]))
                        or real(img, *a, **k))  # fmt: skip
    job = FrameJob(frame, (slot("Left"), slot("Right", (STYLE_B, 1.0))), masks)
    assert job.wire == "float16"
    out = stylize_frame(ident, StyleIds(), job, style_size=0)
    assert sent == [(np.dtype("float16"), np.dtype("float16"), "float16")]
    assert out.combined.dtype == np.float32
    assert float(np.abs(out.combined - frame[..., :3]).max()) <= 2.0**-11  # < 0.13/255
    with pytest.raises(FrameError, match="wire dtype 'uint8'"):
        FrameJob(frame, (slot("Main"),), wire="uint8")


def test_rendered_only_leaves_the_empty_background_out_of_every_slot():
    alpha = np.array([[0.0, 0.5, 1.0], [1.0, 0.0, 0.2]], np.float32)
    masks = np.stack([np.full((2, 3), 0.4, np.float32), np.full((2, 3), 0.6, np.float32)])
    out = rendered_only(masks, alpha, 2)
    assert out is not None and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, alpha == 0], 0.0)
    np.testing.assert_array_equal(out[:, alpha > 0], masks[:, alpha > 0])  # edges stay fully in
    one = rendered_only(None, alpha, 1)  # a single slot over everything gets a mask only now
    assert one is not None and one.shape == (1, 2, 3)
    np.testing.assert_array_equal(one[0], (alpha > 0).astype(np.float32))
    opaque = np.ones((2, 3), np.float32)
    assert rendered_only(None, opaque, 1) is None and rendered_only(masks, opaque, 2) is masks


def test_a_slot_s_own_style_size_overrides_the_frame_s(real, real_inputs, requests):
    frame, (style, _) = real_inputs
    own = stylize_frame(real, StyleIds(), exact_job(frame, (SlotJob("S", ((style, 1.0),), style_size=64),)), style_size=256)
    at_64 = stylize_frame(real, StyleIds(), exact_job(frame, (SlotJob("S", ((style, 1.0),)),)), style_size=64)
    at_256 = stylize_frame(real, StyleIds(), exact_job(frame, (SlotJob("S", ((style, 1.0),)),)), style_size=256)
    np.testing.assert_array_equal(own.combined, at_64.combined)
    assert np.abs(own.combined - at_256.combined).mean() > 0.005, "the style scale should change the result"
    with pytest.raises(FrameError, match=r"style size must be 64\.\.4096"):
        SlotJob("S", ((style, 1.0),), style_size=16)
