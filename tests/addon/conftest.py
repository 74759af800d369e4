"""Client fixtures: real backend servers on real sockets, serving the real model (shared with the reference calls)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from backend.config import Config
from backend.server import Server
from backend.service import ModelService


@pytest.fixture
def zctx() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def serve(model, zctx) -> Iterator[Callable[..., Server]]:
    """``serve(bind=..., context=..., **config)`` starts a Server on a thread; all are stopped at teardown,
    before ``zctx`` (which a server may share) is destroyed."""
    servers: list[Server] = []

    def start(bind: str = "tcp://127.0.0.1:*", context: zmq.Context | None = None, **options: Any) -> Server:
        config = Config(bind=bind, device="cpu", precision="fp32", **options)
        server = Server(config, ModelService(config, model), context).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(timeout=10)


@pytest.fixture
def tcp_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers that must come back on the same port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
