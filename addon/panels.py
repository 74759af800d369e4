"""The AdaIN panel in Render properties (bpy)."""

from __future__ import annotations

import textwrap

import bpy

from . import compositor, engine_watch, restyle
from .session import SESSION


class ADAIN_PT_stylize(bpy.types.Panel):
    bl_label = "AdaIN Stylize"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"

    def draw_header(self, context: bpy.types.Context) -> None:
        self.layout.prop(context.scene.adain, "enabled", text="")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        scene = context.scene
        st = scene.adain
        if st.enabled and (message := engine_watch.engine_message(scene) or " ".join(compositor.output_warnings(scene))):
            box = layout.box()
            for i, line in enumerate(textwrap.wrap(message, 48)):
                box.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
        if scene.render.engine != "CYCLES" or not any(n == "AdaIN Stylize" for n in _node_names(scene)):
            layout.operator("adain.setup", icon="NODE_COMPOSITING")
        col = layout.column()
        col.active = st.enabled
        col.prop(st, "alpha")
        row = col.row()
        row.prop(st, "style_size")
        row.prop(st, "tile")
        col.prop(st, "slot_passes")
        col.prop(st, "temporal")
        for i, slot in enumerate(st.slots):
            box = col.box()
            head = box.row()
            head.prop(slot, "enabled", text="")
            head.prop(slot, "name", text="")
            head.operator("adain.slot_remove", text="", icon="X").index = i
            box.prop(slot, "target")
            if slot.target != "OTHER":
                for j, t in enumerate(slot.targets):
                    r = box.row()
                    if slot.target == "MATERIALS":
                        r.prop(t, "material", text="")
                    else:
                        r.prop(t, "object", text="")
                        r.prop(t, "collection", text="")
                    op = r.operator("adain.item_remove", text="", icon="X")
                    op.index, op.item, op.kind = i, j, "targets"
                op = box.operator("adain.item_add", text="Add target", icon="ADD")
                op.index, op.kind = i, "targets"
            for j, s in enumerate(slot.styles):
                r = box.row()
                r.template_ID(s, "image", open="image.open")
                r.prop(s, "weight", text="")
                op = r.operator("adain.item_remove", text="", icon="X")
                op.index, op.item, op.kind = i, j, "styles"
            r = box.row()
            op = r.operator("adain.item_add", text="Add style", icon="ADD")
            op.index, op.kind = i, "styles"
            r.operator("adain.style_load", text="Load images", icon="FILE_IMAGE").index = i
            r.operator("adain.style_sample", text="Samples", icon="IMAGE_DATA").index = i
            box.prop(slot, "alpha")
            row = box.row()
            row.prop(slot, "preserve_color")
            row.prop(slot, "style_size")
        col.operator("adain.slot_add", icon="ADD")
        status = SESSION.status
        if status.message:
            layout.label(text=status.message, icon="INFO" if status.ok else "ERROR")
        row = layout.row()
        row.operator("adain.restyle", icon="FILE_REFRESH")
        row.label(text=restyle.describe_last())
        row = layout.row()
        row.operator("adain.backend_check", icon="CHECKMARK")
        row.operator("adain.backend_release", icon="TRASH")


def _node_names(scene: bpy.types.Scene) -> list[str]:
    tree = getattr(scene, "compositing_node_group", None) if bpy.app.version >= (5, 0, 0) else scene.node_tree
    return [n.name for n in tree.nodes] if tree is not None else []


CLASSES = (ADAIN_PT_stylize,)
