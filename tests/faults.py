"""Real faults for the tests that prove recovery: an exception raised into a running thread, and whether a process
(not necessarily our child) is gone. Imports neither bpy nor torch: the unit tests and the Blender tests share it."""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path


class IOThreadKilledError(Exception):
    """Raised inside a client's I/O thread by a test."""


def kill_thread(thread: threading.Thread, join_s: float | None = None) -> None:
    """Raise ``IOThreadKilledError`` asynchronously in ``thread`` (it dies at its next bytecode, as from a bug in it).
    With ``join_s``, wait that long for it and assert that it died."""
    assert thread.ident is not None and thread.is_alive(), "the thread to kill is not running"
    hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(IOThreadKilledError))
    assert hit == 1, f"PyThreadState_SetAsyncExc reached {hit} threads, not 1"
    if join_s is not None:
        thread.join(join_s)
        assert not thread.is_alive(), f"the thread still runs {join_s} s after the exception"


def process_gone(pid: int) -> bool:
    """Whether ``pid`` (not necessarily our child) no longer runs: no such process, or a zombie nobody reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"
