"""Work on a background thread that Blender's UI polls and can cancel (no bpy).

Blender's main thread must stay free while the backend stylizes (the UI redraws, Esc is read): a modal operator
starts a ``BackgroundTask`` and polls ``done()`` on its timer. The work receives a ``cancelled`` callable to pass on
(``stylize_frame(..., cancelled=...)`` cancels the backend request when it turns true); ``progress`` is a line
the work may update for the status bar. Nothing here touches bpy: results go back to the main thread, which
writes them into Blender.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BackgroundTask(Generic[T]):
    """``work(task)`` on a daemon thread: it reads ``task.cancelled`` and may set ``task.progress``.

    ``result()`` gives what ``work`` returned or raises what it raised (a ``FrameCancelledError`` after ``cancel()``,
    when the work honours it).
    """

    def __init__(self, work: Callable[[BackgroundTask[T]], T], name: str = "adain-task") -> None:
        self._work = work
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        self.progress = ""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> BackgroundTask[T]:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._value = self._work(self)
        except BaseException as e:  # handed to the main thread by result()
            self._error = e
        finally:
            self._done.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self) -> T:
        if not self._done.is_set():
            raise RuntimeError("the task is still running: poll done() first")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
