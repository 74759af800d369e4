"""The client library against a real backend (tcp loopback, real model): blocking and non-blocking calls,
cancellation, transparent re-puts, and errors a person can act on."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from adain_wire.client import TIMEOUT, Client, ClientError
from adain_wire.protocol import ErrorCode, Passes, RegionSpec, StyleRef

RNG = np.random.default_rng(11)
STYLE_A = RNG.random((32, 40, 3), dtype=np.float32)
STYLE_B = RNG.random((40, 32, 3), dtype=np.float32)


def frame(seed: int, channels: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).random((32, 36, channels), dtype=np.float32)


def expected(model, image: np.ndarray, style: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    content = torch.from_numpy(np.ascontiguousarray(image[..., :3].transpose(2, 0, 1)))
    stats = model.encode_style(torch.from_numpy(np.ascontiguousarray(style.transpose(2, 0, 1))))
    return model.stylize(content, stats, alpha).numpy().transpose(1, 2, 0)


@pytest.fixture
def client(serve):
    server = serve()
    with Client(server.endpoint, timeout=5) as c:
        yield c


def test_connect_shakes_hands(client):
    assert client.server is not None and client.server.protocol == 1 and client.server.device.startswith("cpu")


def test_blocking_put_and_stylize_equal_the_library(client, model):
    sid = client.put_style(STYLE_A, size=0)
    image = frame(1)
    out = client.stylize(image, sid, alpha=0.6)
    assert out.combined is not None and out.combined.shape == image.shape
    np.testing.assert_allclose(out.combined[..., :3], expected(model, image, STYLE_A, 0.6), atol=1e-5)
    np.testing.assert_array_equal(out.combined[..., 3], image[..., 3])


def test_non_blocking_submits_complete_each_with_its_own_frame(client, model):
    sid = client.put_style_async(STYLE_B, size=0).result(10).style
    frames = [frame(i) for i in range(6)]
    seen: list[str] = []
    done = threading.Event()

    def on_done(p) -> None:
        seen.append(p.id)
        if len(seen) == len(frames):
            done.set()

    pendings = [client.submit(f, sid) for f in frames]
    for p in pendings:
        p.add_done_callback(on_done)
    assert done.wait(30) and sorted(seen) == sorted(p.id for p in pendings)
    for f, p in zip(frames, pendings, strict=True):
        assert p.done()
        out = p.result().combined
        assert out is not None
        np.testing.assert_allclose(out[..., :3], expected(model, f, STYLE_B), atol=1e-5)


def test_cancel_makes_result_raise_cancelled(client):
    sid = client.put_style(STYLE_A, size=0)
    big = RNG.random((128, 128, 3), dtype=np.float32)
    ahead = [client.submit(big, sid, passes=Passes(True, True)) for _ in range(3)]
    victim = client.submit(frame(2), sid)
    victim.cancel()
    with pytest.raises(ClientError) as info:
        victim.result(30)
    assert info.value.code == ErrorCode.CANCELLED
    assert all(p.result(30).combined is not None for p in ahead)


def test_styles_the_backend_forgot_are_put_again_transparently(serve, model):
    server = serve(cache_size=1)
    with Client(server.endpoint) as client:
        a = client.put_style(STYLE_A, size=0)
        b = client.put_style(STYLE_B, size=0)  # evicts a
        image = frame(3)
        out = client.stylize(image, a)
        assert out.combined is not None
        np.testing.assert_allclose(out.combined[..., :3], expected(model, image, STYLE_A), atol=1e-5)
        assert client.release(styles=True).styles_dropped == 1
        out = client.stylize(image, b, alpha=0.5)
        assert out.combined is not None
        np.testing.assert_allclose(out.combined[..., :3], expected(model, image, STYLE_B, 0.5), atol=1e-5)
        with pytest.raises(ClientError) as info:  # a mix the cache cannot hold at once is refused, not retried forever
            client.stylize(image, RegionSpec((StyleRef(a), StyleRef(b)), 0.5))
        assert info.value.code == ErrorCode.TOO_LARGE and "--cache-size" in info.value.message


def test_a_style_never_put_is_an_error_with_the_backends_message(client):
    with pytest.raises(ClientError) as info:
        client.stylize(frame(4), "0" * 64)
    assert info.value.code == ErrorCode.UNKNOWN_STYLE and "put it again" in info.value.message


def test_requests_the_backend_would_refuse_fail_before_sending(serve):
    server = serve(max_pixels=32 * 32)
    with Client(server.endpoint) as client:
        with pytest.raises(ClientError) as info:
            client.submit(frame(5), "s" * 64, colourspace="linear")
        assert info.value.code == ErrorCode.BAD_REQUEST and "view transform" in info.value.message
        with pytest.raises(ClientError) as info:
            client.submit(frame(5), "s" * 64)
        assert info.value.code == ErrorCode.TOO_LARGE and "--max-pixels" in info.value.message


def test_no_backend_gives_an_actionable_timeout(tcp_port):
    endpoint = f"tcp://127.0.0.1:{tcp_port}"
    client = Client(endpoint, timeout=0.5)
    try:
        with pytest.raises(ClientError) as info:
            client.connect()
        assert info.value.code == TIMEOUT
        assert info.value.message == (
            f"backend at {endpoint} did not answer within 0.5 s: is it running? start it with `adain-backend`"
        )
    finally:
        client.close()


def test_requests_outstanding_when_the_backend_stays_away_fail_after_give_up(serve):
    server = serve()
    client = Client(server.endpoint, timeout=0.3, give_up=1.0, heartbeat=0.1)
    try:
        client.connect()
        sid = client.put_style(STYLE_A, size=0)
        server.stop(timeout=10)
        with pytest.raises(ClientError) as info:
            client.stylize(frame(6), sid)
        assert info.value.code == TIMEOUT and "did not answer within 1 s" in info.value.message
    finally:
        client.close()


def test_shutdown_stops_the_backend_and_close_fails_what_is_left(serve):
    server = serve()
    client = Client(server.endpoint, timeout=2)
    client.connect()
    sid = client.put_style(STYLE_A, size=0)
    big = RNG.random((128, 128, 3), dtype=np.float32)
    queued = [client.submit(big, sid, passes=Passes(True, True)) for _ in range(3)]
    client.shutdown()
    outcomes = [p.exception(10) for p in queued]  # a running one is finished, the queued ones are refused
    assert outcomes[0] is None or outcomes[0].code == ErrorCode.SHUTTING_DOWN
    assert all(e is not None and e.code == ErrorCode.SHUTTING_DOWN for e in outcomes[1:])
    assert server._thread is not None
    server._thread.join(10)
    assert not server._thread.is_alive()
    pending = client.submit(frame(7), "s" * 64)
    client.close()
    with pytest.raises(ClientError) as info:
        pending.result(5)
    assert info.value.code == "closed"
    with pytest.raises(ClientError):
        client.submit(frame(7), "s" * 64)


def test_backend_restarted_on_the_same_port_mid_sequence(serve, model, caplog, tcp_port):
    """A graceful restart: the old backend answers its queue "shutting_down", the client parks those requests,
    notices the new instance through its heartbeat, puts the style again and gets every frame exactly once."""
    port = tcp_port
    first = serve(f"tcp://127.0.0.1:{port}")
    frames = [frame(100 + i) for i in range(10)]
    caplog.set_level("INFO", logger="adain_wire.client")
    with Client(first.endpoint, timeout=30, heartbeat=0.1, window=8) as client:
        instance = client.server.instance if client.server else ""
        sid = client.put_style(STYLE_A, size=0)
        pendings = [client.submit(f, sid) for f in frames]
        pendings[0].result(30)
        first.stop(timeout=10)
        assert not all(p.done() for p in pendings)
        serve(f"tcp://127.0.0.1:{port}")
        results = [p.result(60) for p in pendings]
        assert client.server is not None and client.server.instance != instance
    assert "restarted" in caplog.text
    for f, r in zip(frames, results, strict=True):
        assert r.combined is not None
        np.testing.assert_allclose(r.combined[..., :3], expected(model, f, STYLE_A), atol=1e-5)


def test_pending_wait_says_whether_done_without_raising():
    """Pending.wait (what addon.frames polls with) is True once the request ended, replied or failed, and never
    raises; only result() does."""
    from adain_wire.pending import Pending

    replied: Pending[str] = Pending("r1", lambda _id: None)
    assert replied.wait(0.01) is False and not replied.done()
    replied._finish("value", None)
    assert replied.wait(0) is True and replied.result() == "value"
    failed: Pending[str] = Pending("r2", lambda _id: None)
    failed._finish(None, ClientError(ErrorCode.BUSY, "busy"))
    assert failed.wait(0) is True
    with pytest.raises(ClientError, match="busy"):
        failed.result(0)
