"""Fixtures for the tests that run real Blender (bpy from PyPI).

Run them with a bpy environment made by ``bash scripts/setup_blender.sh``:

    .venv-bpy45/bin/python -m pytest tests/blender
    .venv-bpy50/bin/python -m pytest tests/blender

``tests/blender/pytest.ini`` makes this folder its own pytest root for such a run, so ``tests/conftest.py``
(torch, the backend) is not loaded into the bpy environments. Under the dev venv (no bpy) the whole folder
is skipped.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.blender.backends import backend_command, shutdown_addon_backend, use_backend
from tests.scripts.script_loader import load_script

# --- bpy availability --------------------------------------------------------------------------------------
# Before bpy is first imported in this process, point Blender's user folders at a throw-away folder (and drop the
# other BLENDER_USER_* variables), so no test reads or writes the developer's own Blender preferences, add-ons or
# extensions: scripts/blender_user.py, which the demo uses too.
_blender_user = load_script("blender_user")
if importlib.util.find_spec("bpy") is not None:
    _blender_user.use_private_user_folder(prefix="adain-bpy-user-")

try:
    import bpy  # noqa: F401
except ImportError as exc:
    NO_BPY: str | None = (
        f"needs bpy, Blender as a Python module ({exc}): run `bash scripts/setup_blender.sh`, then "
        "`.venv-bpy45/bin/python -m pytest tests/blender` (and .venv-bpy50)"
    )
else:
    NO_BPY = None


class _SkippedModule(pytest.Module):
    """A test module of this folder collected without bpy: reported as skipped, never imported (its
    module-level ``import bpy`` would fail)."""

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        pytest.skip(NO_BPY or "", allow_module_level=True)


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # Works the same whether pytest was pointed at this folder (an initial conftest, where a module-level
    # pytest.importorskip would abort the whole run) or found it under tests/.
    return _SkippedModule.from_parent(parent, path=module_path) if NO_BPY else None


# --- packaging: the built add-on zip and an isolated Blender for a subprocess ---------------------------------

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build_addon.py"
WHEEL_CACHE = REPO / "build" / "wheels"  # shared with scripts/build_addon.py's default: downloads happen once
ADDON_MODULE = "bl_ext.user_default.adain_stylize"  # the add-on's module once installed into the "user_default" repo

# Variables that would send a subprocess's Blender to other user folders than BLENDER_USER_RESOURCES.
_BLENDER_USER_VARS: tuple[str, ...] = _blender_user.OTHER_USER_VARS


def blender_platform() -> str:
    """This machine as Blender names platforms in extension manifests (``linux-x64``, ``macos-arm64``, ...)."""
    system = {"darwin": "macos"}.get(platform.system().lower(), platform.system().lower())
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(platform.machine().lower(), platform.machine().lower())
    return f"{system}-{machine}"


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installable zip built from the real ``addon/`` tree by scripts/build_addon.py, for this platform only
    (the wheels come from build/wheels/, downloaded there on first use)."""
    out = tmp_path_factory.mktemp("addon-zip")
    cmd = [sys.executable, str(BUILD_SCRIPT), "--output", str(out), "--platforms", blender_platform()]
    proc = subprocess.run([*cmd, "--wheel-cache", str(WHEEL_CACHE)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"build_addon.py failed:\n{proc.stderr}"
    zip_path = Path(proc.stdout.strip().splitlines()[-1])
    assert zip_path.is_file()
    return zip_path


@pytest.fixture
def blender_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a fresh ``sys.executable`` subprocess that imports bpy: Blender's user folders
    (config, scripts, extensions and their site-packages) all lie in a new temporary folder."""
    env = {k: v for k, v in os.environ.items() if k not in _BLENDER_USER_VARS}
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "blender-user")
    return env


# --- backends for the add-on under test: a real backend subprocess that the add-on starts itself -------------------


@pytest.fixture(scope="module")
def _endpoints() -> Iterator[dict[str, str]]:
    """This module's backend ports, one per kind; the add-on's backend is stopped when the module is done."""
    yield {}
    shutdown_addon_backend()


@pytest.fixture
def identity_backend(_endpoints: dict[str, str]) -> Iterator[str]:
    """A backend that sends frames back unchanged (``--identity``): for colour round trips and plumbing."""
    yield from use_backend(_endpoints, "identity", backend_command("--identity", "--device", "cpu"))


@pytest.fixture
def model_backend(_endpoints: dict[str, str]) -> Iterator[str]:
    """The real backend with the shipped decoder, on the CPU."""
    yield from use_backend(_endpoints, "model", backend_command("--device", "cpu"))


@pytest.fixture
def dead_backend(_endpoints: dict[str, str]) -> Iterator[str]:
    """An address where no backend runs, and no command to start one."""
    yield from use_backend(_endpoints, "dead", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Renders through the real model (the ``model_backend`` fixture) take tens of seconds each: mark them slow."""
    for item in items:
        if "model_backend" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


# --- process exit ----------------------------------------------------------------------------------------------
# bpy (as a Python module) can hang in its C++ static destructors when the interpreter exits (a thread waiting
# on a condition variable that is destroyed: seen with bpy 4.5.15 after failing tests). Leave with os._exit once
# pytest has reported everything, keeping pytest's exit status.
_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    if NO_BPY is None and "bpy" in sys.modules:
        _blender_user.remove_private_user_folders()  # atexit does not run after os._exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
