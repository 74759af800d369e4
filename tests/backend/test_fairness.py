"""Fair, calm backpressure (issue 16, item 6), real sockets and the real model: model work is taken round-robin
across connections, each connection may have ``max_inflight`` requests queued or running (stated in hello), and
the reference client keeps within it, so many pipelining clients get every frame with no ``busy`` storm."""

from __future__ import annotations

import threading

import numpy as np
import torch
from wire import Wire, chw, wait_running

from adain_wire.client import Client
from adain_wire.protocol import ErrorCode, ErrorReply, Hello, HelloReply, RegionSpec, StylePut, StyleRef, Stylize, StylizeReply

RNG = np.random.default_rng(3)
STYLE = RNG.random((32, 32, 3), dtype=np.float32)


def _put(w: Wire) -> str:
    reply = w.ask(StylePut("put", image=STYLE, size=0))
    return reply.style  # type: ignore[union-attr]


def test_hello_states_the_per_connection_limit(serve, zctx):
    server = serve(max_inflight=3)
    reply = Wire(zctx, server.endpoint).ask(Hello("h"))
    assert isinstance(reply, HelloReply) and reply.limits.max_inflight == 3


def test_a_connection_past_its_limit_gets_busy_and_the_others_are_served(serve, zctx):
    server = serve(max_inflight=2, max_queue=16)
    a = Wire(zctx, server.endpoint, timeout=60)
    sid = _put(a)
    big = RNG.random((128, 128, 3), dtype=np.float32)
    for i in range(3):
        a.send(Stylize(f"a{i}", big, (RegionSpec((StyleRef(sid),)),)))
    replies = {r.id: r for r in (a.recv() for _ in range(3))}
    assert isinstance(replies["a2"], ErrorReply) and replies["a2"].code == ErrorCode.BUSY
    assert "max_inflight" in replies["a2"].message
    assert all(isinstance(replies[k], StylizeReply) for k in ("a0", "a1"))


def test_one_frame_of_another_client_does_not_wait_for_a_burst(serve, zctx):
    """A queues 4 frames, B then 1: round-robin runs B's right after A's second, not after all of A's."""
    server = serve(max_inflight=4)
    a, b = Wire(zctx, server.endpoint, timeout=60), Wire(zctx, server.endpoint, timeout=60)
    sid = _put(a)
    big = RNG.random((160, 160, 3), dtype=np.float32)
    for i in range(4):
        a.send(Stylize(f"a{i}", big, (RegionSpec((StyleRef(sid),)),)))
    wait_running(server, "a0")
    b.send(Stylize("b0", big, (RegionSpec((StyleRef(sid),)),)))
    assert isinstance(b.recv(), StylizeReply)
    got = 0
    while not a.silent(0):
        assert isinstance(a.recv(), StylizeReply)
        got += 1
    assert got <= 2, f"{got} of A's 4 frames were done before B's one (a FIFO queue does all 4)"
    for _ in range(4 - got):
        assert isinstance(a.recv(), StylizeReply)


def test_eight_pipelining_clients_get_every_frame_once_without_a_busy_storm(serve, model):
    """8 clients x 20 frames at 64x64, all submitted at once: every frame comes back, its own, and the clients
    keep within max_inflight so the backend hardly ever says busy (before: 9,894 busy replies for 160 frames)."""
    server = serve()
    clients = [Client(server.endpoint, timeout=30, give_up=120, window=8) for _ in range(8)]
    results: dict[int, list[np.ndarray]] = {}
    sent: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []
    try:
        for c in clients:
            c.connect()
        sid = clients[0].put_style(STYLE, size=0)
        start = threading.Barrier(len(clients))

        def run(k: int, client: Client) -> None:
            try:
                frames = [np.random.default_rng(k * 100 + i).random((64, 64, 3), dtype=np.float32) for i in range(20)]
                sent[k] = frames
                start.wait(30)
                pendings = [client.submit(f, sid) for f in frames]
                results[k] = [np.asarray(p.result(300).combined) for p in pendings]
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=(k, c)) for k, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(400)
        assert not errors, errors
        busy = sum(c.busy_replies for c in clients)
    finally:
        for c in clients:
            c.close()
    stats = model.encode_style(torch.from_numpy(chw(STYLE)))
    for k in range(8):
        assert len(results[k]) == 20
        for f, out in zip(sent[k], results[k], strict=True):  # each its own frame, none lost, none crossed
            want = model.stylize(torch.from_numpy(chw(f)), stats).numpy().transpose(1, 2, 0)
            np.testing.assert_allclose(out, want, atol=1e-5)
    assert busy <= 160, f"{busy} busy replies for 160 frames"
