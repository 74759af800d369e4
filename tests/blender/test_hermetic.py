"""The demo runs Blender with a private user folder (issue 16, item 2): an add-on the user installed does not
change what runs.

The user's setup is made for real, in a fake home folder: the built zip installed with Blender's Install from Disk
into Blender's *default* user folder, enabled, preferences saved. Then ``scripts/demo_blender.py`` runs from that
same account. Had Blender loaded that user folder, it would enable the installed copy, whose wheel sync removes the
pyzmq files the demo has imported (the client then fails from frame 2 on: ``No module named 'zmq.utils.garbage'``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.blender.backends import backend_python

REPO = Path(__file__).resolve().parents[2]
FRAMES = 2

# Install from Disk into the default user folder, enable on install, save the preferences (as the UI does on quit).
INSTALL = """
import json, os, sys
import bpy
result = bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
bpy.ops.wm.save_userpref()
prefs = bpy.context.preferences
repo = next(r for r in prefs.extensions.repos if r.module == "user_default")
report = {"result": sorted(result), "user": bpy.utils.resource_path("USER"), "repo": repo.directory,
          "enabled": "bl_ext.user_default.adain_stylize" in prefs.addons}
print("REPORT " + json.dumps(report), flush=True)
sys.stdout.flush()
os._exit(0)
"""


def _user_env(home: Path) -> dict[str, str]:
    """The environment of a user whose home is ``home``: no BLENDER_USER_* (or XDG) variable, so Blender's user
    folder is its default one under ``home``; no add-on backend settings either."""
    drop = {"XDG_CONFIG_HOME", "XDG_DATA_HOME", "ADAIN_BACKEND", "ADAIN_BACKEND_COMMAND"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLENDER_USER_") and k not in drop}
    env["HOME"] = str(home)
    return env


def test_the_demo_stylizes_every_frame_with_the_addon_installed_in_the_default_user_folder(
    addon_zip: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = _user_env(home)
    installed = subprocess.run(
        [sys.executable, "-c", INSTALL, str(addon_zip)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in installed.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, f"the install reported nothing (exit {installed.returncode}):\n{installed.stdout}\n{installed.stderr}"
    report = json.loads(lines[-1].removeprefix("REPORT "))
    assert report["result"] == ["FINISHED"] and report["enabled"], report
    user = Path(report["user"])
    assert user.is_relative_to(home), f"Blender's default user folder {user} is not under the fake home {home}"
    assert (Path(report["repo"]) / "adain_stylize" / "blender_manifest.toml").is_file()
    wheels = sorted(user.glob("extensions/.local/lib/python*/site-packages/zmq/utils/garbage.py"))
    assert wheels, f"the installed add-on's pyzmq is not in {user}/extensions/.local"
    assert sorted(user.glob("config/userpref.blend")), "the preferences (add-on enabled) were not saved"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        env["ADAIN_BACKEND"] = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    env["TMPDIR"] = str(tmp_path / "tmp")  # where the private user folder is made (and must be gone afterwards)
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "out"
    # The demo as README runs it, at its default size: there, without a private user folder, frame 2 fails.
    demo = [sys.executable, str(REPO / "scripts" / "demo_blender.py"), "--frames", str(FRAMES), "--out", str(out)]
    proc = subprocess.run(
        [*demo, "--backend-python", backend_python()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = f"--- exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    # Every frame stylized, as the add-on reports it (the frame is among the session's stylized frames), and written.
    reported = re.findall(r"^\[\d+/\d+\] frame (\d+) (stylized|NOT stylized):", proc.stdout, re.MULTILINE)
    assert reported == [(str(f), "stylized") for f in range(1, FRAMES + 1)], output
    assert proc.returncode == 0, output
    for f in range(1, FRAMES + 1):
        assert (out / f"frame_{f:04d}.png").stat().st_size > 0, output
    # Hermetic: the installed copy played no part, so its wheels are intact; the private folder was removed.
    assert all(w.is_file() for w in wheels), "the demo's Blender synced the installed add-on's wheels"
    assert str(home) not in proc.stdout + proc.stderr, output
    assert not sorted((tmp_path / "tmp").glob("adain-blender-user-*")), "the private user folder was left behind"
