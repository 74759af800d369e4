"""The add-on zip from scripts/build_addon.py installs into real Blender and works there (4.5 LTS and 5.0).

Each install runs in a fresh subprocess (bpy can be imported once per process, and installing changes
Blender's user preferences) whose Blender user folders lie in a temporary folder (BLENDER_USER_RESOURCES).
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from tests.blender.backends import backend_python

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("install_probe.py")
ADDON_MODULE = "bl_ext.user_default.adain_stylize"


def _bpy_scripts() -> Path:
    """``bpy/<major.minor>/scripts`` of the installed bpy package."""
    spec = importlib.util.find_spec("bpy")
    assert spec is not None and spec.origin is not None
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg"))
    assert found, f"no bl_pkg (Blender's extension system) under {Path(spec.origin).parent}"
    return found[-1].parents[1]


def _install(zip_path: Path, env: dict[str, str], tmp_path: Path) -> tuple[dict[str, Any], str]:
    report_path = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(zip_path), str(report_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = f"--- exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert report_path.is_file(), f"the Blender subprocess wrote no report\n{output}"
    return json.loads(report_path.read_text(encoding="utf-8")), output


def test_zip_holds_the_addon_tree(addon_zip: Path) -> None:
    shipped = {p.name for p in (REPO / "addon").glob("*.py")}
    with zipfile.ZipFile(addon_zip) as zf:
        names = set(zf.namelist())
    assert shipped <= names
    assert "blender_manifest.toml" in names
    assert any(n.startswith("wheels/pyzmq-") for n in names) and any(n.startswith("wheels/msgpack-") for n in names)
    assert any(n.startswith("wheels/adain_wire-0.1.0+") and n.endswith("-py3-none-any.whl") for n in names)
    # the backend for Install Backend (issue 18): the project's wheel, not one Blender installs itself
    assert [n for n in names if n.startswith("backend_wheel/")] == [
        n for n in names if n.startswith("backend_wheel/adain_blender-0.1.0+") and n.endswith("-py3-none-any.whl")
    ]
    assert any(n.startswith("backend_wheel/") for n in names)


def test_blender_validates_the_package(addon_zip: Path) -> None:
    """What `blender --command extension validate` runs (not available in the bpy wheel itself), with
    Blender's list of valid tags."""
    scripts = _bpy_scripts()
    cli = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    tags = scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    proc = subprocess.run(
        [sys.executable, str(cli), "validate", "--valid-tags", str(tags), str(addon_zip)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


def test_install_from_disk_enables_the_addon_with_its_wheels(
    addon_zip: Path, blender_env: dict[str, str], tmp_path: Path
) -> None:
    report, output = _install(addon_zip, blender_env, tmp_path)
    assert "error" not in report, f"{report['error']}\n{output}"
    user = Path(blender_env["BLENDER_USER_RESOURCES"])
    # Isolated: Blender used the temporary user folders, offline.
    assert Path(report["user_resources"]) == user
    assert report["online_access"] is False
    # The test means something: the bpy environment's own pyzmq/msgpack are hidden from Blender.
    assert report["importable_before_install"] == {"zmq": False, "msgpack": False, "adain_wire": False}

    assert report["operator_result"] == ["FINISHED"], output
    assert report["enabled"], f"{ADDON_MODULE} not among the enabled add-ons\n{output}"
    assert report["addon_utils_check"] == [True, True], output

    # The wheels were installed into Blender's extension site-packages and work from there.
    site_packages = user / "extensions" / ".local" / "lib" / "python3.11" / "site-packages"
    assert Path(report["zmq_file"]).is_relative_to(site_packages), report["zmq_file"]
    assert Path(report["msgpack_file"]).is_relative_to(site_packages), report["msgpack_file"]
    assert report["roundtrip"] == {"op": "hello", "v": 1}

    # The add-on's own modules import from the installed extension, the wire package from its wheel.
    installed = Path(report["repo_directory"]) / "adain_stylize"
    assert Path(report["repo_directory"]).is_relative_to(user)
    assert Path(report["module_files"]["frames"]) == installed / "frames.py"
    for name in ("client", "protocol"):
        assert Path(report["module_files"][name]) == site_packages / "adain_wire" / f"{name}.py"
    assert report["client_has_Client"] and report["frames_uses_the_wheel"]
    assert report["protocol_version"] == 1

    assert report["disable_errors"] == [], output
    assert not report["enabled_after_disable"]
    assert "Traceback" not in output, output  # nothing failed quietly (a handler, a timer, a log line)


def test_installed_addon_renders_through_a_remote_backend_with_curve_keys(
    addon_zip: Path, blender_env: dict[str, str], tmp_path: Path
) -> None:
    """A studio's setup: the backend elsewhere, reachable only with CurveZMQ keys; the add-on, installed from its
    zip, is told where it is and which key files to use in its preferences (no environment variables)."""
    py = backend_python()
    keys, clients = tmp_path / "keys", tmp_path / "clients"
    for name in ("server", "client"):
        subprocess.run([py, "-m", "backend", "--generate-keys", str(keys), "--key-name", name], cwd=REPO, check=True,
                       capture_output=True, timeout=120)  # fmt: skip
    clients.mkdir()
    (clients / "client.key").write_bytes((keys / "client.key").read_bytes())  # only the client's public key
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    endpoint = f"tcp://127.0.0.1:{port}"
    cmd = [py, "-m", "backend", "--identity", "--device", "cpu", "--bind", endpoint,
           "--curve-secret", str(keys / "server.key_secret"), "--curve-clients", str(clients)]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        env = {k: v for k, v in blender_env.items() if k not in ("ADAIN_BACKEND", "ADAIN_BACKEND_COMMAND")}
        env["ADAIN_PROBE_REMOTE"] = json.dumps({
            "endpoint": endpoint, "server_public_key": str(keys / "server.key"),
            "client_secret_key": str(keys / "client.key_secret"),
            "style": str(REPO / "adain" / "data" / "samples" / "style_wesnoth_trow_great_tree.jpg"), "out_dir": str(tmp_path),
        })  # fmt: skip
        report, output = _install(addon_zip, env, tmp_path)
    finally:
        server.terminate()
        server_log = server.communicate(timeout=60)[1]
    assert "error" not in report, f"{report['error']}\n{output}\n--- backend\n{server_log}"
    remote = report["remote"]
    assert remote["curve_settings"] is True
    assert remote["ok"] and remote["stylized_frames"] == [1], f"{remote}\n{output}\n--- backend\n{server_log}"
    assert remote["plain_mean"] > 20 and remote["max_diff"] <= 1, remote  # identity backend: the render comes back
