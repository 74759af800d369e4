"""The client's I/O-thread side: ``Dispatcher`` owns the DEALER socket and every call until its reply.

Only the client's I/O thread touches a Dispatcher (``Client`` runs its loop and hands it work through commands).
It sends calls within a window, matches replies to them by wire id, and applies the recovery rules:

- while requests are outstanding it sends a ``hello`` heartbeat every ``heartbeat`` s (the backend answers it at
  once, even while it computes);
- a hello reply with a new ``instance`` means the backend restarted: every request sent before that hello is sent
  again (after putting its styles again);
- no message for ``timeout`` s: the socket is recreated and everything outstanding is sent again; no message for
  ``give_up`` s: outstanding requests fail with a ClientError saying so;
- ``unknown_style`` (the backend restarted or evicted a style) is answered by putting the style again and resending;
  ``busy`` by resending after a short back-off; ``shutting_down`` by waiting for the next backend (within ``give_up``).

Every send of a request uses a fresh wire id (``ID~attempt``, see ``Call``) so resent copies never collide on the
backend; the first successful reply completes the request and later ones are dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from .calls import MAX_STYLE_RETRIES, Call, CallState
from .errors import AUTH, TIMEOUT, ClientError
from .keys import ClientCurve
from .protocol import (
    Cancel,
    ErrorCode,
    ErrorReply,
    Hello,
    HelloReply,
    ProtocolError,
    Reply,
    ShutdownReply,
    StylePut,
    StylePutReply,
    decode_reply,
    encode_request,
)

log = logging.getLogger("adain_wire.client")  # (one logger for the client, whichever module of it speaks)


class Dispatcher:
    """The socket, the calls in flight and the styles to put again, as the client's I/O thread keeps them."""

    def __init__(
        self,
        context: zmq.Context,
        endpoint: str,
        *,
        timeout: float,
        give_up: float,
        heartbeat: float,
        window: int,
        curve: ClientCurve | None,
        name: str,
        new_id: Callable[[], str],
        accepting: Callable[[], bool],
    ) -> None:
        """``new_id`` names internal requests (heartbeats, re-puts, cancels); ``accepting`` is False once the I/O
        thread is ending: calls added then are not sent (they are failed with the rest)."""
        self.endpoint = endpoint
        self.timeout, self.give_up, self.heartbeat, self.window = timeout, give_up, heartbeat, window
        self.curve, self.name = curve, name
        self.server: HelloReply | None = None  # the latest hello reply (the connect handshake's, then heartbeats')
        self.busy_replies = 0  # ``busy`` answers received (each was sent again after a back-off): for soak figures
        self.stale_replies = 0  # replies to requests already answered (a resent copy answered too) or unknown: dropped
        self._context = context
        self._new_id = new_id
        self._accepting = accepting
        self._seq = itertools.count(1)
        self._socket: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._calls: dict[str, Call] = {}  # base id -> call, in submission order
        self._by_wire: dict[str, Call] = {}
        self._styles: dict[str, StylePut] = {}  # every style put through this client, to put again
        self._server_styles: set[str] = set()  # styles the current backend instance is known to hold
        self._put_seq: dict[str, int] = {}  # send sequence number of each style's latest re-put
        self._instance: str | None = None
        self._last_rx = self._busy_since = self._last_reconnect = time.monotonic()
        self._last_heartbeat = 0.0
        self._heartbeat_id: str | None = None
        self._shutdown_sent = False

    @property
    def busy(self) -> bool:
        """Calls are outstanding (the I/O thread polls more often then)."""
        return bool(self._calls)

    # ------------------------------------------------------------------------------ the socket
    def new_socket(self) -> None:
        self.close_socket()
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

    def close_socket(self) -> None:
        if self._socket is not None:
            if self._monitor is not None:
                with contextlib.suppress(zmq.ZMQError):
                    self._socket.disable_monitor()
                self._monitor.close(0)
                self._monitor = None
            self._socket.close(0)
            self._socket = None

    def register(self, poller: zmq.Poller) -> None:
        """Poll the socket (and the CURVE handshake monitor) for input."""
        assert self._socket is not None
        poller.register(self._socket, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)

    def on_events(self, events: dict[Any, int]) -> None:
        """Handle what ``poller.poll()`` found on the sockets ``register`` added."""
        if self._monitor is not None and self._monitor in events:
            self._on_monitor()
        if self._socket in events:
            self._receive()

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
                self.fail_all(ClientError(AUTH, why))

    # ------------------------------------------------------------------------------ sending
    def keep_style(self, style: str, put: StylePut) -> None:
        """Remember a style's put, to put it again when a backend does not hold it."""
        self._styles[style] = put

    def forget_style(self, style: str) -> None:
        self._styles.pop(style, None)

    def add(self, call: Call) -> None:
        if not self._calls:
            self._busy_since = time.monotonic()
        self._calls[call.base_id] = call
        if self._accepting():  # (when the thread is ending, it is failed instead)
            self._fill_window(time.monotonic())

    def _send(self, call: Call) -> None:
        wire_id = call.next_wire_id()
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

    def _resend(self, call: Call) -> None:
        """Send again, after putting the styles it needs that the backend may not hold."""
        if call.cancelled:
            self._finish(call, None, ClientError(ErrorCode.CANCELLED, "cancelled at your request"))
            return
        for sid in call.styles:
            if sid not in self._server_styles and sid in self._styles:
                put = self._styles[sid]
                self._server_styles.add(sid)  # optimistic: the put goes first on the same pipe
                reput = Call(self._new_id(), dataclasses.replace(put, id="reput"), None)
                self._calls[reput.base_id] = reput
                self._send(reput)
                self._put_seq[sid] = reput.sent_seq
        self._send(call)

    # ------------------------------------------------------------------------------ replies
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
            self.stale_replies += 1
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

    def _on_hello(self, reply: HelloReply, call: Call) -> None:
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

    def _on_error(self, call: Call, reply: ErrorReply) -> None:
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

    # ------------------------------------------------------------------------------ ending calls
    def _finish(self, call: Call, value: Any, error: ClientError | None) -> None:
        self._calls.pop(call.base_id, None)
        if call.base_id == self._heartbeat_id:
            self._heartbeat_id = None
        for wid in call.wire_ids:
            self._by_wire.pop(wid, None)
        if call.pending is not None:
            call.pending._finish(value, error)
        elif error is not None:
            log.info("internal %s %s failed: %s", call.msg.OP, call.base_id, error.message)

    def cancel(self, base_id: str) -> None:
        """Drop the call if it is not on the wire yet, else ask the backend to drop it."""
        call = self._calls.get(base_id)
        if call is None:
            return
        call.cancelled = True
        if not call.on_wire:  # not on the wire: drop it here
            self._finish(call, None, ClientError(ErrorCode.CANCELLED, "cancelled at your request"))
            return
        msg = Cancel(self._new_id(), call.wire_id)
        self.add(Call(msg.id, msg, None))

    def drop(self, base_id: str) -> None:
        """Forget a call here (its reply, if one comes, is dropped as stale)."""
        call = self._calls.get(base_id)
        if call is not None:
            self._finish(call, None, ClientError(ErrorCode.CANCELLED, "given up by the client"))

    def fail_all(self, error: ClientError) -> None:
        for call in list(self._calls.values()):
            self._finish(call, None, error)

    # ------------------------------------------------------------------------------ timers
    def tick(self, now: float) -> None:
        """Give up, reconnect, send a heartbeat and fill the window, as the silence so far calls for."""
        if not self._calls:
            return
        silence = now - max(self._last_rx, self._busy_since)
        if silence > self.give_up:
            log.warning("backend at %s silent for %.0f s: failing %d request(s)", self.endpoint, silence, len(self._calls))
            self.fail_all(ClientError(TIMEOUT, f"backend at {self.endpoint} did not answer within {self.give_up:g} s: "
                                      "is it running? start it with `adain-backend`"))  # fmt: skip
            return
        if silence > self.timeout and now - self._last_reconnect > self.timeout:
            log.warning("backend at %s silent for %.1f s: reconnecting and sending again", self.endpoint, silence)
            self._last_reconnect = now
            self.new_socket()
            for call in list(self._calls.values()):
                if call.pending is None:
                    self._finish(call, None, None)  # heartbeats, re-puts and cancels died with the old socket
                elif call.on_wire:
                    call.state = CallState.WAITING  # sent again below, on the new socket
            self._heartbeat_id = None
        if self._heartbeat_id is None and now - self._last_heartbeat >= self.heartbeat:
            self._last_heartbeat = now
            hb = Call(self._new_id(), Hello("hb", self.name), None)
            self._heartbeat_id = hb.base_id
            self._calls[hb.base_id] = hb
            self._send(hb)
        self._fill_window(now)
