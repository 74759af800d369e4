"""The render engine watch (bpy): the "AdaIN Stylize" node works inside Cycles renders only.

With EEVEE or Workbench, Render Layers has no AdaIN output and the "AdaIN Stylize" node would blend the render
with black. ``compositor.sync_engine`` mutes the node there and unmutes it back on Cycles; those engines' frames
are stylized after the compositor instead (``engine_hook``, whose handlers ``watch`` installs). It runs:

- when the engine property changes in the UI (a message-bus subscription, renewed after each file load);
- after a file loads (``load_post``), so ``blender -b file.blend -a`` of a file saved with EEVEE is safe;
- at render start in background mode (``render_init``; there the message bus does not run, and in background
  mode the handler runs on the main thread). The panel and the console say why nothing is stylized.
"""

from __future__ import annotations

import sys
from typing import Any

import bpy

from . import compositor, engine_hook
from .session import SESSION

_OWNER = object()  # message-bus subscription owner
ENGINE_NAMES = {"BLENDER_EEVEE_NEXT": "EEVEE", "BLENDER_EEVEE": "EEVEE", "BLENDER_WORKBENCH": "Workbench"}


def engine_message(scene: bpy.types.Scene) -> str:
    """What the user must know when AdaIN is on but the engine is not Cycles ("" otherwise)."""
    st = getattr(scene, "adain", None)
    if st is None or not st.enabled or scene.render.engine == "CYCLES":
        return ""
    support = engine_hook.ENGINES.get(scene.render.engine)
    if support is None:
        engine = ENGINE_NAMES.get(scene.render.engine, scene.render.engine)
        return (f"AdaIN stylizes Cycles, EEVEE and Workbench renders; this scene renders with {engine}, so its output "
                "is the plain render.")  # fmt: skip
    result = f"F12 shows it in the image '{engine_hook.RESULT_IMAGE}'."
    if movie := engine_hook.movie_note(scene):  # said first: it is what the user must change
        msg = (f"{movie[0].upper()}{movie[1:]}. With {support.label}, AdaIN stylizes the frame after the compositor "
               f"(nodes after AdaIN's see the plain render); {result}")  # fmt: skip
    else:
        msg = (f"With {support.label}, AdaIN stylizes the frame after the compositor (nodes after AdaIN's see the plain "
               f"render) and rewrites the output file; {result}")  # fmt: skip
    if not support.cryptomatte:
        msg += f" {support.label} has no Cryptomatte: the first enabled slot styles the whole frame."
    if not support.vector and st.temporal > 0:
        msg += f" No temporal smoothing with {support.label} (no Vector pass)."
    return msg


def engine_supported(scene: bpy.types.Scene) -> bool:
    """Whether this scene's renders are stylized (Cycles, or an engine the hook knows)."""
    return scene.render.engine == "CYCLES" or scene.render.engine in engine_hook.ENGINES


def sync_all() -> None:
    for scene in bpy.data.scenes:
        compositor.sync_engine(scene)


def _on_engine_change(*_: Any) -> None:
    sync_all()


def watch() -> None:
    engine_hook.install()
    bpy.msgbus.clear_by_owner(_OWNER)
    bpy.msgbus.subscribe_rna(key=(bpy.types.RenderSettings, "engine"), owner=_OWNER, args=(), notify=_on_engine_change)


def unwatch() -> None:
    engine_hook.uninstall()
    bpy.msgbus.clear_by_owner(_OWNER)


@bpy.app.handlers.persistent
def on_load_post(*_: Any) -> None:
    watch()  # file loads clear message-bus subscriptions
    sync_all()


@bpy.app.handlers.persistent
def on_render_init(scene: bpy.types.Scene, *_: Any) -> None:
    if bpy.app.background:
        compositor.sync_engine(scene)
    message = engine_message(scene)
    if message and not SESSION.seeding:  # (said once for the job, not again for each seed frame)
        if not engine_supported(scene):
            SESSION.status.ok = False
        SESSION.status.message = message
        print(message, file=sys.stderr, flush=True)
