"""The one BackendManager of this Blender session, configured from the preferences or the environment (bpy).

Environment variables win over the preferences (render farms, ``blender -b``):
``ADAIN_BACKEND`` (address, e.g. tcp://10.0.0.5:5555) and ``ADAIN_BACKEND_COMMAND`` (start a local one with
this command; ``--bind ADDRESS`` is appended).

*Start local backend* runs the command under Advanced when one is typed there, else the environment that *Install
Backend* made in the extension's user folder (``install_root``), as ``<its python> -P -m backend``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import bpy

from adain_wire.keys import ClientCurve
from adain_wire.manager import BackendManager, BackendSettings, BackendUnavailableError
from adain_wire.options import DEFAULT_ENDPOINT

from . import backend_install
from .properties import ADDON_ID, install_root

_backend: BackendManager | None = None
_lock = threading.Lock()


def settings() -> BackendSettings:
    env_endpoint = os.environ.get("ADAIN_BACKEND", "").strip()
    env_command = os.environ.get("ADAIN_BACKEND_COMMAND", "").strip()
    addon = bpy.context.preferences.addons.get(ADDON_ID)
    prefs = addon.preferences if addon is not None else None
    endpoint = env_endpoint or (prefs.endpoint if prefs else DEFAULT_ENDPOINT)
    command: tuple[str, ...] | None = None
    curve = None
    if env_command:
        command = BackendSettings.split_command(env_command)
    elif env_endpoint:
        command = None
    elif prefs is not None and prefs.mode == "LOCAL":
        command = BackendSettings.split_command(prefs.command) or installed_command()
        if prefs.device != "auto":
            command = (*command, "--device", prefs.device)
    elif prefs is not None and prefs.server_public_key and prefs.client_secret_key:
        try:
            curve = ClientCurve.from_files(bpy.path.abspath(prefs.server_public_key), bpy.path.abspath(prefs.client_secret_key))
        except Exception as e:
            raise BackendUnavailableError(f"cannot read the CURVE key files: {e}") from e
    log_file = Path(tempfile.gettempdir()) / "adain-backend.log"
    return BackendSettings(endpoint=endpoint, command=command, curve=curve, log_file=log_file)


def installed_command() -> tuple[str, ...]:
    """The installed backend's command; BackendUnavailableError when none is installed."""
    info = backend_install.installed(install_root())
    if info is None:
        raise BackendUnavailableError(
            "no backend installed: press Install Backend in the add-on's preferences (Edit > Preferences > Add-ons > "
            "AdaIN Stylize), or give a backend command under Advanced"
        )
    return info.command()


def uses_installed() -> bool:
    """Whether the session's backend is a local one started from the installed environment."""
    b = _backend
    command = b.settings.command if b is not None else None
    if not command:
        return False
    root = install_root()
    return Path(command[0]).is_relative_to(root)


def backend() -> BackendManager:
    """The session's backend object (not yet connected); re-created when the settings change."""
    global _backend
    s = settings()
    with _lock:
        if _backend is None or _backend.settings != s:
            if _backend is not None:
                _backend.close()
            _backend = BackendManager(s)
        return _backend


def shutdown() -> None:
    global _backend
    with _lock:
        if _backend is not None:
            _backend.close()
            _backend = None
