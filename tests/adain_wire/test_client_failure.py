"""A client whose I/O thread dies mid-sequence: every pending and later call fails at once with the cause, and
``BackendManager.client()`` replaces it so the sequence goes on (real backend, real sockets; the thread is
killed from outside with an asynchronous exception, the way a removed module or a bug kills it)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from adain_wire.client import BROKEN, Client, ClientError
from adain_wire.manager import BackendManager, BackendSettings
from adain_wire.pending import WATCH_S, Pending
from tests.faults import kill_thread

RNG = np.random.default_rng(5)
STYLE = RNG.random((32, 32, 3), dtype=np.float32)


def frames(n: int, size: int = 96) -> list[np.ndarray]:
    return [np.random.default_rng(100 + i).random((size, size, 3), dtype=np.float32) for i in range(n)]


def test_killing_the_io_thread_fails_pending_and_later_calls_at_once_and_the_manager_replaces_the_client(serve):
    server = serve()
    manager = BackendManager(BackendSettings(endpoint=server.endpoint, command=None, connect_timeout=10, give_up=60))
    try:
        first = manager.client()
        sid = first.put_style(STYLE, size=0)
        sequence = frames(8)
        pendings = [first.submit(f, sid) for f in sequence]
        assert pendings[0].result(60).combined is not None
        assert first._thread is not None
        kill_thread(first._thread)
        t0 = time.monotonic()
        outcomes = [p.exception(10) for p in pendings[1:]]
        failed = [e for e in outcomes if e is not None]
        assert failed, "the backend answered every frame before the thread died: kill earlier"
        assert all(e.code == BROKEN and "IOThreadKilledError" in e.message for e in failed)
        assert time.monotonic() - t0 < 5.0  # at once, not after the client's give_up (60 s)
        assert not first.healthy
        with pytest.raises(ClientError) as info:  # later calls: no wait at all (this was a hang)
            first.put_style(STYLE, size=0)
        assert info.value.code == BROKEN

        second = manager.client()  # the owner notices and replaces it
        assert second is not first and second.healthy
        sid2 = second.put_style(STYLE, size=0)
        assert sid2 == sid
        redo = [i for i, e in enumerate(outcomes, start=1) if e is not None]
        results = [second.submit(sequence[i], sid2) for i in redo]
        for i, p in zip(redo, results, strict=True):
            out = p.result(60).combined
            assert out is not None and out.shape[:2] == sequence[i].shape[:2]
    finally:
        manager.close()


def test_a_waiter_without_a_timeout_is_released_when_the_thread_dies(serve):
    """``result()`` with no timeout (what a blocking put_style does) ends with the cause, not never."""
    server = serve()
    with Client(server.endpoint, timeout=10, give_up=600) as client:
        sid = client.put_style(STYLE, size=0)
        big = [client.submit(f, sid) for f in frames(4, 256)]
        outcome: list[BaseException | None] = []

        def wait_last() -> None:
            try:
                big[-1].result()
                outcome.append(None)
            except ClientError as e:
                outcome.append(e)

        waiter = threading.Thread(target=wait_last, daemon=True)
        waiter.start()
        assert client._thread is not None
        kill_thread(client._thread)
        waiter.join(10)
        assert not waiter.is_alive() and len(outcome) == 1
        assert outcome[0] is None or (isinstance(outcome[0], ClientError) and outcome[0].code == BROKEN)


def test_pending_checks_its_watch_while_it_waits():
    """The watch is asked every WATCH_S while nothing arrives; the error it names ends the wait."""
    state: dict[str, ClientError | None] = {"error": None}
    p: Pending[str] = Pending("r", lambda _id: None, lambda: state["error"])
    assert p.wait(2 * WATCH_S + 0.1) is False
    state["error"] = ClientError(BROKEN, "gone")
    t0 = time.monotonic()
    with pytest.raises(ClientError, match="gone"):
        p.result()
    assert time.monotonic() - t0 <= 2 * WATCH_S
