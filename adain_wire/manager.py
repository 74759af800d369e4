"""The backend as seen from the add-on (no bpy): start a local one as a subprocess, connect, stop.

``BackendManager`` is one per Blender session, shared by the render hook and the operators:

    backend = BackendManager(BackendSettings(endpoint=DEFAULT_ENDPOINT, command=("python", "-m", "backend")))
    client = backend.client()     # starts the local process if asked to, waits for its hello, or raises BackendUnavailableError
    backend.release()             # frees the GPU memory the backend keeps cached
    backend.stop()                # shutdown over the socket, then terminate/kill if it does not go

Never touches bpy, so it is tested without Blender.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .client import Client
from .errors import ClientError
from .keys import ClientCurve
from .options import DEFAULT_ENDPOINT


class BackendUnavailableError(Exception):
    """The backend could not be reached or started; the message says what to do."""


@dataclass(frozen=True)
class BackendSettings:
    """``command`` None: connect to a backend someone else runs at ``endpoint``.

    ``command``: the program and arguments that start one (``--bind ENDPOINT`` is appended), e.g.
    ``("/path/to/venv/bin/python", "-m", "backend", "--device", "cuda")``.

    ``watch_owner``: also append ``--owner-pid <this process>``, so that the backend shuts down once the process that
    started it (Blender) is gone, even when it was killed or crashed.
    """

    endpoint: str = DEFAULT_ENDPOINT
    command: tuple[str, ...] | None = None
    curve: ClientCurve | None = None
    connect_timeout: float = 5.0
    start_timeout: float = 120.0  # first start loads torch and the weights
    give_up: float = 60.0
    log_file: Path | None = None
    watch_owner: bool = True

    @staticmethod
    def split_command(text: str) -> tuple[str, ...] | None:
        parts = tuple(shlex.split(text))
        return parts or None


class BackendManager:
    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Client | None = None
        self._lock = threading.RLock()
        self._log_handle: IO[bytes] | None = None
        self._log_start = 0

    # ------------------------------------------------------------------------------ lifecycle
    def client(self) -> Client:
        """A connected client; starts the local backend first when configured to. Raises BackendUnavailableError.

        A client that died (its I/O thread failed, or it was closed) or whose local backend exited is replaced
        here, so the next frame of an animation gets a working connection by itself."""
        with self._lock:
            if self._client is not None and self._client.healthy and (self.process is None or self.process.poll() is None):
                return self._client
            self._drop_client()
            s = self.settings
            if s.command is not None and not self.running_locally():
                if _port_open(s.endpoint):  # a backend already answers there (started earlier, or by someone else)
                    try:
                        return self._connect(s.connect_timeout)
                    except BackendUnavailableError:
                        pass
                self._start()
                return self._wait_ready()
            return self._connect(s.connect_timeout)

    def lost(self, client: Client) -> str | None:
        """Why ``client`` (one this manager handed out) can no longer get replies, or None: it died, or the
        local backend it talks to exited. Cheap: polled while a frame waits."""
        if not client.healthy:
            return "the client's connection failed"
        proc = self.process
        if proc is not None and client is self._client and proc.poll() is not None:
            return f"the local backend exited (code {proc.returncode})"
        return None

    def running_locally(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the backend down (a local one: wait for it, then terminate or kill). Idempotent."""
        with self._lock:
            if self._client is not None:
                try:
                    self._client.shutdown()
                except ClientError:
                    pass
            self._drop_client()
            proc, self.process = self.process, None
            if proc is not None and proc.poll() is None:
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)
            self._close_log()

    def release(self) -> int:
        """Ask the backend to free cached device memory; returns the bytes it still has reserved."""
        with self._lock:
            if self._client is None:
                return 0
            try:
                return self._client.release().device_reserved
            except ClientError as e:
                raise BackendUnavailableError(f"release failed: {e.message}") from e

    def close(self) -> None:
        """Disconnect, leaving a backend we did not start running (a local one is stopped)."""
        if self.process is not None:
            self.stop()
        with self._lock:
            self._drop_client()

    def describe(self) -> str:
        c = self._client
        if c is None or c.server is None:
            return "not connected"
        srv = c.server
        return f"{srv.server} on {srv.device} ({srv.precision}), decoder {srv.model.decoder}"

    # ------------------------------------------------------------------------------ internals
    def _connect(self, timeout: float) -> Client:
        s = self.settings
        client = Client(s.endpoint, timeout=timeout, give_up=s.give_up, curve=s.curve, name="adain-blender")
        try:
            client.connect()
        except ClientError as e:
            client.close()
            raise BackendUnavailableError(f"no AdaIN backend at {s.endpoint}: {e.message}") from e
        self._client = client
        return client

    def _start(self) -> None:
        s = self.settings
        assert s.command is not None
        argv = [*s.command, "--bind", s.endpoint]
        if s.watch_owner:  # the backend exits when we are gone (killed, crashed): no orphan holds the port or the GPU
            argv += ["--owner-pid", str(os.getpid())]
        log_path = s.log_file
        self._close_log()
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(log_path, "ab")
            self._log_handle = handle
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_handle if self._log_handle is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            self._close_log()
            raise BackendUnavailableError(
                f"cannot start the backend with {shlex.join(argv)}: {e.strerror or e}; press Install Backend in the "
                "add-on preferences, or set the command under Advanced (a Python that has the adain backend installed, "
                "e.g. /path/venv/bin/python -m backend)"
            ) from e

    def _wait_ready(self) -> Client:
        s = self.settings
        deadline = time.monotonic() + s.start_timeout
        last = ""
        while time.monotonic() < deadline:
            proc = self.process
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                self.process = None
                raise BackendUnavailableError(f"the local backend exited at start (code {code}){self._log_tail()}")
            if not self._log_says_listening():  # loading torch and the weights: nothing to connect to yet
                time.sleep(0.2)
                continue
            try:
                if self._log_handle is None:  # no log says when it listens: try for 1 s at a time, then reconnect with
                    self._connect(1.0)  # the settings' timeout (a client's timeout is also its silence limit: kept
                    self._drop_client()  # at 1 s, every slower frame would be sent again)
                return self._connect(s.connect_timeout)
            except BackendUnavailableError as e:
                last = str(e)
            time.sleep(0.2)
        self.stop(timeout=2)
        raise BackendUnavailableError(f"the local backend did not answer within {s.start_timeout:g} s ({last}){self._log_tail()}")

    def _log_says_listening(self) -> bool:
        """True once the backend's log says it listens (always True without a log file: then we just try)."""
        p = self.settings.log_file
        if p is None or self._log_handle is None:
            return True
        try:
            with open(p, "rb") as f:
                f.seek(self._log_start)
                return b"listening on" in f.read()
        except OSError:
            return True

    def _log_tail(self, lines: int = 5) -> str:
        p = self.settings.log_file
        if p is None or not p.is_file():
            return ""
        tail = p.read_text(errors="replace").strip().splitlines()[-lines:]
        return (": " + " | ".join(tail)) if tail else ""

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _close_log(self) -> None:
        h = self._log_handle
        self._log_handle = None
        if h is not None:
            h.close()


def _port_open(endpoint: str) -> bool:
    """Whether something accepts TCP connections at a tcp:// endpoint (True for other transports: just try)."""
    transport, _, rest = endpoint.partition("://")
    if transport != "tcp":
        return True
    host, _, port = rest.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


def default_command(python: str | os.PathLike[str], extra: Sequence[str] = ()) -> tuple[str, ...]:
    return (os.fspath(python), "-m", "backend", *extra)
