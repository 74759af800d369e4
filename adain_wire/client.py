"""The client of the stylization backend (no bpy, no torch): numpy + pyzmq + msgpack + ``adain_wire.protocol``.

    with Client("tcp://127.0.0.1:5555") as client:         # connects and checks the protocol version
        sid = client.put_style(open("style.jpg", "rb").read())
        out = client.stylize(frame_rgba_float32, sid, alpha=0.8)      # blocking
        pending = client.submit(frame, RegionSpec.mix({sid: 1, other: 3}, alpha=0.5))  # non-blocking
        ...; result = pending.result()      # result arrays are read-only views of the received frames

One I/O thread owns the DEALER socket; every public method may be called from any thread. Requests
are pipelined (up to ``window`` model requests on the wire) and tracked by id until their reply comes,
so a backend restart loses nothing. The parts:

- ``Client`` (here): the public calls, checked before anything is queued, and the I/O thread's life;
- ``Pending`` (``pending``): what a call returns, the future its caller waits on;
- ``Call`` (``calls``): one request as the I/O thread tracks it across resends;
- ``Dispatcher`` (``dispatch``): the I/O thread's socket, its calls in flight, and the recovery rules: heartbeats,
  resends after a backend restart, style re-puts, busy back-off, reconnects after silence.

The I/O thread dying (a bug, or the add-on's own modules removed under it) fails every outstanding call
at once with ClientError(BROKEN, cause), and every later call raises it: ``healthy`` turns False and the
owner replaces the client (``BackendManager.client()`` does).
Completion callbacks run on the I/O thread: keep them short and never touch ``bpy`` from them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import zmq
import zmq.auth

from .calls import MAX_STYLE_RETRIES as MAX_STYLE_RETRIES  # (re-exported: these lived here before calls.py)
from .calls import Call
from .calls import CallState as CallState
from .dispatch import Dispatcher
from .errors import AUTH, BROKEN, CLOSED, TIMEOUT, VERSION, ClientError
from .keys import ClientCurve
from .options import DEFAULT_ENDPOINT
from .pending import Pending
from .protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    Hello,
    HelloReply,
    Passes,
    ProtocolError,
    RegionSpec,
    Release,
    ReleaseReply,
    Request,
    Shutdown,
    Smooth,
    SmoothReply,
    StylePut,
    StylePutReply,
    StyleRef,
    Stylize,
    StylizeReply,
    decode_request,
    encode_request,
    style_id,
)

__all__ = [
    "AUTH", "BROKEN", "CLOSED", "DEFAULT_ENDPOINT", "TIMEOUT", "VERSION", "Client", "ClientCurve", "ClientError", "Pending",
]  # fmt: skip

log = logging.getLogger("adain_wire.client")


class Client:
    """A connection to the backend; see ``adain_wire.dispatch`` for the recovery rules."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout: float = 5.0,
        give_up: float = 60.0,
        heartbeat: float = 1.0,
        window: int = 4,
        curve: ClientCurve | None = None,
        context: zmq.Context | None = None,
        name: str = "adain-addon",
    ) -> None:
        self.endpoint = endpoint
        self.timeout, self.give_up, self.heartbeat = timeout, give_up, heartbeat
        self.window = max(1, window)
        self.curve = curve
        self.name = name
        self._context = context or zmq.Context()
        self._own_context = context is None
        self._prefix = uuid.uuid4().hex[:8]
        self._counter = itertools.count(1)
        self._commands: deque[Callable[[], None]] = deque()  # run by the I/O thread, in order
        self._wake_lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._wake_endpoint = f"inproc://adain-client-{self._prefix}"
        self._wake_rx = self._context.socket(zmq.PAIR)
        self._wake_rx.bind(self._wake_endpoint)
        self._wake_tx = self._context.socket(zmq.PAIR)
        self._wake_tx.connect(self._wake_endpoint)
        self._thread: threading.Thread | None = None
        self._closing = False
        self._failure: ClientError | None = None  # why the I/O thread died; set once, under _submit_lock
        self._io = Dispatcher(  # owned by the I/O thread
            self._context, endpoint, timeout=timeout, give_up=give_up, heartbeat=heartbeat, window=self.window,
            curve=curve, name=name, new_id=self._new_id, accepting=lambda: not self._closing and self._failure is None,
        )  # fmt: skip

    @property
    def server(self) -> HelloReply | None:
        """The backend's latest hello reply: who it is, its instance, device, model and limits (None before connect)."""
        return self._io.server

    @server.setter
    def server(self, reply: HelloReply | None) -> None:
        self._io.server = reply

    @property
    def busy_replies(self) -> int:
        """``busy`` answers received (each was sent again after a back-off): for soak figures."""
        return self._io.busy_replies

    @property
    def stale_replies(self) -> int:
        """Replies to requests already answered (a resent copy answered too) or unknown: dropped."""
        return self._io.stale_replies

    # ------------------------------------------------------------------------------ connecting
    def connect(self) -> HelloReply:
        """Start the I/O thread and shake hands; raises ClientError (TIMEOUT, VERSION, AUTH) with what to do."""
        pending: Pending[HelloReply] = self._submit(Hello(self._new_id(), self.name))
        try:
            reply = pending.result(self.timeout)
        except ClientError as e:
            if e.code == TIMEOUT:
                self._call_soon(lambda: self._io.drop(pending.id))
                raise ClientError(TIMEOUT, f"backend at {self.endpoint} did not answer within {self.timeout:g} s: "
                                  "is it running? start it with `adain-backend`") from None  # fmt: skip
            raise
        if reply.protocol != PROTOCOL_VERSION:
            raise ClientError(VERSION, f"backend at {self.endpoint} speaks protocol {reply.protocol}, this add-on "
                              f"{PROTOCOL_VERSION}: install matching versions of the add-on and the backend")  # fmt: skip
        self.server = reply
        return reply

    def close(self) -> None:
        """Stop the I/O thread; requests still outstanding fail with ClientError(CLOSED)."""
        with self._submit_lock:
            if self._closing:
                return
            self._closing = True
        self._wake()
        if self._thread is not None:
            self._thread.join(5.0)
        with self._wake_lock:
            self._wake_tx.close(0)
        self._wake_rx.close(0)
        if self._own_context:
            self._context.term()

    @property
    def healthy(self) -> bool:
        """False once this client is closed or its I/O thread has died: make a new one."""
        thread = self._thread
        return not self._closing and self._failure is None and (thread is None or thread.is_alive())

    def _watch(self) -> ClientError | None:
        """For waiters (``Pending``): the error their call will never get a reply past, if any."""
        if self._failure is not None:
            return self._failure
        thread = self._thread
        if thread is not None and not thread.is_alive():
            return ClientError(BROKEN, "the client's I/O thread is gone; create a new client")
        return None

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------- requests
    def put_style(self, image: bytes | np.ndarray, *, size: int = 512, colourspace: str = "srgb") -> str:
        """Send a style (encoded file bytes or an (H, W, 3|4) array); returns its id once the backend has it."""
        return self.put_style_async(image, size=size, colourspace=colourspace).result().style

    def put_style_async(self, image: bytes | np.ndarray, *, size: int = 512, colourspace: str = "srgb") -> Pending[StylePutReply]:
        if isinstance(image, (bytes, bytearray, memoryview)):
            msg = StylePut(self._new_id(), encoded=bytes(image), size=size)
        else:
            msg = StylePut(self._new_id(), image=_wire(image), colourspace=colourspace, size=size)
        self._check_size(msg)
        return self._submit(msg)

    def stylize(self, image: np.ndarray, regions: str | RegionSpec | Sequence[RegionSpec], **options: Any) -> StylizeReply:
        """Blocking ``submit(...).result()``."""
        return self.submit(image, regions, **options).result()

    def submit(
        self,
        image: np.ndarray,
        regions: str | RegionSpec | Sequence[RegionSpec],
        *,
        alpha: float = 1.0,
        masks: np.ndarray | None = None,
        preserve_color: str = "none",
        passes: Passes | None = None,
        tile: int | None = None,
        output_dtype: str | None = None,
        colourspace: str = "srgb",
    ) -> Pending[StylizeReply]:
        """Send a frame (H, W, 3|4) to stylize; ``regions``: a style id (with ``alpha``), a RegionSpec or one
        per mask region. Do not modify ``image`` or ``masks`` until the request is done."""
        if isinstance(regions, str):
            regions = (RegionSpec((StyleRef(regions),), alpha),)
        elif isinstance(regions, RegionSpec):
            regions = (regions,)
        msg = Stylize(self._new_id(), _wire(image), tuple(regions), colourspace, None if masks is None else _wire(masks),
                      preserve_color, passes or Passes(), tile, output_dtype)  # fmt: skip
        try:
            decode_request(encode_request(msg))  # the backend's own structural checks, before anything is queued
        except ProtocolError as e:
            raise ClientError(e.code, e.message) from None
        self._check_size(msg)
        return self._submit(msg)

    def submit_smooth(
        self,
        stylized: np.ndarray,
        content: np.ndarray,
        history: np.ndarray,
        flow: np.ndarray,
        strength: float,
        *,
        output_dtype: str | None = None,
    ) -> Pending[SmoothReply]:
        """One step of temporal smoothing on the backend's device (``Smooth``; only where ``"smooth"`` is in the
        backend's ``server.ops``). Do not modify the arrays until the request is done."""
        if self.server is not None and Smooth.OP not in self.server.ops:
            raise ClientError(ErrorCode.UNKNOWN_OP, f"this backend ({self.server.server}) has no smooth op: update it, "
                              "or smooth in the client")  # fmt: skip
        msg = Smooth(self._new_id(), _wire(stylized), _wire(content), _wire(history), _wire(flow), float(strength),
                     output_dtype)  # fmt: skip
        try:
            decode_request(encode_request(msg))
        except ProtocolError as e:
            raise ClientError(e.code, e.message) from None
        self._check_size(msg)
        return self._submit(msg)

    def cancel(self, pending: Pending[Any]) -> None:
        pending.cancel()

    def release(self, styles: bool = False) -> ReleaseReply:
        """Ask the backend to free cached GPU memory (and with ``styles`` forget its cached styles)."""
        return self._submit(Release(self._new_id(), styles)).result()

    def shutdown(self) -> None:
        """Stop the backend (it accepts this from this machine only)."""
        self._submit(Shutdown(self._new_id())).result(self.timeout)

    def forget_style(self, style: str) -> None:
        """Stop keeping a style's image for transparent re-puts."""

        self._call_soon(lambda: self._io.forget_style(style))

    # ------------------------------------------------------------------------ caller side
    def _new_id(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"

    def _check_size(self, msg: StylePut | Stylize | Smooth) -> None:
        """Refuse here what the backend would refuse (or drop the connection for), with the reason."""
        if self.server is None:
            return
        lim = self.server.limits
        if isinstance(msg, Smooth):
            arrays = [msg.stylized, msg.content, msg.history, msg.flow]
        else:
            arrays = [a for a in (msg.image, msg.masks if isinstance(msg, Stylize) else None) if a is not None]
        if arrays:
            h, w = arrays[0].shape[:2]
            if h * w > lim.max_pixels:
                raise ClientError(
                    ErrorCode.TOO_LARGE,
                    f"the image is {w}x{h} = {w * h} pixels; the backend takes at most {lim.max_pixels}: "
                    "render smaller or start the backend with a larger --max-pixels",
                )
        sizes = [a.nbytes for a in arrays] + ([len(msg.encoded)] if isinstance(msg, StylePut) and msg.encoded else [])
        if sizes and max(sizes) > lim.max_message_bytes:
            raise ClientError(ErrorCode.TOO_LARGE, f"a {max(sizes)}-byte frame exceeds the backend's limit of "
                              f"{lim.max_message_bytes} bytes: send float16 or uint8 data, or smaller images")  # fmt: skip

    def _submit(self, msg: Request) -> Pending[Any]:
        pending: Pending[Any] = Pending(msg.id, lambda rid: self._call_soon(lambda: self._io.cancel(rid)), self._watch)
        styles: tuple[str, ...] = ()
        if isinstance(msg, Stylize):
            styles = tuple(dict.fromkeys(s.id for r in msg.regions for s in r.styles))
        call = Call(msg.id, msg, pending, styles)
        style = style_id(msg) if isinstance(msg, StylePut) else None

        def enqueue() -> None:
            if style is not None and isinstance(msg, StylePut):
                self._io.keep_style(style, msg)
            self._io.add(call)

        with self._submit_lock:  # after close() began, nothing is queued that the I/O thread would not see
            if self._closing:
                raise ClientError(CLOSED, "this client is closed; create a new one")
            if self._failure is not None:
                raise ClientError(self._failure.code, self._failure.message)
            if self._thread is None:
                self._thread = threading.Thread(target=self._io_loop, name="adain-client-io", daemon=True)
                self._thread.start()
            self._call_soon(enqueue)
        return pending

    def _call_soon(self, fn: Callable[[], None]) -> None:
        self._commands.append(fn)
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock, contextlib.suppress(zmq.ZMQError):
            self._wake_tx.send(b"", zmq.NOBLOCK)

    # ------------------------------------------------------------------------------ I/O thread
    def _io_loop(self) -> None:
        io = self._io
        io.new_socket()
        try:
            while not self._closing:
                poller = zmq.Poller()
                poller.register(self._wake_rx, zmq.POLLIN)
                io.register(poller)
                events = dict(poller.poll(50 if io.busy else 1000))
                if self._wake_rx in events:
                    with contextlib.suppress(zmq.Again):
                        while True:
                            self._wake_rx.recv(zmq.NOBLOCK)
                while self._commands:
                    self._commands.popleft()()
                io.on_events(events)
                io.tick(time.monotonic())
        except BaseException as e:  # (BaseException: an exception raised into this thread from outside too)
            log.exception("the client's I/O thread failed")
            failure = ClientError(BROKEN, f"the client's I/O thread failed ({type(e).__name__}: {e}); create a new client")
            with self._submit_lock:  # from here on _submit raises it instead of queueing for a dead thread
                self._failure = failure
            io.fail_all(failure)
        finally:
            while self._commands:  # requests submitted while closing: fail them too
                self._commands.popleft()()
            io.fail_all(self._failure or ClientError(CLOSED, "the client was closed before the backend answered"))
            io.close_socket()


def _wire(arr: np.ndarray) -> np.ndarray:
    """Little-endian C-contiguous (one copy here at most, none per send)."""
    a = np.asarray(arr)
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
