"""The session's backend install: the one running (the preferences draw its progress) and how the last one ended;
``prepare`` gathers an install's parts (no bpy)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .backend_install import Machine, bundled_wheel, choose_torch, find_python, user_pip_args, wheel_torch_requirement
from .background_task import BackgroundTask
from .install_run import Install


@dataclass
class InstallState:
    install: Install | None = None  # running now (the modal operator's)
    task: BackgroundTask[dict[str, object]] | None = None  # the thread it runs on
    message: str = ""  # how the last install or removal ended, for the preferences
    failed: bool = False


STATE = InstallState()


def prepare(root: Path, addon_dir: Path, python: str = "", environ: Mapping[str, str] = os.environ,
            running: str = sys.executable, machine: Machine | None = None) -> Install:  # fmt: skip
    """An install of the add-on's bundled backend wheel into ``root``: its torch chosen for this machine (or
    ``environ``'s overrides), with ``python`` (the preferences') or a Python 3.11 found. InstallError says what is
    missing (the wheel, a supported platform, a usable Python)."""
    wheel = bundled_wheel(addon_dir)
    choice = choose_torch(machine or Machine.detect(), wheel_torch_requirement(wheel), environ)
    pip_args = user_pip_args(environ)
    return Install(root, wheel, find_python(python, running), choice, pip_args, environ)
