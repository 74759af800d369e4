"""The AdaIN panel's draw code against real Blender's RNA.

Background Blender has no window, so panels are never drawn and a typo in a property name, an operator id, an
operator property or an icon would only show as a broken panel in the UI. ``Layout`` below stands in for
Blender's ``UILayout`` (which Python cannot create) and checks every call the way Blender would: properties
against the data's RNA, operators against the registered operators and their properties, icons against
Blender's icon list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
import pytest

from tests.blender.scene import fresh_scene, render_still, set_slot
from tests.blender.test_render import STYLE_WARM

from addon import panels, properties  # isort: skip  (scene.py put the repository on sys.path)
from addon.session import SESSION  # isort: skip

ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())


def _check_icon(icon: str) -> None:
    assert icon in ICONS, f"Blender has no icon {icon!r}"


class _OperatorProps:
    """What ``layout.operator`` returns: setting a property Blender's operator lacks is an error there too."""

    def __init__(self, idname: str, rna: Any) -> None:
        object.__setattr__(self, "_idname", idname)
        object.__setattr__(self, "_names", {p.identifier for p in rna.properties})

    def __setattr__(self, name: str, value: Any) -> None:
        assert name in self._names, f"operator {self._idname} has no property {name!r}"


class Layout:
    def __init__(self, calls: list[tuple[str, str]]) -> None:
        self.calls = calls
        self.active = True
        self.enabled = True
        self.alert = False

    def _sub(self, **_: Any) -> Layout:
        return Layout(self.calls)

    row = column = box = split = _sub

    def prop(self, data: Any, name: str, text: str = "", icon: str = "NONE", **_: Any) -> None:
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        _check_icon(icon)
        self.calls.append(("prop", name))

    def template_ID(self, data: Any, name: str, **_: Any) -> None:  # noqa: N802  (Blender's name)
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self.calls.append(("template_ID", name))

    def operator(self, idname: str, text: str = "", icon: str = "NONE", **_: Any) -> _OperatorProps:
        module, name = idname.split(".")
        op = getattr(getattr(bpy.ops, module), name)
        rna = op.get_rna_type()  # raises KeyError for an operator that is not registered
        _check_icon(icon)
        self.calls.append(("operator", idname))
        return _OperatorProps(idname, rna)

    def label(self, text: str = "", icon: str = "NONE", **_: Any) -> None:
        _check_icon(icon)
        self.calls.append(("label", text))


class _Panel:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.layout = Layout(self.calls)


def _draw() -> list[tuple[str, str]]:
    panel = _Panel()
    panels.ADAIN_PT_stylize.draw_header(panel, bpy.context)  # type: ignore[arg-type]
    panels.ADAIN_PT_stylize.draw(panel, bpy.context)  # type: ignore[arg-type]
    return panel.calls


def test_the_layout_stand_in_refuses_what_blender_refuses() -> None:
    scene = fresh_scene(width=32, height=24)  # the add-on registered
    layout = Layout([])
    with pytest.raises(AssertionError, match="no property"):
        layout.prop(scene.render, "no_such_setting")
    with pytest.raises(KeyError):
        layout.operator("adain.no_such_operator")
    with pytest.raises(AssertionError, match="no icon"):
        layout.label(text="x", icon="NO_SUCH_ICON")
    with pytest.raises(AssertionError, match="has no property 'nope'"):
        layout.operator("adain.slot_remove").nope = 1  # type: ignore[attr-defined]


def test_panel_draws_in_every_state(identity_backend: str, tmp_path: Path) -> None:
    scene = fresh_scene(width=32, height=24)
    SESSION.status.message = ""
    calls = _draw()
    assert ("prop", "temporal") in calls and ("operator", "adain.restyle") in calls
    set_slot(scene, 0, "Warm", "MATERIALS", STYLE_WARM, ("Red",))
    set_slot(scene, 1, "Cube", "OBJECTS", STYLE_WARM, ("Cube",))
    scene.adain.slots.add().name = "Rest"  # an "everything else" slot without style
    calls = _draw()
    assert ("prop", "material") in calls and ("prop", "object") in calls and ("template_ID", "image") in calls
    scene.adain.slots[2].enabled = False
    render_still(scene, tmp_path / "out.png")
    calls = _draw()
    assert any(kind == "label" and "stylized" in text for kind, text in calls)
    assert any(kind == "label" and "Last render" in text for kind, text in calls)
    scene.render.use_compositing = False  # said before any render
    assert any(kind == "label" and "Compositing is off" in text for kind, text in _draw())
    scene.render.use_compositing = True
    scene.render.engine = "BLENDER_WORKBENCH"  # the engine warning and the Set up button
    calls = _draw()
    assert ("operator", "adain.setup") in calls


@pytest.mark.parametrize("mode", ["LOCAL", "REMOTE"])
def test_preferences_draw_in_both_modes(mode: str) -> None:
    fresh_scene(width=32, height=24)  # the add-on registered

    class Prefs:  # the preferences' values, with the real class's RNA (Python cannot create AddonPreferences)
        bl_rna = properties.ADAIN_AddonPreferences.bl_rna
        endpoint, command, device = "tcp://127.0.0.1:5555", "python3 -m backend", "auto"
        server_public_key = client_secret_key = ""

    prefs = Prefs()
    prefs.mode = mode  # type: ignore[attr-defined]
    prefs.layout = Layout(calls := [])  # type: ignore[attr-defined]
    properties.ADAIN_AddonPreferences.draw(prefs, bpy.context)  # type: ignore[arg-type]
    shown = {name for kind, name in calls if kind == "prop"}
    assert shown == ({"mode", "endpoint", "command", "device"} if mode == "LOCAL" else
                     {"mode", "endpoint", "server_public_key", "client_secret_key"})  # fmt: skip
    assert ("operator", "adain.backend_check") in calls
