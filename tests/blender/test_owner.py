"""A Blender that started its local backend is SIGKILLed (as a crash ends it): the backend is gone within 5 s
(issue 16, item 3). The add-on starts the backend through its session backend (``BackendManager``), which passes
Blender's pid as ``--owner-pid``."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.blender.backends import backend_command
from tests.faults import process_gone

REPO = Path(__file__).resolve().parents[2]
EXIT_BOUND_S = 5.0

# Runs in a fresh bpy process: register the add-on, start its local backend the way a render does, report its pid.
BLENDER_SCRIPT = """
import sys, time
import bpy
import addon
addon.register()
from addon import session_backend
manager = session_backend.backend()
manager.client()
print("BACKEND", manager.process.pid, bpy.app.version_string, flush=True)
time.sleep(300)
"""


def test_the_backend_is_gone_within_5_s_of_its_blender_being_killed(blender_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    env = {**blender_env, "ADAIN_BACKEND": endpoint, "ADAIN_BACKEND_COMMAND": backend_command("--identity", "--device", "cpu")}
    env["TMPDIR"] = str(tmp_path)  # the add-on writes the backend's log into the temporary folder: this test's own
    blender = subprocess.Popen(
        [sys.executable, "-c", BLENDER_SCRIPT], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert blender.stdout is not None
    backend: int | None = None
    output: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while backend is None:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([blender.stdout], [], [], max(left, 0))
            line = blender.stdout.readline() if ready else ""
            output.append(line)
            if not line:  # EOF (Blender ended) or the deadline
                raise AssertionError(f"Blender reported no backend (exit {blender.poll()}):\n{''.join(output)}")
            if line.startswith("BACKEND "):
                backend = int(line.split()[1])
        assert not process_gone(backend)
        blender.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        blender.wait(10)
        while not process_gone(backend) and time.monotonic() - t0 < EXIT_BOUND_S + 5:
            time.sleep(0.02)
        took = time.monotonic() - t0
    finally:
        blender.kill()
        blender.wait(10)
        if backend is not None and not process_gone(backend):
            os.kill(backend, signal.SIGKILL)
    log = (tmp_path / "adain-backend.log").read_text(errors="replace")
    print(f"{output[-1].split(maxsplit=2)[-1].strip()}: SIGKILL -> backend gone in {took:.2f} s")
    assert took < EXIT_BOUND_S, f"the backend still ran {took:.1f} s after Blender was killed\n{log}"
    assert f"the owner process {blender.pid} is gone: shutting down" in log, log
