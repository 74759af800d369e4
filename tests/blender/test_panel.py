"""The AdaIN panel's draw code against real Blender's RNA.

Background Blender has no window, so panels are never drawn and a typo in a property name, an operator id, an
operator property or an icon would only show as a broken panel in the UI. ``Layout`` below stands in for
Blender's ``UILayout`` (which Python cannot create) and checks every call the way Blender would: properties
against the data's RNA, operators against the registered operators and their properties, icons against
Blender's icon list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bpy
import pytest

from tests.blender.scene import fresh_scene, movie_output, render_still, set_slot
from tests.blender.test_render import STYLE_WARM

from addon import panels, properties  # isort: skip  (scene.py put the repository on sys.path)
from addon.session import SESSION  # isort: skip

EEVEE = "BLENDER_EEVEE_NEXT" if bpy.app.version < (5, 0, 0) else "BLENDER_EEVEE"
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

    def separator(self, **_: Any) -> None:
        self.calls.append(("separator", ""))

    def progress(self, factor: float = 0.0, type: str = "BAR", text: str = "", **_: Any) -> None:
        assert 0.0 <= factor <= 1.0 and type in ("BAR", "RING"), (factor, type)
        self.calls.append(("progress", text))


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


def test_panel_says_a_movie_stays_plain_with_eevee_and_workbench() -> None:
    scene = fresh_scene(width=32, height=24)
    SESSION.status.message = ""

    def said() -> str:
        return " ".join(text for kind, text in _draw() if kind == "label")

    movie_output(scene, True)
    assert scene.render.is_movie_format
    assert "movie" not in said(), "Cycles stylizes movies: nothing to say"
    for engine, label in ((EEVEE, "EEVEE"), ("BLENDER_WORKBENCH", "Workbench")):
        scene.render.engine = engine
        text = said()
        assert text.startswith(f"The movie output stays plain with {label}") and "image sequence" in text, text
        assert "rewrites the output file" not in text
    movie_output(scene, False)
    text = said()
    assert "movie" not in text and "rewrites the output file" in text, text


class _Prefs:  # the preferences' values, with the real class's RNA (Python cannot create AddonPreferences)
    def __init__(self, mode: str, show_advanced: bool = False, command: str = "") -> None:
        self.bl_rna = properties.ADAIN_AddonPreferences.bl_rna
        self.endpoint, self.command, self.device, self.python = "tcp://127.0.0.1:5555", command, "auto", ""
        self.server_public_key = self.client_secret_key = ""
        self.mode, self.show_advanced = mode, show_advanced
        self.layout = Layout([])

    def draw(self) -> list[tuple[str, str]]:
        properties.ADAIN_AddonPreferences.draw(self, bpy.context)  # type: ignore[arg-type]
        return self.layout.calls


@pytest.mark.parametrize("mode", ["LOCAL", "REMOTE"])
def test_preferences_draw_in_both_modes(mode: str) -> None:
    fresh_scene(width=32, height=24)  # the add-on registered
    calls = _Prefs(mode).draw()
    shown = {name for kind, name in calls if kind == "prop"}
    assert shown == ({"mode", "device", "show_advanced"} if mode == "LOCAL" else
                     {"mode", "endpoint", "server_public_key", "client_secret_key"})  # fmt: skip
    assert ("operator", "adain.backend_check") in calls
    if mode == "LOCAL":  # the expert's settings, under Advanced
        advanced = {name for kind, name in _Prefs(mode, show_advanced=True).draw() if kind == "prop"}
        assert advanced == {"mode", "device", "show_advanced", "command", "python", "endpoint"}


def test_preferences_show_the_install_in_every_state(tmp_path: Path) -> None:
    """Not installed (Install Backend), installing (the progress bar), installed (what, Reinstall, Remove), and how
    the last install ended."""
    from addon import backend_install, install_state
    from addon.install_run import Install

    fresh_scene(width=32, height=24)
    root = properties.install_root(create=True)
    backend_install.remove(root)
    calls = _Prefs("LOCAL").draw()
    assert ("operator", "adain.backend_install") in calls
    assert any(kind == "label" and text.startswith("No backend installed") for kind, text in calls)

    install = Install(root, tmp_path / "b.whl", "python", backend_install.TorchChoice("torch", (), "cpu", "test"))
    install.progress.step, install.progress.label, install.progress.detail = 2, "Installing torch", "Downloading torch"
    install_state.STATE.install = install
    try:
        calls = _Prefs("LOCAL").draw()
    finally:
        install_state.STATE.install = None
    assert ("progress", "2/4 Installing torch: Downloading torch") in calls
    assert ("operator", "adain.backend_install") not in calls

    env = root / backend_install.ENV_DIR
    backend_install.env_python(env).parent.mkdir(parents=True)
    backend_install.env_python(env).write_text("")
    info = {"torch": "2.13.0+cpu", "backend": "0.1.0+0123abcd", "device": "cpu", "size_bytes": 9e8}
    (env / backend_install.INFO_NAME).write_text(json.dumps(info))
    (root / backend_install.LOG_NAME).write_text("log")
    install_state.STATE.message, install_state.STATE.failed = "Backend install failed: no network: ...", True
    try:
        calls = _Prefs("LOCAL", command="/opt/py -m backend").draw()
    finally:
        install_state.STATE.message, install_state.STATE.failed = "", False
        backend_install.remove(root)
    texts = [text for kind, text in calls if kind == "label"]
    assert "Backend installed: torch 2.13.0+cpu, backend 0.1.0+0123abcd, on cpu; 0.9 GB" in texts
    assert ("operator", "adain.backend_remove") in calls and ("operator", "wm.path_open") in calls
    assert any(t.startswith("Backend install failed: no network") for t in texts)
    assert any("command under Advanced is used instead" in t for t in texts)


def test_image_menu_entries() -> None:
    from addon import image_operators

    fresh_scene(width=32, height=24)
    menu = _Panel()
    image_operators.image_menu(menu, bpy.context)
    assert menu.calls.count(("operator", "adain.stylize_image")) == 2
    assert menu.layout.operator_context == "INVOKE_DEFAULT"  # type: ignore[attr-defined]
    assert image_operators.image_menu in bpy.types.IMAGE_MT_image._dyn_ui_initialize()
