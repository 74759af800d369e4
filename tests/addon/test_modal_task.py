"""``ModalTask``, the modal half of Restyle, Stylize Image and Install Backend: a real ``BackgroundTask`` on a real
thread, driven by the timer and Esc events Blender would send (stand-ins for the window manager and the workspace:
the flow itself has no bpy in it; the operators' blocking paths run in real Blender in tests/blender)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from addon.background_task import BackgroundTask
from addon.frames import FrameCancelledError
from addon.modal_task import ModalTask


@dataclass
class WindowManager:
    timers: list[object] = field(default_factory=list)
    handlers: list[object] = field(default_factory=list)

    def event_timer_add(self, step: float, window: Any = None) -> object:
        timer = object()
        self.timers.append(timer)
        return timer

    def event_timer_remove(self, timer: object) -> None:
        self.timers.remove(timer)

    def modal_handler_add(self, op: object) -> None:
        self.handlers.append(op)


@dataclass
class Workspace:
    status: list[str | None] = field(default_factory=list)

    def status_text_set(self, text: str | None) -> None:
        self.status.append(text)


@dataclass
class Context:
    window_manager: WindowManager = field(default_factory=WindowManager)
    workspace: Workspace = field(default_factory=Workspace)
    window: object = None


@dataclass(frozen=True)
class Event:
    type: str
    value: str = "NOTHING"


TIMER, ESC = Event("TIMER"), Event("ESC", "PRESS")


class Operator(ModalTask):
    CANCEL_TEXT = "cancelling the test…"

    def __init__(self) -> None:
        self.reports: list[tuple[str, str]] = []
        self.ticks = 0

    def report(self, kind: set[str], text: str) -> None:
        self.reports.append((next(iter(kind)), text))

    def _on_tick(self, context: Any) -> None:
        self.ticks += 1

    def _finish(self, context: Any) -> set[str]:
        assert self._task is not None
        try:
            value = self._task.result()
        except FrameCancelledError:
            self.report({"WARNING"}, "cancelled")
            return {"CANCELLED"}
        self.report({"INFO"}, f"got {value}")
        return {"FINISHED"}


def gated(gate: threading.Event, progress: str = "working") -> BackgroundTask[int]:
    """A task that says what it does, then waits for ``gate`` (or a cancel) and answers 42."""

    def work(task: BackgroundTask[int]) -> int:
        task.progress = progress
        while not gate.wait(0.01):
            if task.cancelled():
                raise FrameCancelledError("cancelled")
        return 42

    return BackgroundTask(work).start()


def test_timer_polls_until_done_then_finish_reports_and_everything_is_removed():
    ctx, op, gate = Context(), Operator(), threading.Event()
    task = gated(gate, "AdaIN: restyling")
    assert op._run_modal(ctx, task) == {"RUNNING_MODAL"}
    assert len(ctx.window_manager.timers) == 1 and ctx.window_manager.handlers == [op]
    for _ in range(500):  # (the work sets its progress first thing)
        if task.progress:
            break
        time.sleep(0.01)
    assert op.modal(ctx, TIMER) == {"PASS_THROUGH"} and op.ticks == 1
    assert ctx.workspace.status[-1] == "AdaIN: restyling… (Esc cancels)", "the status bar shows the task's progress"
    assert op.modal(ctx, Event("MOUSEMOVE")) == {"PASS_THROUGH"} and op.ticks == 1, "other events pass through"
    gate.set()
    task.wait(5)
    assert op.modal(ctx, TIMER) == {"FINISHED"}
    assert op.reports == [("INFO", "got 42")]
    assert ctx.window_manager.timers == [] and ctx.workspace.status[-1] is None


def test_esc_cancels_the_work_and_the_operator_ends_cancelled():
    ctx, op = Context(), Operator()
    task = gated(threading.Event())
    op._run_modal(ctx, task)
    assert op.modal(ctx, ESC) == {"RUNNING_MODAL"} and ctx.workspace.status[-1] == "cancelling the test…"
    assert task.wait(5), "the work saw the cancel and stopped"
    assert op.modal(ctx, TIMER) == {"CANCELLED"}
    assert op.reports == [("WARNING", "cancelled")]
    assert ctx.window_manager.timers == [] and ctx.workspace.status[-1] is None


def test_blender_ending_the_operator_cancels_and_waits_for_the_work():
    ctx, op = Context(), Operator()
    op.CANCEL_WAIT = 5.0
    task = gated(threading.Event())
    op._run_modal(ctx, task)
    op.cancel(ctx)
    assert task.done() and task.cancelled(), "waited for the work to stop"
    assert ctx.window_manager.timers == [] and ctx.workspace.status[-1] is None
    assert op.modal(ctx, TIMER) == {"CANCELLED"}, "a late event after the end does nothing"


def test_a_bug_in_finish_still_removes_the_timer_and_status():
    class Broken(Operator):
        def _finish(self, context: Any) -> set[str]:
            raise RuntimeError("bug")

    ctx, op, gate = Context(), Broken(), threading.Event()
    gate.set()
    task = gated(gate)
    op._run_modal(ctx, task)
    task.wait(5)
    with pytest.raises(RuntimeError, match="bug"):
        op.modal(ctx, TIMER)
    assert ctx.window_manager.timers == [] and ctx.workspace.status[-1] is None
