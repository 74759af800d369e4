"""The render engine watch (bpy): AdaIN stylizes Cycles renders only, so other engines must not lose the render.

With EEVEE or Workbench, Render Layers has no AdaIN output and the "AdaIN Stylize" node would blend the render
with black. ``compositor.sync_engine`` mutes the node there and unmutes it back on Cycles. It runs:

- when the engine property changes in the UI (a message-bus subscription, renewed after each file load);
- after a file loads (``load_post``), so ``blender -b file.blend -a`` of a file saved with EEVEE is safe;
- at render start in background mode (``render_init``; there the message bus does not run, and in background
  mode the handler runs on the main thread). The panel and the console say why nothing is stylized.
"""

from __future__ import annotations

import sys
from typing import Any

import bpy

from . import compositor
from .session import SESSION

_OWNER = object()  # message-bus subscription owner
ENGINE_NAMES = {"BLENDER_EEVEE_NEXT": "EEVEE", "BLENDER_EEVEE": "EEVEE", "BLENDER_WORKBENCH": "Workbench"}


def engine_message(scene: bpy.types.Scene) -> str:
    """What the user must know when AdaIN is on but the engine is not Cycles ("" otherwise)."""
    st = getattr(scene, "adain", None)
    if st is None or not st.enabled or scene.render.engine == "CYCLES":
        return ""
    engine = ENGINE_NAMES.get(scene.render.engine, scene.render.engine)
    return (f"AdaIN stylizes Cycles renders only; this scene renders with {engine}, so its output is the plain "
            "render. Set the render engine to Cycles to stylize.")  # fmt: skip


def sync_all() -> None:
    for scene in bpy.data.scenes:
        compositor.sync_engine(scene)


def _on_engine_change(*_: Any) -> None:
    sync_all()


def watch() -> None:
    bpy.msgbus.clear_by_owner(_OWNER)
    bpy.msgbus.subscribe_rna(key=(bpy.types.RenderSettings, "engine"), owner=_OWNER, args=(), notify=_on_engine_change)


def unwatch() -> None:
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
    if message:
        SESSION.status.ok, SESSION.status.message = False, message
        print(message, file=sys.stderr, flush=True)
