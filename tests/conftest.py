"""Shared fixtures: the real model with the shipped weights, the sample images, and real backend servers."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import zmq

from adain_wire.client import Client
from backend.config import Config
from backend.server import Server
from backend.service import make_service

SAMPLES = Path(__file__).resolve().parents[1] / "adain" / "data" / "samples"


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def model():
    """The shipped decoder with our normalised encoder, CPU, fp32 (deterministic comparisons)."""
    from adain import StyleTransfer

    torch.manual_seed(0)
    return StyleTransfer.load_default(device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def content_img(samples):
    from adain.images import load_image

    return load_image(samples / "content_coffee.jpg", 128)


@pytest.fixture(scope="session")
def style_imgs(samples):
    from adain.images import load_image

    return [load_image(p, 128) for p in sorted(samples.glob("style_*.jpg"))]


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> str:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine")
    return request.param


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
        server = Server(config, make_service(config, model), context).start()
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


@pytest.fixture
def real(serve):
    """A client of a real backend running the shipped decoder (CPU, fp32)."""
    server = serve()
    with Client(server.endpoint, timeout=60) as client:
        yield client
