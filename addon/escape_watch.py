"""Esc while EEVEE's or Workbench's frame is being stylized (bpy).

Cycles' frames are stylized inside its RenderEngine, which polls ``RenderEngine.test_break()``. The hook for
engines without a Python RenderEngine (``engine_hook``) runs in ``render_post`` on the render thread, where no
break flag can be read: Blender looks at it only after the handler returns. So in the UI a small modal operator
watches the window's events for the length of the render job: Esc sets ``SESSION.render_break`` and is passed on
(Blender cancels its job as usual), and the stylization, which polls the flag every 0.1 s while it waits for the
backend, gives up at once; the frame stays plain and unwritten and the animation stops, as with Cycles.
Background Blender has no window and no Esc: nothing is started there.
"""

from __future__ import annotations

import logging
from typing import Any

import bpy

from .session import SESSION

log = logging.getLogger("adain.escape_watch")
POLL_S = 0.25  # how often the operator checks whether the render job is still running
_running = [False]


class ADAIN_OT_render_escape_watch(bpy.types.Operator):
    """Watch for Esc while a render job runs (AdaIN stylization after EEVEE or Workbench)"""

    bl_idname = "adain.render_escape_watch"
    bl_label = "AdaIN: watch for Esc during a render"
    bl_options = {"INTERNAL"}

    _timer: Any = None

    def invoke(self, context: Any, event: Any) -> set[str]:
        if _running[0]:
            return {"CANCELLED"}
        _running[0] = True
        self._timer = context.window_manager.event_timer_add(POLL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: Any, event: Any) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS":
            SESSION.render_break.set()
        elif event.type == "TIMER" and not bpy.app.is_job_running("RENDER"):
            self._finish(context)
            return {"FINISHED"}
        return {"PASS_THROUGH"}  # Esc included: Blender cancels its render job as it always does

    def cancel(self, context: Any) -> None:
        self._finish(context)

    def _finish(self, context: Any) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        _running[0] = False


def start() -> None:
    """Start the watcher in the UI's first window (from a timer: handlers run where operators cannot be invoked)."""
    if bpy.app.background or _running[0]:
        return

    def invoke() -> None:
        windows = list(getattr(bpy.context.window_manager, "windows", ()))
        if not windows or _running[0]:
            return
        try:
            with bpy.context.temp_override(window=windows[0]):
                bpy.ops.adain.render_escape_watch("INVOKE_DEFAULT")
        except Exception:  # (Esc then cancels after the frame, as Blender itself does)
            log.warning("could not watch for Esc during this render", exc_info=True)

    bpy.app.timers.register(invoke, first_interval=0.0)


CLASSES = (ADAIN_OT_render_escape_watch,)
