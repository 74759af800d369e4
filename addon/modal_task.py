"""The modal half of an operator that runs a ``BackgroundTask`` (no bpy: the context and events are used as Blender
passes them, so the flow is unit-tested with stand-ins in tests/addon/test_modal_task.py).

Restyle Last Render, Stylize Image and Install Backend share it: ``invoke`` starts the task and returns
``self._run_modal(context, task)``; a timer then polls the task every ``TIMER_STEP`` s and the status bar shows
``_status_line()``; Esc cancels the task (``CANCEL_TEXT`` shows until the work stops); once the task is done,
``_finish(context)`` turns its result into the operator's answer and reports it. The timer and the status line are
removed in every case. When Blender ends the operator itself (a file loaded, Blender quit, the window closed), the
task is cancelled, and waited for up to ``CANCEL_WAIT`` s.
"""

from __future__ import annotations

from typing import Any

from .background_task import BackgroundTask


class ModalTask:
    """Mixin for ``bpy.types.Operator`` subclasses (put it first in the bases); subclasses implement ``_finish``."""

    TIMER_STEP = 0.1  # s between polls of the task
    CANCEL_TEXT = "AdaIN: cancelling…"
    CANCEL_WAIT = 0.0  # s to wait for the work when Blender ends the operator (0: do not wait)

    _task: BackgroundTask[Any] | None = None
    _timer: Any = None

    # ---------------------------------------------------------------------------------------- the flow
    def _run_modal(self, context: Any, task: BackgroundTask[Any]) -> set[str]:
        self._task = task
        wm = context.window_manager
        self._timer = wm.event_timer_add(self.TIMER_STEP, window=context.window)
        wm.modal_handler_add(self)
        self._on_begin(context)
        _show(context, self._status_line())
        return {"RUNNING_MODAL"}

    def modal(self, context: Any, event: Any) -> set[str]:
        task = self._task
        if task is None:  # (ended already)
            return {"CANCELLED"}
        if event.type == "ESC" and event.value == "PRESS":
            task.cancel()
            _show(context, self.CANCEL_TEXT)
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if not task.done():
            if not task.cancelled():
                _show(context, self._status_line())
            self._on_tick(context)
            return {"PASS_THROUGH"}
        try:
            return self._finish(context)
        finally:
            self._end(context)

    def cancel(self, context: Any) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            if self.CANCEL_WAIT > 0:
                task.wait(self.CANCEL_WAIT)
        self._end(context)

    def _end(self, context: Any) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        self._task = None
        _show(context, None)
        self._on_end(context)

    # ----------------------------------------------------------------------------------------- the hooks
    def _finish(self, context: Any) -> set[str]:
        """The task is done: read its result (``self._task.result()``), report, return the operator's answer."""
        raise NotImplementedError

    def _status_line(self) -> str:
        progress = self._task.progress if self._task is not None else ""
        return f"{progress or 'AdaIN: working'}… (Esc cancels)"

    def _on_begin(self, context: Any) -> None:
        pass

    def _on_tick(self, context: Any) -> None:
        pass

    def _on_end(self, context: Any) -> None:
        pass


def _show(context: Any, text: str | None) -> None:
    if context.workspace is not None:
        context.workspace.status_text_set(text)
