"""The ``smooth`` op (temporal smoothing on the backend's device) over real sockets, against the add-on's numpy step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from wire import Wire

from adain_wire.client import Client, ClientError
from adain_wire.protocol import ErrorCode, ErrorReply, Hello, HelloReply, Smooth, SmoothReply
from addon import temporal
from backend.temporal import smooth_step

H, W = 36, 52


def case(c: int = 3, ahead: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A frame, its render, the previous frame packed as the Smoother keeps it, and a fractional flow (±4 px): most
    pixels match their moved render, some do not, some come from outside the frame."""
    rng = np.random.default_rng(seed)
    stylized = rng.random((H, W, c), dtype=np.float32)
    content = rng.random((H, W, 3), dtype=np.float32)
    flow = (rng.random((H, W, 2), dtype=np.float32) - 0.5) * 8
    prev_content = np.clip(content + rng.normal(0, 0.04, content.shape), 0, 1).astype(np.float32)
    prev_content[:, : W // 4] = rng.random((H, W // 4, 3), dtype=np.float32)  # a surface that changed
    parts = [rng.random((H, W, c), dtype=np.float32), prev_content]
    if ahead:
        parts.append((-flow + rng.normal(0, 0.8, flow.shape)).astype(np.float32))  # round trips that miss by ~1 px
    return stylized, content, np.concatenate(parts, axis=-1), flow


@pytest.fixture
def wire(serve, zctx):
    w = Wire(zctx, serve().endpoint)
    yield w
    w.close()


def test_hello_lists_smooth(wire):
    reply = wire.ask(Hello("h"))
    assert isinstance(reply, HelloReply) and "smooth" in reply.ops


@pytest.mark.parametrize(("c", "ahead"), [(3, False), (4, False), (3, True)])
def test_smooth_op_equals_the_add_ons_numpy_step(wire, c, ahead):
    stylized, content, history, flow = case(c, ahead)
    reply = wire.ask(Smooth("s", stylized, content, history, flow, 0.7))
    assert isinstance(reply, SmoothReply), reply
    assert reply.image.dtype == np.float32 and reply.image.shape == (H, W, c)
    expected = temporal._smooth_packed(stylized, content, history, c, flow, 0.7)
    np.testing.assert_allclose(reply.image, expected, atol=2e-5)
    assert np.abs(expected - stylized).max() > 0.2, "the case must blend something in"
    assert np.isclose(expected, stylized).mean() > 0.05, "and keep some pixels (changed surface, outside the frame)"


def test_float16_frames_and_output_dtype(wire):
    stylized, content, history, flow = case(3, True, seed=1)
    half = [a.astype(np.float16) for a in (stylized, content, history)]
    reply = wire.ask(Smooth("s", *half, flow, 0.5, output_dtype="uint8"))
    assert isinstance(reply, SmoothReply) and reply.image.dtype == np.uint8
    expected = temporal._smooth_packed(*(a.astype(np.float32) for a in half), 3, flow, 0.5)
    assert np.abs(reply.image.astype(np.float32) / 255 - expected).max() <= 0.5 / 255 + 1e-3


def test_strength_zero_returns_the_frame(wire):
    stylized, content, history, flow = case(4)
    reply = wire.ask(Smooth("s", stylized, content, history, flow, 0.0))
    assert isinstance(reply, SmoothReply)
    np.testing.assert_array_equal(reply.image, stylized)


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"history": np.zeros((H, W, 5), np.float32)}, ErrorCode.BAD_ARRAY, "history"),
        ({"content": np.zeros((H, W + 1, 3), np.float32)}, ErrorCode.BAD_ARRAY, "content"),
        ({"flow": np.zeros((H, W, 3), np.float32)}, ErrorCode.BAD_ARRAY, "flow"),
        ({"stylized": np.zeros((H, W, 3), np.uint8)}, ErrorCode.BAD_ARRAY, "stylized"),
        ({"strength": 1.0}, ErrorCode.BAD_REQUEST, "strength"),
        ({"strength": -0.1}, ErrorCode.BAD_REQUEST, "strength"),
    ],
)
def test_bad_smooth_requests_are_refused_and_say_why(wire, change, code, words):
    stylized, content, history, flow = case()
    fields = {"stylized": stylized, "content": content, "history": history, "flow": flow, "strength": 0.5} | change
    reply = wire.ask(Smooth("bad", **fields))
    assert isinstance(reply, ErrorReply) and reply.id == "bad" and reply.code == code, reply
    assert words in reply.message
    assert isinstance(wire.ask(Smooth("good", stylized, content, history, flow, 0.5)), SmoothReply), "still serving"


def test_non_finite_values_and_tiny_frames_are_refused(wire):
    stylized, content, history, flow = case()
    flow = flow.copy()
    flow[3, 4, 0] = np.nan
    reply = wire.ask(Smooth("nan", stylized, content, history, flow, 0.5))
    assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.BAD_REQUEST and "flow" in reply.message
    tiny = [a[:8, :8] for a in case()]
    reply = wire.ask(Smooth("tiny", *tiny, 0.5))
    assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.BAD_ARRAY and "16x16" in reply.message


def test_client_submit_smooth(serve):
    server = serve()
    with Client(server.endpoint) as client:
        client.connect()
        stylized, content, history, flow = case(3, True, seed=2)
        reply = client.submit_smooth(stylized, content, history, flow, 0.6).result(30)
        np.testing.assert_allclose(reply.image, temporal._smooth_packed(stylized, content, history, 3, flow, 0.6), atol=2e-5)
        with pytest.raises(ClientError, match="history"):  # checked before anything is sent
            client.submit_smooth(stylized, content, history[..., :4], flow, 0.6)


@pytest.mark.cuda
def test_smooth_step_on_cuda_equals_numpy():
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine")
    stylized, content, history, flow = case(4, True, seed=3)
    out = smooth_step(*(torch.from_numpy(a).cuda() for a in (stylized, content, history, flow)), 0.8).cpu().numpy()
    np.testing.assert_allclose(out, temporal._smooth_packed(stylized, content, history, 4, flow, 0.8), atol=5e-5)
