"""Run by test_backend_install.py in a fresh bpy process: a user's way from the zip to a stylized F12, as JSON.

    python backend_install_probe.py ADDON.zip REPORT.json

1. install the zip with Blender's extension installer (Install from Disk), enabled on install;
2. ``bpy.ops.adain.backend_install()`` (blocking, as from a script) with the environment's ADAIN_TORCH_REQUIREMENT
   and ADAIN_PIP_ARGS; what is installed, where, and which device it found;
3. F12 with *Start local backend* and no command typed: the backend runs from the installed environment;
4. a failing install (``ADAIN_TORCH_REQUIREMENT=torch==0.0.1``): its error, the folder after it, and *Check Backend*
   starting the previous environment's backend again;
5. Reinstall, then Remove: the extension's user folder after each.

The report is rewritten after each step, so a failure shows how far it got; an exception lands in "error".
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

MODULE = "bl_ext.user_default.adain_stylize"


def listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def render(scene: Any, out_dir: str, name: str) -> Any:
    import bpy
    import numpy as np

    scene.render.filepath = str(Path(out_dir) / name)
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(scene.render.filepath, check_existing=False)
    img.colorspace_settings.name = "Non-Color"
    px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
    img.pixels.foreach_get(px)
    return np.round(px * 255)


def run(zip_path: str, report: dict[str, Any], save: Any) -> None:
    import bpy
    import numpy as np

    for var in ("ADAIN_BACKEND", "ADAIN_BACKEND_COMMAND"):  # the preferences must be what decides
        os.environ.pop(var, None)
    report["blender"] = bpy.app.version_string
    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    report["zip_install"] = sorted(result)
    prefs = bpy.context.preferences.addons[MODULE].preferences
    props = importlib.import_module(f"{MODULE}.properties")
    link = importlib.import_module(f"{MODULE}.session_backend")
    session = importlib.import_module(f"{MODULE}.session").SESSION
    root = props.install_root()
    report["root"] = str(root)
    report["bundled_version"] = props.bundled_version()
    report["command_pref"] = prefs.command
    try:
        link.settings()
    except Exception as e:
        report["before_install"] = str(e)
    save()

    t0 = time.monotonic()
    report["install_result"] = sorted(bpy.ops.adain.backend_install())
    report["install_s"] = round(time.monotonic() - t0, 1)
    info = importlib.import_module(f"{MODULE}.backend_install").installed(root)
    report["installed"] = {"torch": info.torch, "backend": info.backend, "device": info.device, "size": info.size_bytes,
                           "env": str(info.env), "python": info.python}  # fmt: skip
    report["listing_installed"] = listing(root)
    save()

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
    scene.render.image_settings.file_format = "PNG"
    assert bpy.ops.adain.setup() == {"FINISHED"}
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", 4, False
    out = str(Path(zip_path).parent)
    t0 = time.monotonic()
    stylized = render(scene, out, "stylized.png")
    status = session.status
    report["render"] = {"ok": status.ok, "message": status.message, "frames": list(status.stylized_frames),
                        "s": round(time.monotonic() - t0, 1)}  # fmt: skip
    backend = link.backend()
    report["backend_command"] = list(backend.settings.command or ())
    report["backend_pid"] = backend.process.pid if backend.process is not None else None
    scene.adain.enabled = False
    plain = render(scene, out, "plain.png")
    scene.adain.enabled = True
    report["render"]["mean_diff"] = float(np.abs(stylized - plain)[..., :3].mean())
    save()

    os.environ["ADAIN_TORCH_REQUIREMENT"] = "torch==0.0.1"
    try:
        bpy.ops.adain.backend_install()
        report["failing_install"] = "no error"
    except RuntimeError as e:
        report["failing_install"] = str(e)
    report["listing_after_failure"] = listing(root)
    report["log_after_failure"] = (root / "backend-install.log").read_text(errors="replace")[-3000:]
    report["backend_alive_after_failure"] = backend.process is not None and backend.process.poll() is None
    bpy.ops.adain.backend_stop()
    report["check_after_failure"] = sorted(bpy.ops.adain.backend_check())
    report["device_after_failure"] = link.backend().describe()
    save()

    os.environ["ADAIN_TORCH_REQUIREMENT"] = "torch==2.13.0"
    old_process = link.backend().process
    t0 = time.monotonic()
    report["reinstall_result"] = sorted(bpy.ops.adain.backend_install())
    report["reinstall_s"] = round(time.monotonic() - t0, 1)
    report["old_backend_stopped"] = old_process is not None and old_process.poll() is not None
    report["listing_reinstalled"] = listing(root)
    report["env_files_reinstalled"] = sorted(p.name for p in (root / "backend-env").iterdir())
    save()

    report["remove_result"] = sorted(bpy.ops.adain.backend_remove())
    report["listing_removed"] = listing(root)
    try:
        link.settings()
    except Exception as e:
        report["after_remove"] = str(e)
    importlib.import_module("addon_utils").disable(MODULE, default_set=True)


def main() -> None:
    zip_path, report_path = sys.argv[1], sys.argv[2]
    report: dict[str, Any] = {}

    def save() -> None:
        Path(report_path).write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")

    try:
        run(zip_path, report, save)
    except BaseException:
        report["error"] = traceback.format_exc()
    save()
    sys.stdout.flush()
    os._exit(0)  # bpy can hang in its static destructors at exit (see conftest.py)


if __name__ == "__main__":
    main()
