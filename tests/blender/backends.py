"""The backend that the add-on under test talks to: a real backend subprocess, started by the add-on itself
(ADAIN_BACKEND_COMMAND) on a free port. No bpy at import: conftest.py imports this without Blender too."""

from __future__ import annotations

import os
import shlex
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def backend_python() -> str:
    """The Python that runs the backend (the dev venv's, or ADAIN_BACKEND_PYTHON); skips the test without one."""
    py = os.environ.get("ADAIN_BACKEND_PYTHON") or str(REPO / ".venv" / "bin" / "python")
    if not Path(py).is_file():
        pytest.skip(f"no backend Python at {py}: run scripts/setup_env.sh or set ADAIN_BACKEND_PYTHON")
    return py


def backend_command(*options: str) -> str:
    return " ".join([shlex.quote(backend_python()), "-m", "backend", *options])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def use_backend(endpoints: dict[str, str], kind: str, command: str | None) -> Iterator[str]:
    """Point the add-on (ADAIN_BACKEND, ADAIN_BACKEND_COMMAND) at this kind's port for one test; the add-on starts
    ``command`` there on first use and keeps it while tests of the same kind follow (it restarts the backend when
    the settings change, so tests of different kinds may be interleaved). ``endpoints`` (one per test module)
    gives each kind its own port."""
    endpoint = endpoints.setdefault(kind, f"tcp://127.0.0.1:{_free_port()}")
    old = {k: os.environ.get(k) for k in ("ADAIN_BACKEND", "ADAIN_BACKEND_COMMAND")}
    os.environ["ADAIN_BACKEND"] = endpoint
    if command:
        os.environ["ADAIN_BACKEND_COMMAND"] = command
    else:
        os.environ.pop("ADAIN_BACKEND_COMMAND", None)
    try:
        yield endpoint
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def shutdown_addon_backend() -> None:
    """Stop the backend the add-on started, if the add-on was imported at all."""
    link = sys.modules.get("addon.session_backend")
    if link is not None:
        link.shutdown()
