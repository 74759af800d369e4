"""Run by test_install.py in a fresh bpy process: install the add-on zip as a user does, report as JSON.

    python install_probe.py ADDON.zip REPORT.json

Installs with ``bpy.ops.extensions.package_install_files`` into the "user_default" repository with
enable-on-install (what Edit > Preferences > Get Extensions > Install from Disk does), then imports the
bundled wheels and the add-on's modules and disables the add-on again. The bpy environment's own pyzmq
and msgpack are hidden from imports, as a real Blender has neither: they must come from the extension's
wheels. The report is written whatever happens; an exception lands in its "error" entry.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import json
import site
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

MODULE = "bl_ext.user_default.adain_stylize"
BUNDLED = ("zmq", "msgpack")


class OnlyFromOutsideVenv(importlib.abc.MetaPathFinder):
    """Finds the top-level BUNDLED modules only outside the given site-packages folders."""

    def __init__(self, hidden: Sequence[str]) -> None:
        self.hidden = {str(Path(p).resolve()) for p in hidden}

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if path is not None or name not in BUNDLED:
            return None
        search = [p for p in sys.path if str(Path(p or ".").resolve()) not in self.hidden]
        spec = importlib.machinery.PathFinder.find_spec(name, search)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} outside the bpy environment's site-packages", name=name)
        return spec


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    sys.modules.pop(name, None)
    return True


def run(zip_path: str, report: dict[str, Any]) -> None:
    import bpy

    addon_utils = importlib.import_module("addon_utils")  # on sys.path only once bpy has started Blender

    prefs = bpy.context.preferences
    report["blender"] = bpy.app.version_string
    report["user_resources"] = bpy.utils.resource_path("USER")
    report["online_access"] = bpy.app.online_access
    repo = next(r for r in prefs.extensions.repos if r.module == "user_default")
    report["repo_directory"] = repo.directory
    report["importable_before_install"] = {name: importable(name) for name in BUNDLED}

    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    report["operator_result"] = sorted(result)
    report["enabled"] = MODULE in prefs.addons
    report["addon_utils_check"] = list(addon_utils.check(MODULE))  # (loaded_default, loaded_state)

    import msgpack
    import zmq

    report["zmq_file"] = zmq.__file__
    report["msgpack_file"] = msgpack.__file__
    report["libzmq"] = zmq.zmq_version()
    ctx = zmq.Context()
    try:
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        a.bind("inproc://probe")
        b.connect("inproc://probe")
        a.send(msgpack.packb({"op": "hello", "v": 1}))
        report["roundtrip"] = msgpack.unpackb(b.recv(), raw=False)
        a.close(0)
        b.close(0)
    finally:
        ctx.term()

    modules: dict[str, ModuleType] = {name: importlib.import_module(f"{MODULE}.{name}") for name in ("protocol", "client")}
    report["module_files"] = {name: m.__file__ for name, m in modules.items()}
    report["client_has_Client"] = hasattr(modules["client"], "Client")
    report["protocol_version"] = getattr(modules["protocol"], "PROTOCOL_VERSION", None)

    errors: list[str] = []
    addon_utils.disable(MODULE, default_set=True, handle_error=lambda ex: errors.append(repr(ex)))
    report["disable_errors"] = errors
    report["enabled_after_disable"] = MODULE in prefs.addons


def main() -> None:
    zip_path, report_path = sys.argv[1], sys.argv[2]
    sys.meta_path.insert(0, OnlyFromOutsideVenv([*site.getsitepackages(), site.getusersitepackages()]))
    report: dict[str, Any] = {}
    try:
        run(zip_path, report)
    except BaseException:
        report["error"] = traceback.format_exc()
    Path(report_path).write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
