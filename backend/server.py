"""The ZeroMQ loop: a ROUTER socket, one worker thread for model work, cancellation and shutdown.

The loop thread owns the socket: it decodes every request, answers the cheap ops itself and queues model
work (style.put, stylize) for the worker thread, which takes it round-robin across connections (FIFO within
each, ``FairQueue``) and hands the replies back through a queue plus an inproc wake-up socket. Each connection
may have ``max_inflight`` model requests queued or running, all of them together ``max_queue``; past either
limit a request is answered ``busy``. A request the loop cannot serve gets an error reply
and the loop goes on serving everyone else; nothing a client sends can stop it except ``shutdown`` from
a loopback peer (or SIGINT/SIGTERM on the process).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass

import zmq

from adain_wire.protocol import PROTOCOL_VERSION, ErrorCode, ErrorReply, ProtocolError, Reply, decode_request, encode_reply
from backend.config import Config, is_loopback_address, is_loopback_endpoint
from backend.errors import BackendError, ConfigError
from backend.fair_queue import FairQueue
from backend.handlers import Handlers, Peer, Work
from backend.security import CurveGuard
from backend.service import ModelService

log = logging.getLogger("backend.server")
POLL_MS = 200
RECV_BATCH = 64
SEND_LINGER_MS = 2000


@dataclass(eq=False)
class Job:
    routing_id: bytes
    request_id: str
    op: str
    work: Work
    state: str = "queued"  # queued -> running; "cancelled" once a cancel arrives while running


class Server:
    """Serve ``service`` on ``config.bind``. ``run()`` blocks; ``start()`` runs it on a thread for embedding."""

    def __init__(self, config: Config, service: ModelService, context: zmq.Context | None = None) -> None:
        self.config = config
        self.service = service
        self.context = context or zmq.Context()
        self._own_context = context is None
        self.instance = uuid.uuid4().hex
        self.handlers = Handlers(config, service, self, self.instance)
        self.endpoint: str | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._setup_done = threading.Event()
        self._worker_thread: threading.Thread | None = None
        self._startup_error: BaseException | None = None
        self._cond = threading.Condition()
        self._queue: FairQueue[Job] = FairQueue()
        self._inflight: dict[tuple[bytes, str], Job] = {}
        self._results: queue.SimpleQueue[tuple[Job, Reply]] = queue.SimpleQueue()
        self._wake_endpoint = f"inproc://backend-wake-{self.instance}"
        self._router: zmq.Socket | None = None
        self._thread: threading.Thread | None = None
        self._local_transport = is_loopback_endpoint(config.bind) and not config.bind.startswith("tcp://")

    # --------------------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 120.0) -> Server:
        """Run the server on a background thread; return once it serves (or raise why it cannot)."""
        self._thread = threading.Thread(target=self._run_catching, name="backend-loop", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"the backend did not start within {timeout:g} s")
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def _run_catching(self) -> None:
        try:
            self.run()
        except BaseException as e:  # reported by start()
            if self._ready.is_set():
                log.exception("the backend loop failed")
            self._startup_error = self._startup_error or e
        finally:
            self._ready.set()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to stop (thread- and signal-safe); with ``timeout``, wait for a start()ed loop to end."""
        self._stop.set()
        if timeout is not None and self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Bind, load the model (on the worker thread), serve until stopped, then shut down cleanly."""
        with contextlib.ExitStack() as stack:
            guard = stack.enter_context(CurveGuard(self.context, self.config.curve)) if self.config.curve else None
            router = self.context.socket(zmq.ROUTER)
            stack.callback(router.close, SEND_LINGER_MS)
            router.setsockopt(zmq.MAXMSGSIZE, self.config.frame_limit)
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            router.setsockopt(zmq.LINGER, SEND_LINGER_MS)
            if guard is not None:
                guard.secure(router)
            try:
                router.bind(self.config.bind)
            except zmq.ZMQError as e:
                raise ConfigError(f"cannot listen on {self.config.bind}: {e.strerror}; is another adain-backend running "
                                  "there? choose another address with --bind") from e  # fmt: skip
            self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
            self._router = router
            wake = self.context.socket(zmq.PAIR)
            stack.callback(wake.close, 0)
            wake.bind(self._wake_endpoint)
            worker = self._worker_thread = threading.Thread(target=self._worker, name="backend-worker", daemon=True)
            worker.start()
            stack.callback(self._stop_worker, worker)
            if self._wait_for_setup():
                d = self.service.describe()
                log.info("adain-backend listening on %s (protocol %d, %s, %s)", self.endpoint, PROTOCOL_VERSION, d.device,
                         d.precision)  # fmt: skip
                self._ready.set()
                self._loop(router, wake)
                self._drain(router, wake)
        if self._own_context and not (self._worker_thread and self._worker_thread.is_alive()):
            self.context.term()  # (a worker stuck past the grace period keeps its socket: leave the context to exit)
        log.info("adain-backend stopped")

    def _wait_for_setup(self) -> bool:
        """True once the model is loaded; False if asked to stop first; raises why it could not load."""
        while not self._setup_done.wait(0.1):
            if self._stop.is_set():
                log.info("stopped while loading the model")
                return False
        if self._startup_error is not None:
            raise self._startup_error
        return True

    def _stop_worker(self, worker: threading.Thread) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        worker.join(1.0)

    # ------------------------------------------------------------------------------- loop
    def _loop(self, router: zmq.Socket, wake: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        while not self._stop.is_set():
            events = dict(poller.poll(POLL_MS))
            if wake in events:
                _drain_socket(wake)
            self._send_results()
            if router in events:
                for _ in range(RECV_BATCH):
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        self._on_message(frames)
                    except Exception:  # a bug; never let one message stop the server
                        log.exception("unexpected failure while handling a message")
                    if self._stop.is_set():
                        break

    def _on_message(self, frames: list[zmq.Frame]) -> None:
        routing_id = frames[0].bytes
        body = frames[1:]
        try:
            req = decode_request([f.buffer for f in body])
        except ProtocolError as e:
            log.info("refused a message from %s: %s", routing_id.hex()[:10], e.message)
            self._send(routing_id, ErrorReply(e.request_id, e.op, e.code, e.message))
            return
        log.debug("%s %s from %s", req.OP, req.id, routing_id.hex()[:10])
        if self._stop.is_set():
            self._send(routing_id, ErrorReply(req.id, req.OP, ErrorCode.SHUTTING_DOWN, "the backend is shutting down"))
            return
        key = (routing_id, req.id)
        if key in self._inflight:
            message = f"request id {req.id!r} is still in flight on this connection; give every request a new id"
            self._send(routing_id, ErrorReply(req.id, req.OP, ErrorCode.BAD_REQUEST, message))
            return
        peer = Peer(routing_id, lambda: self._is_loopback(frames[-1]))
        try:
            outcome = self.handlers.handle(req, peer)
        except BackendError as e:
            self._send(routing_id, ErrorReply(req.id, req.OP, e.code, e.message, e.style))
            return
        except Exception:
            log.exception("handler for %s failed", req.OP)
            self._send(routing_id, ErrorReply(req.id, req.OP, ErrorCode.INTERNAL, f"{req.OP} failed inside the backend; "
                                            "its log has the details"))  # fmt: skip
            return
        if not isinstance(outcome, Work):
            self._send(routing_id, outcome)
            return
        with self._cond:
            mine = sum(1 for rid, _ in self._inflight if rid == routing_id)
            if mine >= self.config.max_inflight:
                message = (f"this connection has {mine} model requests queued or running (limits.max_inflight, "
                           "--max-inflight); wait for a reply before sending more")  # fmt: skip
                self._send(routing_id, ErrorReply(req.id, req.OP, ErrorCode.BUSY, message))
                return
            if len(self._queue) >= self.config.max_queue:
                message = (
                    f"the backend has {len(self._queue)} requests queued (--max-queue); wait for replies before sending more"
                )
                self._send(routing_id, ErrorReply(req.id, req.OP, ErrorCode.BUSY, message))
                return
            job = Job(routing_id, req.id, req.OP, outcome)
            self._inflight[key] = job
            self._queue.append(routing_id, job)
            self._cond.notify()

    def _is_loopback(self, frame: zmq.Frame) -> bool:
        if self._local_transport:
            return True
        try:
            return is_loopback_address(str(frame.get("Peer-Address")))
        except zmq.ZMQError:
            return False

    def _send(self, routing_id: bytes, reply: Reply) -> None:
        router = self._router
        assert router is not None
        try:
            router.send_multipart([routing_id, *encode_reply(reply)], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("client %s is not reading its replies; dropped the reply to %s", routing_id.hex()[:10], reply.id)
        except zmq.ZMQError as e:
            log.info("client %s is gone (%s); dropped the reply to %s", routing_id.hex()[:10], e.strerror, reply.id)

    def _send_results(self) -> None:
        while True:
            try:
                job, reply = self._results.get_nowait()
            except queue.Empty:
                return
            self._inflight.pop((job.routing_id, job.request_id), None)
            if job.state == "cancelled":
                reply = ErrorReply(job.request_id, job.op, ErrorCode.CANCELLED, "cancelled at the client's request")
            self._send(job.routing_id, reply)

    # ----------------------------------------------------------------------------- control
    def cancel(self, routing_id: bytes, target: str) -> str:
        """Cancel ``target`` of this peer: "queued" (dropped and answered now), "running" (answered cancelled
        when it finishes) or "unknown"."""
        job = self._inflight.get((routing_id, target))
        if job is None:
            return "unknown"
        with self._cond:
            if job.state == "queued":
                self._queue.remove(routing_id, job)
                del self._inflight[(routing_id, target)]
                state = "queued"
            else:
                job.state = "cancelled"
                state = "running"
        if state == "queued":
            self._send(routing_id, ErrorReply(target, job.op, ErrorCode.CANCELLED, "cancelled at the client's request"))
        return state

    def request_shutdown(self) -> None:
        log.info("shutdown requested by a client")
        self._stop.set()

    def _drain(self, router: zmq.Socket, wake: zmq.Socket) -> None:
        """After stop: answer queued requests "shutting_down", let the running one finish (up to the grace period)."""
        with self._cond:
            dropped = self._queue.clear()
            self._cond.notify_all()
        for job in dropped:
            self._inflight.pop((job.routing_id, job.request_id), None)
            reply = ErrorReply(job.request_id, job.op, ErrorCode.SHUTTING_DOWN, "the backend is shutting down")
            self._send(job.routing_id, reply)
        deadline = time.monotonic() + self.config.shutdown_grace_s
        while self._inflight and time.monotonic() < deadline:
            if wake.poll(POLL_MS):
                _drain_socket(wake)
            self._send_results()
            while router.poll(0):
                self._on_message(router.recv_multipart(copy=False))  # answered "shutting_down"
        if self._inflight:
            log.warning(
                "shutting down with %d request(s) unanswered after %g s", len(self._inflight), self.config.shutdown_grace_s
            )

    # ------------------------------------------------------------------------------ worker
    def _worker(self) -> None:
        try:
            self.service.setup()
        except BaseException as e:
            self._startup_error = e
            return
        finally:
            self._setup_done.set()
        notify = self.context.socket(zmq.PAIR)
        notify.connect(self._wake_endpoint)
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stop.is_set():
                        self._cond.wait()
                    if self._stop.is_set():
                        return
                    job = self._queue.popleft()
                    job.state = "running"
                self._results.put((job, self._run(job)))
                with contextlib.suppress(zmq.Again):
                    notify.send(b"", zmq.NOBLOCK)
        finally:
            notify.close(0)

    @staticmethod
    def _run(job: Job) -> Reply:
        try:
            return job.work.run(lambda: job.state == "cancelled")  # a cancel stops the networks within a layer
        except BackendError as e:
            return ErrorReply(job.request_id, job.op, e.code, e.message, e.style)
        except Exception:
            log.exception("%s %s failed", job.op, job.request_id)
            return ErrorReply(
                job.request_id, job.op, ErrorCode.INTERNAL, f"{job.op} failed inside the backend; its log has the details"
            )


def _drain_socket(socket: zmq.Socket) -> None:
    with contextlib.suppress(zmq.Again):
        while True:
            socket.recv(zmq.NOBLOCK)
