"""Install Backend and Remove Backend, the preferences' buttons (bpy): thin operators over the bpy-free
``install_state.prepare``, ``install_run.Install`` and ``backend_install.remove``; errors become one report line.

From a script, ``bpy.ops.adain.backend_install()`` blocks until the install is done (``execute``); from the
preferences it runs modal (``invoke``): the steps run on a ``BackgroundTask``, a timer shows the step and pip's last
line in the status bar, the cursor and the preferences' progress bar, and Esc cancels (the running pip is killed and
the half-made environment removed; the previous one keeps working). Closing the Preferences window cancels it too.
"""

from __future__ import annotations

from typing import Any

import bpy

from . import backend_install, session_backend
from .backend_install import InstallCancelledError, InstallError
from .background_task import BackgroundTask
from .install_run import Install
from .install_state import STATE, prepare
from .modal_task import ModalTask
from .properties import ADDON_DIR, ADDON_ID, install_root


def _prefs(context: bpy.types.Context) -> Any:
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def _redraw_preferences(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


def _stop_backend_using_it() -> None:
    """The environment is about to be replaced or removed: stop a backend that runs from it (it starts again, from
    the new one, on the next render)."""
    if session_backend.uses_installed():
        session_backend.shutdown()


class ADAIN_OT_backend_install(ModalTask, bpy.types.Operator):
    """Install the backend, PyTorch and this add-on's backend, into a private Python environment in the add-on's
    user folder; Start local backend then uses it (Esc cancels)"""

    bl_idname = "adain.backend_install"
    bl_label = "Install Backend"

    TIMER_STEP = 0.2
    CANCEL_TEXT = "AdaIN: cancelling the backend install…"
    CANCEL_WAIT = 15.0  # the running pip is killed and the half-made environment removed

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if STATE.install is not None:
            cls.poll_message_set("The backend is being installed")
            return False
        return True

    def _prepare(self, context: bpy.types.Context) -> Install | None:
        prefs = _prefs(context)
        try:
            return prepare(install_root(create=True), ADDON_DIR, prefs.python if prefs is not None else "")
        except InstallError as e:
            self._fail(str(e))
            return None

    def _fail(self, message: str) -> None:
        STATE.message, STATE.failed = f"Backend install failed: {message}", True
        self.report({"ERROR"}, f"AdaIN: backend install failed: {message}")

    def _commit(self, install: Install) -> set[str]:
        _stop_backend_using_it()
        try:
            done = install.commit()
        except InstallError as e:
            self._fail(str(e))
            return {"CANCELLED"}
        STATE.message, STATE.failed = f"Backend installed: {done.describe()}", False
        self.report({"INFO"}, f"AdaIN: backend installed: {done.describe()}")
        return {"FINISHED"}

    def execute(self, context: bpy.types.Context) -> set[str]:  # scripts: blocking
        install = self._prepare(context)
        if install is None:
            return {"CANCELLED"}
        try:
            install.run()
        except InstallError as e:
            self._fail(str(e))
            return {"CANCELLED"}
        return self._commit(install)

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:  # the UI: modal, Esc cancels
        install = self._prepare(context)
        if install is None:
            return {"CANCELLED"}
        STATE.install, STATE.message, STATE.failed = install, "", False

        def work(task: BackgroundTask[dict[str, object]]) -> dict[str, object]:
            return install.run(task.cancelled)

        STATE.task = BackgroundTask(work, name="adain-backend-install").start()
        return self._run_modal(context, STATE.task)

    def _status_line(self) -> str:
        install = STATE.install
        return f"AdaIN: installing the backend, {install.progress.line() if install else ''} (Esc cancels)"

    def _on_begin(self, context: bpy.types.Context) -> None:
        context.window_manager.progress_begin(0, 100)

    def _on_tick(self, context: bpy.types.Context) -> None:
        if STATE.install is not None:
            context.window_manager.progress_update(int(100 * STATE.install.progress.fraction))
        _redraw_preferences(context)

    def _finish(self, context: bpy.types.Context) -> set[str]:
        install, task = STATE.install, self._task
        if install is None or task is None:  # the add-on was disabled meanwhile (cancel_running)
            return {"CANCELLED"}
        try:
            task.result()
        except InstallCancelledError as e:
            STATE.message, STATE.failed = str(e).capitalize(), False
            self.report({"WARNING"}, f"AdaIN: {e}")
            return {"CANCELLED"}
        except InstallError as e:
            self._fail(str(e))
            return {"CANCELLED"}
        except Exception as e:  # a bug of ours: say so, and leave nothing half-made
            install.discard()
            self._fail(f"internal error ({type(e).__name__}: {e})")
            return {"CANCELLED"}
        return self._commit(install)

    def _on_end(self, context: bpy.types.Context) -> None:
        STATE.install = STATE.task = None
        context.window_manager.progress_end()
        _redraw_preferences(context)


class ADAIN_OT_backend_remove(bpy.types.Operator):
    """Remove the installed backend (its Python environment with PyTorch) from the add-on's user folder"""

    bl_idname = "adain.backend_remove"
    bl_label = "Remove Backend"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if STATE.install is not None:
            cls.poll_message_set("The backend is being installed")
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context: bpy.types.Context) -> set[str]:
        _stop_backend_using_it()
        root = install_root()
        info = backend_install.installed(root)
        try:
            backend_install.remove(root)
        except InstallError as e:
            STATE.message, STATE.failed = str(e), True
            self.report({"ERROR"}, f"AdaIN: {e}")
            return {"CANCELLED"}
        freed = f", {info.size_bytes / 1e9:.1f} GB freed" if info is not None else ""
        STATE.message, STATE.failed = f"Backend removed{freed}", False
        self.report({"INFO"}, f"AdaIN: backend removed{freed}")
        return {"FINISHED"}


def cancel_running() -> None:
    """The add-on is disabled: stop an install that runs (its pip is killed, its half-made environment removed)."""
    task = STATE.task
    if task is not None:
        task.cancel()
        task.wait(15)
    STATE.install = STATE.task = None


CLASSES = (ADAIN_OT_backend_install, ADAIN_OT_backend_remove)
