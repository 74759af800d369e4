"""``Pending``: a request in flight, the future that ``Client.submit`` returns (no sockets)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import TIMEOUT, ClientError

log = logging.getLogger("adain_wire.client")
T = TypeVar("T")


WATCH_S = 0.5  # how often a waiter checks that the client that owes it the reply is still alive


class Pending(Generic[T]):
    """A request in flight: ``result(timeout)`` waits for it; ``cancel()`` asks the backend to drop it.

    No wait is blind: a waiter checks ``watch`` every ``WATCH_S`` seconds, and when it names an error (the
    client's I/O thread is gone) the request fails with it at once instead of waiting for a reply that
    cannot come."""

    def __init__(
        self, request_id: str, cancel: Callable[[str], None], watch: Callable[[], ClientError | None] = lambda: None
    ) -> None:
        self.id = request_id
        self._cancel = cancel  # asks the client's I/O thread to cancel the request with this id
        self._watch = watch
        self._done = threading.Event()
        self._value: T | None = None
        self._error: ClientError | None = None
        self._callbacks: list[Callable[[Pending[T]], None]] = []
        self._lock = threading.Lock()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s (None: until done) for the reply or failure; True when the request is done.
        A request whose client died is done (failed) within ``WATCH_S``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WATCH_S if deadline is None else min(WATCH_S, deadline - time.monotonic())
            if self._done.wait(max(0.0, left)):
                return True
            error = self._watch()
            if error is not None:
                self._finish(None, error)
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def result(self, timeout: float | None = None) -> T:
        """The reply; raises ClientError when the request failed, or TIMEOUT if it is not done in ``timeout`` s
        (it stays in flight: call result() again or cancel())."""
        if not self.wait(timeout):
            raise ClientError(TIMEOUT, f"request {self.id} is not done after {timeout:g} s; it is still in flight")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def exception(self, timeout: float | None = None) -> ClientError | None:
        try:
            self.result(timeout)
        except ClientError as e:
            return e
        return None

    def cancel(self) -> None:
        """Ask the backend to drop this request; ``result()`` then raises ClientError("cancelled") unless the
        result had already been sent."""
        self._cancel(self.id)

    def add_done_callback(self, fn: Callable[[Pending[T]], None]) -> None:
        """Call ``fn(self)`` when done (on the I/O thread, or at once if already done)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    def _finish(self, value: T | None, error: ClientError | None) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._value, self._error = value, error
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:
                log.exception("a done callback of %s failed", self.id)
