"""Run by test_install.py in a fresh bpy process: install the add-on zip as a user does, report as JSON.

    python install_probe.py ADDON.zip REPORT.json

Installs with ``bpy.ops.extensions.package_install_files`` into the "user_default" repository with
enable-on-install (what Edit > Preferences > Get Extensions > Install from Disk does), then imports the
bundled wheels and the add-on's modules and disables the add-on again. The bpy environment's own pyzmq
and msgpack are hidden from imports, as a real Blender has neither: they must come from the extension's
wheels, as must adain_wire (the wire package). The report is written whatever happens; an exception lands in its "error" entry.

With ``ADAIN_PROBE_REMOTE`` set (JSON: endpoint, server_public_key, client_secret_key, style, out_dir), the
installed add-on is also pointed at that backend through its preferences (Connect to backend, CurveZMQ key
files, as a studio sets it up) and renders one Cycles frame stylized and one plain.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import json
import os
import site
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

MODULE = "bl_ext.user_default.adain_stylize"
BUNDLED = ("zmq", "msgpack", "adain_wire")  # adain_wire: the protocol and client, a wheel built from the repository


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

    modules: dict[str, ModuleType] = {name: importlib.import_module(f"adain_wire.{name}") for name in ("protocol", "client")}
    modules["frames"] = importlib.import_module(f"{MODULE}.frames")  # an add-on module that imports the wire package
    report["module_files"] = {name: m.__file__ for name, m in modules.items()}
    report["client_has_Client"] = hasattr(modules["client"], "Client")
    report["protocol_version"] = getattr(modules["protocol"], "PROTOCOL_VERSION", None)
    report["frames_uses_the_wheel"] = getattr(modules["frames"], "Client", None) is getattr(modules["client"], "Client", 0)

    remote = os.environ.get("ADAIN_PROBE_REMOTE")
    if remote:
        report["remote"] = remote_render(json.loads(remote))

    errors: list[str] = []
    addon_utils.disable(MODULE, default_set=True, handle_error=lambda ex: errors.append(repr(ex)))
    report["disable_errors"] = errors
    report["enabled_after_disable"] = MODULE in prefs.addons


def remote_render(cfg: dict[str, str]) -> dict[str, Any]:
    """Preferences -> remote CURVE backend; render the startup scene stylized, then plain; compare."""
    import bpy
    import numpy as np

    for var in ("ADAIN_BACKEND", "ADAIN_BACKEND_COMMAND"):  # the preferences must be what decides
        os.environ.pop(var, None)
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.mode = "REMOTE"
    prefs.endpoint = cfg["endpoint"]
    prefs.server_public_key = cfg["server_public_key"]
    prefs.client_secret_key = cfg["client_secret_key"]
    session = importlib.import_module(f"{MODULE}.session").SESSION

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 48, 32, 100
    scene.render.image_settings.file_format = "PNG"
    assert bpy.ops.adain.setup() == {"FINISHED"}
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", 4, False
    scene.adain.slots[0].styles.add().image = bpy.data.images.load(cfg["style"])

    def still(name: str) -> np.ndarray:
        scene.render.filepath = str(Path(cfg["out_dir"]) / name)
        bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load(scene.render.filepath, check_existing=False)
        img.colorspace_settings.name = "Non-Color"
        px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
        img.pixels.foreach_get(px)
        return np.round(px * 255)

    out: dict[str, Any] = {}
    stylized = still("remote.png")
    out["ok"], out["message"] = session.status.ok, session.status.message
    out["stylized_frames"] = list(session.status.stylized_frames)
    out["curve_settings"] = render_settings_curve(importlib.import_module(f"{MODULE}.session_backend"))
    scene.adain.enabled = False
    plain = still("plain.png")
    out["max_diff"] = float(np.abs(stylized - plain).max())
    out["plain_mean"] = float(plain.mean())
    return out


def render_settings_curve(link: ModuleType) -> bool:
    """Whether the settings the add-on connects with carry CURVE keys."""
    return link.settings().curve is not None


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
