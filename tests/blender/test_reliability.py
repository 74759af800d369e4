"""Never lose a frame (issue 16): in real Blender, an animation render goes on when the client's I/O thread dies
or the backend is SIGKILLed in the middle of it; every frame is written stylized exactly once.

The faults are real: an asynchronous exception raised into the client's I/O thread, a real SIGKILL of the backend
process the add-on started. They are triggered at a known point (right after a frame's request is sent) by a
pass-through wrapper around ``Client.submit``."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bpy
import numpy as np
import pytest

from tests.blender.scene import fresh_scene, read_png, render_still, set_slot
from tests.faults import kill_thread

from adain_wire.client import Client  # isort: skip  (scene.py put the repository on sys.path)
from addon import session_backend  # isort: skip
from addon.session import SESSION  # isort: skip

STYLE = "style_wesnoth_trow_great_tree.jpg"
FRAMES = list(range(1, 7))


def _kill_io_thread(client: Client) -> None:
    assert client._thread is not None
    kill_thread(client._thread, join_s=5)  # it dies at its next bytecode (it polls every 50 ms while a request is out)


@pytest.fixture
def after_submit(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[Client, int], None]], None]]:
    """``after_submit(fault)``: ``fault(client, n)`` runs right after the n-th stylize request (1-based) is sent."""
    real = Client.submit
    count = [0]
    fault: list[Callable[[Client, int], None]] = []

    def submit(self: Client, *args: Any, **kwargs: Any) -> Any:
        pending = real(self, *args, **kwargs)
        count[0] += 1
        for f in fault:
            f(self, count[0])
        return pending

    monkeypatch.setattr(Client, "submit", submit)
    yield fault.append


@pytest.fixture
def writes() -> Iterator[list[int]]:
    """The frames Blender writes to the output path, in order (render_write handler)."""
    written: list[int] = []

    @bpy.app.handlers.persistent  # (fresh_scene loads factory settings)
    def on_write(scene: bpy.types.Scene, *_: Any) -> None:
        written.append(scene.frame_current)

    bpy.app.handlers.render_write.append(on_write)
    yield written
    if on_write in bpy.app.handlers.render_write:
        bpy.app.handlers.render_write.remove(on_write)


def _animation(tmp_path: Path) -> bpy.types.Scene:
    scene = fresh_scene(width=64, height=48)
    set_slot(scene, 0, "Everything", "OTHER", STYLE)
    scene.frame_start, scene.frame_end = FRAMES[0], FRAMES[-1]
    scene.render.filepath = str(tmp_path / "anim_")
    return scene


def test_the_io_thread_killed_mid_animation_the_frame_is_sent_again_and_the_animation_goes_on(
    identity_backend: str, after_submit: Any, writes: list[int], tmp_path: Path
) -> None:
    _animation(tmp_path)
    clients: list[Client] = []

    def fault(client: Client, n: int) -> None:
        if client not in clients:
            clients.append(client)
        if n in (2, 5):  # frames 2 and 5: their request is out when the thread dies
            _kill_io_thread(client)

    after_submit(fault)
    bpy.ops.render.render(animation=True)
    assert SESSION.status.ok, SESSION.status.message
    assert SESSION.status.failed_frames == set()
    assert sorted(SESSION.status.stylized_frames) == FRAMES
    assert writes == FRAMES, "every frame written exactly once"
    assert len(clients) == 3, "each dead client was replaced by a new one"
    assert all(not c.healthy for c in clients[:2]) and clients[2].healthy


@pytest.mark.slow
def test_the_backend_sigkilled_mid_animation_is_restarted_and_every_frame_is_stylized_once(
    model_backend: str, after_submit: Any, writes: list[int], tmp_path: Path
) -> None:
    scene = _animation(tmp_path)
    scene.adain.enabled = False
    plain = render_still(scene, tmp_path / "plain.png")
    scene.adain.enabled = True
    scene.render.filepath = str(tmp_path / "anim_")
    writes.clear()  # (the plain still)
    killed: list[int] = []

    def fault(client: Client, n: int) -> None:
        if n in (3, 5):  # during frames 3 and 5: the request is on its way or being computed
            proc = session_backend.backend().process
            assert proc is not None and proc.poll() is None
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(proc.pid)

    after_submit(fault)
    bpy.ops.render.render(animation=True)
    assert len(set(killed)) == 2, "the second kill hit a new backend process"
    assert SESSION.status.ok, SESSION.status.message
    assert SESSION.status.failed_frames == set()
    assert sorted(SESSION.status.stylized_frames) == FRAMES
    assert writes == FRAMES, "every frame written exactly once"
    for f in FRAMES:
        out = read_png(Path(scene.render.frame_path(frame=f)))
        assert np.abs(out - plain).mean() > 5.0, f"frame {f} was written plain"
    proc = session_backend.backend().process
    assert proc is not None and proc.poll() is None and proc.pid not in killed
