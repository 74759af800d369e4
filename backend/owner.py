"""``--owner-pid``: the backend watches the process that started it and shuts down once that process is gone.

A backend that Blender started must not outlive it: a Blender that was killed or crashed would leave it holding its
port and, on a GPU, its memory. ``identify`` remembers the owner at startup; ``watch`` polls it from a daemon thread
and calls back once when it is gone.

How "gone" is told, per platform:

- Linux: ``os.kill(pid, 0)`` fails with ProcessLookupError, or ``/proc/PID/stat`` shows another start time (the pid
  was reused by a new process) or the state Z/X (a zombie: dead, not yet reaped by its parent), or the owner was our
  parent and we have been handed to another one.
- macOS and other POSIX systems: ``os.kill(pid, 0)``, and the parent change.
- Windows: a handle opened at startup (it also keeps the pid from being reused) that becomes signalled.

Not Linux's PR_SET_PDEATHSIG: it fires when the *thread* that started us ends, and Blender may start the backend
from a worker thread.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backend.errors import ConfigError

log = logging.getLogger("backend")

POLL_S = 0.5  # how often the owner is looked at
EXIT_AFTER_S = 3.0  # after a clean stop was asked for, how long before the process leaves regardless


@dataclass(frozen=True)
class Owner:
    """The process to outlive no longer than ``POLL_S`` plus a clean shutdown."""

    pid: int
    start_time: str | None = None  # Linux: field 22 of /proc/PID/stat, to tell a reused pid from the owner
    parent: bool = False  # the owner is our parent process (POSIX: we are re-parented once it dies)
    handle: int | None = None  # Windows: a process handle opened at startup


def identify(pid: int) -> Owner:
    """The running process ``pid`` as an Owner; raises ConfigError if there is no such process."""
    if pid <= 0:
        raise ConfigError(f"--owner-pid {pid}: must be a process id (a positive number)")
    if pid == os.getpid():
        raise ConfigError(f"--owner-pid {pid} is the backend itself; give the pid of the program that starts it")
    if sys.platform == "win32":
        return Owner(pid, handle=_windows_open(pid))
    if not _posix_exists(pid):
        raise ConfigError(f"--owner-pid {pid}: no such process")
    stat = _linux_stat(pid)  # None: no /proc, or not for this process (hidepid): then os.kill is all there is
    if stat is not None and stat[0] in "ZX":
        raise ConfigError(f"--owner-pid {pid}: that process has already exited")
    return Owner(pid, start_time=stat[1] if stat is not None else None, parent=os.getppid() == pid)


def alive(owner: Owner) -> bool:
    """Whether the owner still runs."""
    if sys.platform == "win32":
        assert owner.handle is not None
        return _windows_running(owner.handle)
    if owner.parent and os.getppid() != owner.pid:  # our parent died: the system handed us to another process
        return False
    if not _posix_exists(owner.pid):
        return False
    if owner.start_time is None:  # no /proc to read (macOS, BSD; or hidden): os.kill is all there is
        return True
    stat = _linux_stat(owner.pid)
    if stat is None:  # it went between the two looks (or /proc failed once): the next look tells
        return True
    state, start_time = stat
    return state not in "ZX" and start_time == owner.start_time


def watch(
    owner: Owner, on_gone: Callable[[], None], poll_s: float = POLL_S, exit_after_s: float = EXIT_AFTER_S
) -> threading.Thread:
    """Poll ``owner`` every ``poll_s`` from a daemon thread; once it is gone, log it and call ``on_gone`` (which asks
    for a clean shutdown). If the process is still there ``exit_after_s`` later (a long request running, the model
    still loading), it exits at once: nobody is left to wait for."""

    def run() -> None:
        while alive(owner):
            time.sleep(poll_s)
        log.info("the owner process %d is gone: shutting down", owner.pid)
        on_gone()
        time.sleep(exit_after_s)
        log.warning("still running %g s after the owner process %d went; exiting now", exit_after_s, owner.pid)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    thread = threading.Thread(target=run, name="backend-owner-watch", daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------------------------- POSIX
def _posix_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def _linux_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) from /proc/PID/stat; None where it cannot be read (no /proc, no such process, hidden)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "PID (COMM) ", COMM may hold spaces and parentheses
    if len(fields) < 20:
        return None
    return fields[0], fields[19]  # field 3 (state) and field 22 (starttime, clock ticks after boot)


# ------------------------------------------------------------------------------------------- Windows
if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    _SYNCHRONIZE = 0x00100000
    _PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
    _WAIT_TIMEOUT = 0x102
    _ERROR_ACCESS_DENIED = 5
    _kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    _kernel32.OpenProcess.restype = wintypes.HANDLE
    _kernel32.WaitForSingleObject.argtypes = (wintypes.HANDLE, wintypes.DWORD)
    _kernel32.WaitForSingleObject.restype = wintypes.DWORD

    def _windows_open(pid: int) -> int:
        handle = _kernel32.OpenProcess(_SYNCHRONIZE | _PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not handle:
            err = ctypes.get_last_error()
            if err == _ERROR_ACCESS_DENIED:
                raise ConfigError(f"--owner-pid {pid}: not allowed to watch that process (Windows error {err})")
            raise ConfigError(f"--owner-pid {pid}: no such process (Windows error {err})")
        if not _windows_running(handle):
            raise ConfigError(f"--owner-pid {pid}: that process has already exited")
        return int(handle)

    def _windows_running(handle: int) -> bool:
        return bool(_kernel32.WaitForSingleObject(handle, 0) == _WAIT_TIMEOUT)  # WAIT_OBJECT_0: it has exited
