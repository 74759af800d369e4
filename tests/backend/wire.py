"""Raw-socket helpers for the backend tests: a DEALER that speaks the protocol frame by frame."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import zmq

from adain_wire.protocol import Reply, Request, decode_reply, encode_request


class Wire:
    """A DEALER socket; ``ask`` sends a request (or raw frames) and waits for one reply, failing the test if
    none comes within ``timeout`` seconds."""

    def __init__(self, context: zmq.Context, endpoint: str, timeout: float = 20.0) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.timeout = timeout

    def send(self, msg: Request | list[Any]) -> None:
        self.socket.send_multipart(msg if isinstance(msg, list) else encode_request(msg))

    def recv(self, timeout: float | None = None) -> Reply:
        if not self.socket.poll(int(1000 * (timeout or self.timeout))):
            raise AssertionError(f"no reply within {timeout or self.timeout} s")
        return decode_reply(self.socket.recv_multipart())

    def ask(self, msg: Request | list[Any], timeout: float | None = None) -> Reply:
        self.send(msg)
        return self.recv(timeout)

    def silent(self, seconds: float) -> bool:
        """True when nothing arrives for ``seconds``."""
        return not self.socket.poll(int(1000 * seconds))

    def close(self) -> None:
        self.socket.close(0)


def wait_running(server: Any, request_id: str, timeout: float = 20.0) -> None:
    """Block until the server's worker has started ``request_id`` (white-box: reads the server's job table)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(job.request_id == request_id and job.state == "running" for job in list(server._inflight.values())):
            return
        time.sleep(0.002)
    raise AssertionError(f"{request_id} did not start within {timeout} s")


def chw(hwc: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (C, H, W) float32, for comparing with StyleTransfer output."""
    return np.ascontiguousarray(hwc.transpose(2, 0, 1), dtype=np.float32)
