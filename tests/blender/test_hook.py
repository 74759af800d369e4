"""The Cycles hook is chain-safe (bpy): another add-on's wrapper installed after ours survives our uninstall.

Real Blender, real Cycles renders (tiny), a backend address where nothing answers: with AdaIN on, a frame fails
with "no AdaIN backend" exactly when our wrapper is active, which tells whether it ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.blender.scene import fresh_scene, render_still, set_slot
from tests.blender.test_render import STYLE_WARM

from addon import render  # isort: skip  (scene.py put the repository on sys.path)
from addon.session import SESSION  # isort: skip


@pytest.fixture
def cycles_class() -> Iterator[Any]:
    """Cycles' engine class; whatever a test leaves on it, our wrappers are back on top afterwards."""
    import cycles

    cls = cycles.CyclesRender
    render.uninstall()
    cycles_own = {name: getattr(cls, name) for name in render.METHODS}
    render.install()
    yield cls
    for name, fn in cycles_own.items():  # as if the add-on had never wrapped them
        setattr(cls, name, fn)
    render._hook.originals.clear()
    render.install()


def test_uninstall_keeps_a_later_wrapper_and_ours_passes_through_until_installed_again(
    dead_backend: str, cycles_class: Any, tmp_path: Path
) -> None:
    scene = fresh_scene(width=32, height=24, samples=1)
    set_slot(scene, 0, "Everything", "OTHER", STYLE_WARM)
    assert render.installed() and cycles_class.render_frame_finish is render._WRAPPERS["render_frame_finish"]

    ours = cycles_class.render_frame_finish
    calls: list[str] = []

    def theirs(self: Any) -> None:  # another add-on, wrapping after us
        calls.append("theirs")
        ours(self)

    cycles_class.render_frame_finish = theirs
    render.uninstall()
    assert not render.installed()
    assert cycles_class.render_frame_finish is theirs  # not dropped
    assert cycles_class.render is not render._WRAPPERS["render"]  # where ours was outermost, Cycles' own is back
    render_still(scene, tmp_path / "plain.png")  # AdaIN is on in the scene, but the hook is off: a plain render
    assert calls == ["theirs"]

    render.install()
    assert render.installed() and cycles_class.render_frame_finish is theirs  # ours runs again inside their chain
    assert cycles_class.render is render._WRAPPERS["render"]
    with pytest.raises(RuntimeError, match="no AdaIN backend"):
        render_still(scene, tmp_path / "stylized.png")
    assert calls == ["theirs", "theirs"] and "no AdaIN backend" in SESSION.status.message


def test_install_twice_wraps_once(cycles_class: Any) -> None:
    fresh_scene(width=32, height=24, samples=1)
    render.install()
    render.install()
    for name in render.METHODS:
        assert getattr(cycles_class, name) is render._WRAPPERS[name]
    render.uninstall()
    for name in render.METHODS:
        assert getattr(cycles_class, name) is not render._WRAPPERS[name]
