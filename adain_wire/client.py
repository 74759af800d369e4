"""The client of the stylization backend (no bpy, no torch): numpy + pyzmq + msgpack + ``adain_wire.protocol``.

    with Client("tcp://127.0.0.1:5555") as client:         # connects and checks the protocol version
        sid = client.put_style(open("style.jpg", "rb").read())
        out = client.stylize(frame_rgba_float32, sid, alpha=0.8)      # blocking
        pending = client.submit(frame, RegionSpec.mix({sid: 1, other: 3}, alpha=0.5))  # non-blocking
        ...; result = pending.result()      # result arrays are read-only views of the received frames

One I/O thread owns the DEALER socket; every public method may be called from any thread. Requests
are pipelined (up to ``window`` model requests on the wire) and tracked by id until their reply comes,
so a backend restart loses nothing:

- while requests are outstanding the I/O thread sends a ``hello`` heartbeat every ``heartbeat`` s
  (the backend answers it at once, even while it computes);
- a hello reply with a new ``instance`` means the backend restarted: every request sent before that
  hello is sent again (after putting its styles again);
- no message for ``timeout`` s: the socket is recreated and everything outstanding is sent again;
  no message for ``give_up`` s: outstanding requests fail with a ClientError saying so;
- the I/O thread dying (a bug, or the add-on's own modules removed under it) fails every outstanding call
  at once with ClientError(BROKEN, cause), and every later call raises it: ``healthy`` turns False and the
  owner replaces the client (``BackendManager.client()`` does);
- ``unknown_style`` (the backend restarted or evicted a style) is answered by putting the style again
  and resending; ``busy`` by resending after a short back-off; ``shutting_down`` by waiting for the
  next backend (within ``give_up``).

Every send of a request uses a fresh wire id (``ID~attempt``) so resent copies never collide on the
backend; the first successful reply completes the request and later ones are dropped.
Completion callbacks run on the I/O thread: keep them short and never touch ``bpy`` from them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from .errors import AUTH, BROKEN, CLOSED, TIMEOUT, VERSION, ClientError
from .keys import ClientCurve
from .options import DEFAULT_ENDPOINT
from .pending import Pending
from .protocol import (
    PROTOCOL_VERSION,
    Cancel,
    ErrorCode,
    ErrorReply,
    Hello,
    HelloReply,
    Passes,
    ProtocolError,
    RegionSpec,
    Release,
    ReleaseReply,
    Reply,
    Request,
    Shutdown,
    ShutdownReply,
    StylePut,
    StylePutReply,
    StyleRef,
    Stylize,
    StylizeReply,
    decode_reply,
    decode_request,
    encode_request,
    style_id,
)

__all__ = [
    "AUTH", "BROKEN", "CLOSED", "DEFAULT_ENDPOINT", "TIMEOUT", "VERSION", "Client", "ClientCurve", "ClientError", "Pending",
]  # fmt: skip

log = logging.getLogger("adain_wire.client")
MAX_STYLE_RETRIES = 3


class CallState(Enum):
    """Where a request is, as the I/O thread sees it."""

    WAITING = "waiting"  # to be sent when the window allows, and not before its retry_at (a busy back-off)
    ON_WIRE = "on_wire"  # sent (sent_seq orders it among the sends), its reply not yet in
    PARKED = "parked"  # refused with shutting_down: sent again once a backend answers a heartbeat


@dataclass(eq=False)
class _Call:
    """One request, as the I/O thread tracks it across resends."""

    base_id: str
    msg: Request
    pending: Pending[Any] | None  # None: internal (heartbeat, style re-put, cancel)
    styles: tuple[str, ...] = ()
    attempt: int = -1
    wire_ids: list[str] = field(default_factory=list)
    state: CallState = CallState.WAITING
    sent_seq: int = -1  # the order of its last send (-1: never sent, or its last send failed)
    retry_at: float = 0.0  # while WAITING: not sent before this (monotonic seconds)
    cancelled: bool = False
    style_retries: int = 0
    busy_retries: int = 0

    @property
    def model_work(self) -> bool:
        return isinstance(self.msg, (StylePut, Stylize))

    @property
    def wire_id(self) -> str:
        return self.wire_ids[-1] if self.wire_ids else ""

    @property
    def on_wire(self) -> bool:
        return self.state is CallState.ON_WIRE

    def sent_before(self, other: _Call) -> bool:
        """Both are on the wire and this one was sent first."""
        return self.on_wire and other.on_wire and self.sent_seq < other.sent_seq


class Client:
    """A connection to the backend; see the module docstring for the recovery rules."""

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
        self.server: HelloReply | None = None
        self._context = context or zmq.Context()
        self._own_context = context is None
        self._prefix = uuid.uuid4().hex[:8]
        self._counter = itertools.count(1)
        self._seq = itertools.count(1)
        self._commands: deque[Callable[[], None]] = deque()
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
        # --- owned by the I/O thread
        self._socket: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._calls: dict[str, _Call] = {}  # base id -> call, in submission order
        self._by_wire: dict[str, _Call] = {}
        self._styles: dict[str, StylePut] = {}  # every style put through this client, to put again
        self._server_styles: set[str] = set()  # styles the current backend instance is known to hold
        self._put_seq: dict[str, int] = {}  # send sequence number of each style's latest re-put
        self._instance: str | None = None
        self._last_rx = self._busy_since = self._last_reconnect = time.monotonic()
        self._last_heartbeat = 0.0
        self._heartbeat_id: str | None = None
        self._shutdown_sent = False
        self.busy_replies = 0  # ``busy`` answers received (each was sent again after a back-off): for soak figures

    # ------------------------------------------------------------------------------ connecting
    def connect(self) -> HelloReply:
        """Start the I/O thread and shake hands; raises ClientError (TIMEOUT, VERSION, AUTH) with what to do."""
        pending: Pending[HelloReply] = self._submit(Hello(self._new_id(), self.name))
        try:
            reply = pending.result(self.timeout)
        except ClientError as e:
            if e.code == TIMEOUT:
                self._call_soon(lambda: self._drop(pending.id))
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

        def forget() -> None:
            self._styles.pop(style, None)

        self._call_soon(forget)

    # ------------------------------------------------------------------------ caller side
    def _new_id(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"

    def _check_size(self, msg: StylePut | Stylize) -> None:
        """Refuse here what the backend would refuse (or drop the connection for), with the reason."""
        if self.server is None:
            return
        lim = self.server.limits
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
        pending: Pending[Any] = Pending(msg.id, lambda rid: self._call_soon(lambda: self._cancel(rid)), self._watch)
        styles: tuple[str, ...] = ()
        if isinstance(msg, Stylize):
            styles = tuple(dict.fromkeys(s.id for r in msg.regions for s in r.styles))
        call = _Call(msg.id, msg, pending, styles)
        style = style_id(msg) if isinstance(msg, StylePut) else None

        def enqueue() -> None:
            if style is not None and isinstance(msg, StylePut):
                self._styles[style] = msg
            self._add(call)

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
        self._new_socket()
        try:
            while not self._closing:
                poller = zmq.Poller()
                poller.register(self._wake_rx, zmq.POLLIN)
                assert self._socket is not None
                poller.register(self._socket, zmq.POLLIN)
                if self._monitor is not None:
                    poller.register(self._monitor, zmq.POLLIN)
                events = dict(poller.poll(50 if self._calls else 1000))
                if self._wake_rx in events:
                    with contextlib.suppress(zmq.Again):
                        while True:
                            self._wake_rx.recv(zmq.NOBLOCK)
                while self._commands:
                    self._commands.popleft()()
                if self._monitor is not None and self._monitor in events:
                    self._on_monitor()
                if self._socket in events:
                    self._receive()
                self._tick(time.monotonic())
        except BaseException as e:  # (BaseException: an exception raised into this thread from outside too)
            log.exception("the client's I/O thread failed")
            failure = ClientError(BROKEN, f"the client's I/O thread failed ({type(e).__name__}: {e}); create a new client")
            with self._submit_lock:  # from here on _submit raises it instead of queueing for a dead thread
                self._failure = failure
            self._fail_all(failure)
        finally:
            while self._commands:  # requests submitted while closing: fail them too
                self._commands.popleft()()
            self._fail_all(self._failure or ClientError(CLOSED, "the client was closed before the backend answered"))
            self._close_socket()

    def _new_socket(self) -> None:
        self._close_socket()
        s = self._context.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            s.curve_serverkey = self.curve.server_public
            s.curve_publickey = self.curve.public
            s.curve_secretkey = self.curve.secret
            self._monitor = s.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            )
        s.connect(self.endpoint)
        self._socket = s
        self._heartbeat_id = None

    def _close_socket(self) -> None:
        if self._socket is not None:
            if self._monitor is not None:
                with contextlib.suppress(zmq.ZMQError):
                    self._socket.disable_monitor()
                self._monitor.close(0)
                self._monitor = None
            self._socket.close(0)
            self._socket = None

    def _on_monitor(self) -> None:
        assert self._monitor is not None
        with contextlib.suppress(zmq.Again):
            while True:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
                if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    why = (f"the backend at {self.endpoint} refused this client's CURVE key: copy its public key (.key) "
                           "into the backend's --curve-clients folder and restart the backend")  # fmt: skip
                else:
                    why = (f"the encrypted handshake with {self.endpoint} failed: check the backend's public key and that "
                           "it runs with --curve-secret")  # fmt: skip
                log.warning(why)
                self._fail_all(ClientError(AUTH, why))

    def _add(self, call: _Call) -> None:
        if not self._calls:
            self._busy_since = time.monotonic()
        self._calls[call.base_id] = call
        if not self._closing and self._failure is None:  # (when the thread is ending, it is failed instead)
            self._fill_window(time.monotonic())

    def _send(self, call: _Call) -> None:
        call.attempt += 1
        wire_id = call.base_id if call.attempt == 0 else f"{call.base_id}~{call.attempt}"
        call.wire_ids.append(wire_id)
        self._by_wire[wire_id] = call
        call.sent_seq, call.state = next(self._seq), CallState.ON_WIRE
        assert self._socket is not None
        try:
            self._socket.send_multipart(encode_request(dataclasses.replace(call.msg, id=wire_id)), zmq.NOBLOCK, copy=False)
        except zmq.Again:  # the send queue is full: try again on the next tick
            call.state, call.sent_seq, call.retry_at = CallState.WAITING, -1, time.monotonic() + 0.05

    def _fill_window(self, now: float) -> None:
        on_wire = sum(1 for c in self._calls.values() if c.model_work and c.on_wire)
        limit = self.window
        if self.server is not None:  # within what the backend takes from one connection: no busy replies provoked
            lim = self.server.limits
            limit = min(limit, lim.max_queue, lim.max_inflight or limit)
        for call in list(self._calls.values()):
            if call.state is not CallState.WAITING or call.retry_at > now:
                continue
            if call.cancelled:
                self._finish(call, None, ClientError(ErrorCode.CANCELLED, "cancelled at your request"))
                continue
            if call.model_work:
                if on_wire >= limit:
                    continue
                on_wire += 1
            self._send(call)

    def _receive(self) -> None:
        assert self._socket is not None
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._last_rx = time.monotonic()
            try:
                reply = decode_reply([f.buffer for f in frames])
            except ProtocolError as e:
                call = self._by_wire.get(e.request_id or "")
                if call is not None and call.pending is not None:
                    self._finish(call, None, ClientError(e.code, e.message))
                log.warning("undecodable reply from the backend: %s", e.message)
                continue
            self._on_reply(reply)

    def _on_reply(self, reply: Reply) -> None:
        call = self._by_wire.get(reply.id or "")
        if call is None or call.base_id not in self._calls:
            log.debug("dropped a reply to %s (duplicate or stale)", reply.id)
            return
        if isinstance(reply, ErrorReply):
            if reply.id == call.wire_id:  # errors of superseded attempts are moot
                self._on_error(call, reply)
            return
        if isinstance(reply, HelloReply):
            self._on_hello(reply, call)
        elif isinstance(reply, StylePutReply):
            self._server_styles.add(reply.style)
        elif isinstance(reply, ShutdownReply):
            self._shutdown_sent = True  # what the backend still refuses "shutting_down" is not waited for
        self._finish(call, reply, None)

    def _on_hello(self, reply: HelloReply, call: _Call) -> None:
        if self._instance is not None and reply.instance != self._instance:
            log.warning("the backend at %s restarted: sending %d request(s) again", self.endpoint,
                        sum(1 for c in self._calls.values() if c.sent_before(call)))  # fmt: skip
            self._server_styles.clear()
            for c in list(self._calls.values()):
                if c.sent_before(call):
                    self._resend(c)
        if reply.instance != self._instance:
            self._shutdown_sent = False
        self._instance = reply.instance
        self.server = reply
        for c in self._calls.values():
            if c.state is CallState.PARKED:
                c.state, c.retry_at = CallState.WAITING, 0.0

    def _on_error(self, call: _Call, reply: ErrorReply) -> None:
        code, now = reply.code, time.monotonic()
        if code == ErrorCode.UNKNOWN_STYLE and reply.style in self._styles and call.style_retries < MAX_STYLE_RETRIES:
            call.style_retries += 1
            log.info("the backend does not know style %s: putting it again for %s", reply.style[:12], call.base_id)
            if call.on_wire and call.sent_seq > self._put_seq.get(reply.style, -1):  # else a re-put is already on its way
                self._server_styles.discard(reply.style)
            self._resend(call)
            return
        if code == ErrorCode.BUSY and not call.cancelled:
            self.busy_replies += 1
            call.busy_retries += 1
            call.state, call.retry_at = CallState.WAITING, now + min(2.0, 0.05 * 2**call.busy_retries)
            return
        if call.pending is None:  # internal: a failed heartbeat, re-put or cancel just ends
            self._finish(call, None, ClientError(code, reply.message))
            return
        if code == ErrorCode.SHUTTING_DOWN and not self._shutdown_sent and not call.cancelled:
            call.state = CallState.PARKED  # sent again once a backend answers a heartbeat
            return
        self._finish(call, None, ClientError(code, reply.message))

    def _resend(self, call: _Call) -> None:
        """Send again, after putting the styles it needs that the backend may not hold."""
        if call.cancelled:
            self._finish(call, None, ClientError(ErrorCode.CANCELLED, "cancelled at your request"))
            return
        for sid in call.styles:
            if sid not in self._server_styles and sid in self._styles:
                put = self._styles[sid]
                self._server_styles.add(sid)  # optimistic: the put goes first on the same pipe
                reput = _Call(self._new_id(), dataclasses.replace(put, id="reput"), None)
                self._calls[reput.base_id] = reput
                self._send(reput)
                self._put_seq[sid] = reput.sent_seq
        self._send(call)

    def _finish(self, call: _Call, value: Any, error: ClientError | None) -> None:
        self._calls.pop(call.base_id, None)
        if call.base_id == self._heartbeat_id:
            self._heartbeat_id = None
        for wid in call.wire_ids:
            self._by_wire.pop(wid, None)
        if call.pending is not None:
            call.pending._finish(value, error)
        elif error is not None:
            log.info("internal %s %s failed: %s", call.msg.OP, call.base_id, error.message)

    def _cancel(self, base_id: str) -> None:
        call = self._calls.get(base_id)
        if call is None:
            return
        call.cancelled = True
        if not call.on_wire:  # not on the wire: drop it here
            self._finish(call, None, ClientError(ErrorCode.CANCELLED, "cancelled at your request"))
            return
        msg = Cancel(self._new_id(), call.wire_id)
        self._add(_Call(msg.id, msg, None))

    def _drop(self, base_id: str) -> None:
        call = self._calls.get(base_id)
        if call is not None:
            self._finish(call, None, ClientError(ErrorCode.CANCELLED, "given up by the client"))

    def _fail_all(self, error: ClientError) -> None:
        for call in list(self._calls.values()):
            self._finish(call, None, error)

    def _tick(self, now: float) -> None:
        if not self._calls:
            return
        silence = now - max(self._last_rx, self._busy_since)
        if silence > self.give_up:
            log.warning("backend at %s silent for %.0f s: failing %d request(s)", self.endpoint, silence, len(self._calls))
            self._fail_all(ClientError(TIMEOUT, f"backend at {self.endpoint} did not answer within {self.give_up:g} s: "
                                       "is it running? start it with `adain-backend`"))  # fmt: skip
            return
        if silence > self.timeout and now - self._last_reconnect > self.timeout:
            log.warning("backend at %s silent for %.1f s: reconnecting and sending again", self.endpoint, silence)
            self._last_reconnect = now
            self._new_socket()
            for call in list(self._calls.values()):
                if call.pending is None:
                    self._finish(call, None, None)  # heartbeats, re-puts and cancels died with the old socket
                elif call.on_wire:
                    call.state = CallState.WAITING  # sent again below, on the new socket
            self._heartbeat_id = None
        if self._heartbeat_id is None and now - self._last_heartbeat >= self.heartbeat:
            self._last_heartbeat = now
            hb = _Call(self._new_id(), Hello("hb", self.name), None)
            self._heartbeat_id = hb.base_id
            self._calls[hb.base_id] = hb
            self._send(hb)
        self._fill_window(now)


def _wire(arr: np.ndarray) -> np.ndarray:
    """Little-endian C-contiguous (one copy here at most, none per send)."""
    a = np.asarray(arr)
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
