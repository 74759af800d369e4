"""Temporal smoothing on the backend's device: the ``smooth`` op, where it is cheaper than numpy in Blender (no bpy).

``temporal.Smoother`` keeps the history in Blender either way; this module only decides where one step runs and
runs it there. ``ADAIN_SMOOTH_ON`` chooses:

- ``auto`` (the default): on the backend when it runs on this machine (ipc, or tcp to a loopback address), its
  device is a GPU and it serves ``smooth``. A 1080p step costs about 0.3 s of numpy on a 2-core CPU and
  milliseconds on a GPU, plus ~75 MB through the socket: fast on loopback, but 0.6 s on a 1 Gb/s network, and a CPU
  backend would be no faster than numpy, so in those cases the step stays in Blender.
- ``backend``: on the backend whenever it serves ``smooth`` (its CPU too: for tests and measurements).
- ``blender``: always in Blender.

A step the backend cannot do (an older backend, a lost connection, no answer within STEP_TIMEOUT, an error) is done
in Blender instead, and the log says why: smoothing never costs a frame. Esc still cancels.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Callable

import numpy as np

from adain_wire.client import Client, ClientError
from adain_wire.manager import BackendManager, BackendUnavailableError
from adain_wire.protocol import Smooth

from .frames import FrameCancelledError, FrameError, wait_reply

SMOOTH_ON_ENV = "ADAIN_SMOOTH_ON"
CHOICES = ("auto", "backend", "blender")
STEP_TIMEOUT = 15.0  # s a step may wait for the backend (milliseconds of GPU work, behind other clients' frames)
log = logging.getLogger("adain.smooth")

Remote = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], "np.ndarray | None"]


def choice() -> str:
    """``ADAIN_SMOOTH_ON``, checked (FrameError naming the allowed values)."""
    value = os.environ.get(SMOOTH_ON_ENV, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise FrameError(f"{SMOOTH_ON_ENV}={value!r}: use one of {', '.join(CHOICES)}")
    return value


def wanted(client: Client, where: str) -> bool:
    """Whether a step goes to this client's backend, by ``where`` (one of CHOICES), its address and its hello."""
    server = client.server
    if where == "blender" or server is None or Smooth.OP not in server.ops:
        return False
    return where == "backend" or (on_this_machine(client.endpoint) and not server.device.lower().startswith("cpu"))


def on_this_machine(endpoint: str) -> bool:
    """ipc and inproc endpoints, and tcp ones whose host is a loopback address or name."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rpartition(":")[0].strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote(backend: BackendManager, wire: str = "float16", cancelled: Callable[[], bool] = lambda: False) -> Remote | None:
    """A step function for ``Smoother.apply`` that runs on ``backend``'s device, or None when steps stay in Blender.

    The frames travel in ``wire`` ("float16": half the bytes; display values and motions keep an error far below
    what the blend can show), the motion ``flow`` in float32. The step returns None (smooth in Blender) when the
    backend fails it, and raises FrameCancelledError when ``cancelled()`` turns true while it waits.
    """
    where = choice()
    if where == "blender":
        return None
    try:
        client = backend.client()
    except BackendUnavailableError:
        return None
    if not wanted(client, where):
        return None

    def step(
        stylized: np.ndarray, content: np.ndarray, history: np.ndarray, flow: np.ndarray, strength: float
    ) -> np.ndarray | None:
        deadline = time.monotonic() + STEP_TIMEOUT

        def lost() -> str | None:
            if time.monotonic() > deadline:
                return f"no answer within {STEP_TIMEOUT:g} s"
            return backend.lost(client)

        try:
            pending = client.submit_smooth(
                stylized.astype(wire, copy=False),
                content.astype(wire, copy=False),
                history.astype(wire, copy=False),
                np.ascontiguousarray(flow, np.float32),
                strength,
                output_dtype="float32",
            )
            reply = wait_reply(pending, cancelled, lost, "the backend could not smooth the frame")
        except FrameCancelledError:
            raise
        except (ClientError, FrameError) as e:
            log.warning("temporal smoothing on the backend failed (%s); smoothing in Blender instead", e)
            return None
        return np.asarray(reply.image, np.float32)

    return step
