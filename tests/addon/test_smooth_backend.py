"""Where a smoothing step runs (``addon.smooth_backend``): on a real backend over tcp, falling back to numpy."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from adain_wire.manager import BackendManager, BackendSettings
from adain_wire.protocol import HelloReply, Limits, ModelInfo
from addon import smooth_backend
from addon.frames import FrameCancelledError, FrameError
from addon.temporal import Smoother

RNG = np.random.default_rng(11)
H, W = 40, 56


def hello(device: str, ops: tuple[str, ...] = ("hello", "stylize", "smooth")) -> HelloReply:
    return HelloReply("h", 1, "adain-backend test", "i", device, "fp32", ModelInfo("e", "d", "0"),
                      Limits(1 << 24, 1 << 28, 16, 8, 32, 64, 4), ("srgb",), ops)  # fmt: skip


class FakeClient:  # only what ``wanted`` reads: the hello reply and the address
    def __init__(self, server: HelloReply | None, endpoint: str = "tcp://127.0.0.1:5555") -> None:
        self.server = server
        self.endpoint = endpoint


@pytest.mark.parametrize(
    ("device", "where", "ops", "expected"),
    [
        ("cuda:0 (NVIDIA H200)", "auto", None, True),
        ("cpu (cpu)", "auto", None, False),  # no faster than numpy, and the transfer on top
        ("cpu (cpu)", "backend", None, True),
        ("cuda:0 (NVIDIA H200)", "blender", None, False),
        ("cuda:0 (NVIDIA H200)", "auto", ("hello", "stylize"), False),  # an older backend without the op
    ],
)
def test_where_a_step_runs(device, where, ops, expected):
    server = hello(device) if ops is None else hello(device, ops)
    assert smooth_backend.wanted(FakeClient(server), where) is expected  # type: ignore[arg-type]
    assert smooth_backend.wanted(FakeClient(None), where) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://localhost:5555", True),
        ("tcp://[::1]:5555", True),
        ("ipc:///tmp/adain.sock", True),
        ("tcp://10.0.0.5:5555", False),
        ("tcp://render-node-3:5555", False),
    ],
)
def test_auto_keeps_steps_off_the_network(endpoint, local):
    """75 MB a 1080p step: on loopback a few tens of ms, over a 1 Gb/s network 0.6 s, slower than numpy."""
    assert smooth_backend.on_this_machine(endpoint) is local
    gpu = FakeClient(hello("cuda:0 (NVIDIA H200)"), endpoint)
    assert smooth_backend.wanted(gpu, "auto") is local  # type: ignore[arg-type]
    assert smooth_backend.wanted(gpu, "backend") is True  # type: ignore[arg-type]


def test_a_bad_choice_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(smooth_backend.SMOOTH_ON_ENV, "gpu")
    with pytest.raises(FrameError, match="auto, backend, blender"):
        smooth_backend.choice()


def frames(n: int = 3) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(stylized, render, flow) per frame: a texture panned 1.5 px a frame to the right, stylized with noise."""
    base = RNG.random((H, W + 8, 3), dtype=np.float32)
    out = []
    for t in range(n):
        x = np.arange(W) + 4 - 1.5 * t
        x0 = np.floor(x).astype(int)
        fx = (x - x0)[None, :, None]
        render = (base[:, x0] * (1 - fx) + base[:, x0 + 1] * fx).astype(np.float32)
        stylized = np.clip(render + RNG.normal(0, 0.1, render.shape), 0, 1).astype(np.float32)
        flow = np.zeros((H, W, 2), np.float32)
        flow[..., 0] = -1.5
        out.append((stylized, render, flow))
    return out


def run(remote: smooth_backend.Remote | None, seq: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    s = Smoother()
    return [s.apply("L", t, st, ct, fl if t else None, 0.6, -fl, remote)[0] for t, (st, ct, fl) in enumerate(seq)]


@pytest.fixture
def manager(serve):
    server = serve()
    m = BackendManager(BackendSettings(endpoint=server.endpoint, command=None, connect_timeout=10, give_up=30))
    yield m, server
    m.close()


def test_steps_on_the_backend_equal_steps_in_blender(manager, monkeypatch):
    m, _ = manager
    seq = frames()
    monkeypatch.setenv(smooth_backend.SMOOTH_ON_ENV, "auto")
    assert smooth_backend.remote(m) is None, "a CPU backend: the steps stay in Blender"
    monkeypatch.setenv(smooth_backend.SMOOTH_ON_ENV, "backend")
    calls: list[int] = []
    step = smooth_backend.remote(m, "float32")
    assert step is not None

    def counted(*args):  # type: ignore[no-untyped-def]
        out = step(*args)
        calls.append(out is not None)
        return out

    here, there = run(None, seq), run(counted, seq)
    assert calls == [True, True], "frames 1 and 2 were smoothed on the backend"
    for a, b in zip(here, there, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)
    assert np.abs(here[2] - seq[2][0]).max() > 0.05, "the steps did smooth"
    half = run(smooth_backend.remote(m, "float16"), seq)  # the default wire: within a fraction of an 8-bit level
    assert max(float(np.abs(a - b).max()) for a, b in zip(here, half, strict=True)) < 0.5 / 255


def test_a_step_the_backend_cannot_do_is_done_in_blender(manager, monkeypatch):
    m, server = manager
    monkeypatch.setenv(smooth_backend.SMOOTH_ON_ENV, "backend")
    monkeypatch.setattr(smooth_backend, "STEP_TIMEOUT", 2.0)
    step = smooth_backend.remote(m, "float32")
    assert step is not None
    seq = frames(2)
    expected = run(None, seq)
    server.stop()  # the backend is gone: the step comes back unanswered within STEP_TIMEOUT and numpy does it
    t0 = time.monotonic()
    got = run(step, seq)
    assert time.monotonic() - t0 < 10
    np.testing.assert_allclose(got[1], expected[1], atol=1e-6)


def test_esc_cancels_a_step_waiting_for_the_backend(manager, monkeypatch):
    m, _ = manager
    monkeypatch.setenv(smooth_backend.SMOOTH_ON_ENV, "backend")
    step = smooth_backend.remote(m, "float32", cancelled=lambda: True)
    assert step is not None
    st, ct, fl = frames(1)[0]
    with pytest.raises(FrameCancelledError):
        step(st, ct, np.concatenate([st, ct], axis=-1), fl, 0.5)


def test_hello_of_an_older_backend_reads_without_smooth():
    old = dataclasses.replace(hello("cuda:0"), ops=("hello", "style.put", "stylize", "cancel", "release", "shutdown"))
    assert not smooth_backend.wanted(FakeClient(old), "backend")  # type: ignore[arg-type]
