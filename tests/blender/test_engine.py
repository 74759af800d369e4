"""Other render engines in real Blender: the AdaIN node works inside Cycles only, so with another engine it is muted
(not blended with the missing AdaIN pass, which is black); an engine the after-compositor hook does not know
(``engine_hook.ENGINES``) renders plain, with the reason said. EEVEE and Workbench themselves: test_engines.py."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from tests.blender.scene import fresh_scene, render_still, set_slot

from addon import compositor, engine_hook  # isort: skip  (scene.py put the repository on sys.path)
from addon.session import SESSION  # isort: skip

EEVEE = "BLENDER_EEVEE_NEXT" if bpy.app.version < (5, 0, 0) else "BLENDER_EEVEE"


def _node(scene: bpy.types.Scene) -> bpy.types.Node:
    tree = scene.compositing_node_group if bpy.app.version >= (5, 0, 0) else scene.node_tree
    return tree.nodes[compositor.NODE]


def test_an_unknown_engine_renders_plain_and_says_why(tmp_path: Path) -> None:
    scene = fresh_scene(48, 32)
    set_slot(scene, 0, "All", "OTHER", "style_wesnoth_trow_great_tree.jpg")
    scene.render.engine = EEVEE
    scene.eevee.taa_render_samples = 4
    support = engine_hook.ENGINES.pop(EEVEE)  # as if EEVEE were a third-party engine nobody registered
    try:
        with_node = render_still(scene, tmp_path / "adain_on.png")
    finally:
        engine_hook.ENGINES[EEVEE] = support
    assert _node(scene).mute, "the AdaIN node must be bypassed in a non-Cycles render"
    assert "plain render" in SESSION.status.message and "EEVEE" in SESSION.status.message
    assert not SESSION.status.ok
    compositor.remove(scene)
    scene.adain.enabled = False
    plain = render_still(scene, tmp_path / "plain.png")
    assert float(plain.mean()) > 40  # a lit scene, not black
    assert np.abs(with_node - plain).max() <= 1


def test_back_on_cycles_the_node_works_again_but_a_user_mute_stays() -> None:
    scene = fresh_scene(48, 32)
    scene.render.engine = EEVEE
    assert compositor.sync_engine(scene) is False and _node(scene).mute
    scene.render.engine = "CYCLES"
    assert compositor.sync_engine(scene) is True and not _node(scene).mute
    _node(scene).mute = True  # the user bypasses the node on purpose
    scene.render.engine = EEVEE
    compositor.sync_engine(scene)
    scene.render.engine = "CYCLES"
    assert compositor.sync_engine(scene) is False and _node(scene).mute
    scene.render.engine = EEVEE  # stylized after the compositor (engine_hook): set up keeps it
    assert bpy.ops.adain.setup() == {"FINISHED"} and scene.render.engine == EEVEE
    support = engine_hook.ENGINES.pop(EEVEE)  # an engine AdaIN cannot stylize is switched to Cycles
    try:
        assert bpy.ops.adain.setup() == {"FINISHED"} and scene.render.engine == "CYCLES"
    finally:
        engine_hook.ENGINES[EEVEE] = support


def test_settings_that_hide_the_stylized_frame_are_reported_and_set_up_fixes_them(identity_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=32, height=24)
    set_slot(scene, 0, "Everything", "OTHER", "style_wesnoth_trow_great_tree.jpg")
    render_still(scene, tmp_path / "a.png")
    assert SESSION.status.ok and "warning" not in SESSION.status.message

    scene.render.use_compositing = False
    render_still(scene, tmp_path / "b.png")
    assert SESSION.status.ok and "Compositing is off" in SESSION.status.message
    assert bpy.ops.adain.setup() == {"FINISHED"} and scene.render.use_compositing

    compositor.remove(scene)
    render_still(scene, tmp_path / "c.png")
    assert "not in the compositor" in SESSION.status.message and "Set up AdaIN" in SESSION.status.message
    assert bpy.ops.adain.setup() == {"FINISHED"}

    _node(scene).mute = True  # muted by the user, with Cycles: kept muted, and said
    render_still(scene, tmp_path / "d.png")
    assert "is muted" in SESSION.status.message
    _node(scene).mute = False
    render_still(scene, tmp_path / "e.png")
    assert SESSION.status.ok and "warning" not in SESSION.status.message
