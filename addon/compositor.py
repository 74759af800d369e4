"""The "AdaIN Stylize" compositor node group and its place between Render Layers and the output (bpy).

Blender 4.5 composites through ``scene.node_tree`` (``use_nodes``) ending in a Composite node; 5.0 through
``scene.compositing_node_group`` ending in the group's output node. Both get the same group:

    Render Layers.Image ──► [AdaIN Stylize: Image, Stylized, Factor] ──► (whatever Image fed before)
    Render Layers.AdaIN ──►

``Factor`` (0: the plain render, 1: the stylized frame) is keyframable; per-slot passes are Render Layers
sockets "AdaIN <slot>". Nodes the user adds after the group keep working.
"""

from __future__ import annotations

from typing import Any

import bpy

from .render_maths import PASS

GROUP = "AdaIN Stylize"
NODE = "AdaIN Stylize"


def _new_5x() -> bool:
    return bpy.app.version >= (5, 0, 0)


def _mix_node(tree: Any) -> tuple[Any, Any, Any, Any, Any]:
    """A colour mix node: (node, factor input, A input, B input, output), whichever kind this Blender has."""
    try:
        n = tree.nodes.new("CompositorNodeMixRGB")
        return n, n.inputs[0], n.inputs[1], n.inputs[2], n.outputs[0]
    except RuntimeError:
        n = tree.nodes.new("ShaderNodeMix")
        n.data_type = "RGBA"
        ins = [s for s in n.inputs if s.enabled]
        fac = next(s for s in ins if s.type == "VALUE")
        a, b = [s for s in ins if s.type == "RGBA"][:2]
        out = next(s for s in n.outputs if s.enabled and s.type == "RGBA")
        return n, fac, a, b, out


def node_group() -> bpy.types.NodeTree:
    """The shared group, created on first use."""
    group = bpy.data.node_groups.get(GROUP)
    if group is not None:
        return group
    group = bpy.data.node_groups.new(GROUP, "CompositorNodeTree")
    iface = group.interface
    iface.new_socket("Image", in_out="INPUT", socket_type="NodeSocketColor")
    iface.new_socket("Stylized", in_out="INPUT", socket_type="NodeSocketColor")
    fac = iface.new_socket("Factor", in_out="INPUT", socket_type="NodeSocketFloat")
    fac.default_value, fac.min_value, fac.max_value = 1.0, 0.0, 1.0
    iface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    gin = group.nodes.new("NodeGroupInput")
    gout = group.nodes.new("NodeGroupOutput")
    mix, f, a, b, out = _mix_node(group)
    gin.location, mix.location, gout.location = (-300, 0), (0, 0), (250, 0)
    group.links.new(gin.outputs["Factor"], f)
    group.links.new(gin.outputs["Image"], a)
    group.links.new(gin.outputs["Stylized"], b)
    group.links.new(out, gout.inputs["Image"])
    return group


def scene_tree(scene: bpy.types.Scene) -> bpy.types.NodeTree:
    """The scene's compositing tree (created with Render Layers -> output if there is none)."""
    if _new_5x():
        tree = scene.compositing_node_group
        if tree is None:
            tree = bpy.data.node_groups.new(f"{scene.name} Compositing", "CompositorNodeTree")
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
            scene.compositing_node_group = tree
            rl = tree.nodes.new("CompositorNodeRLayers")
            out = tree.nodes.new("NodeGroupOutput")
            out.location = (400, 0)
            tree.links.new(rl.outputs["Image"], out.inputs[0])
        return tree
    scene.use_nodes = True
    tree = scene.node_tree
    if not any(n.bl_idname == "CompositorNodeComposite" for n in tree.nodes):
        rl = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"), None) or tree.nodes.new(
            "CompositorNodeRLayers"
        )
        comp = tree.nodes.new("CompositorNodeComposite")
        comp.location = (400, 0)
        tree.links.new(rl.outputs["Image"], comp.inputs["Image"])
    return tree


def install(scene: bpy.types.Scene) -> bpy.types.Node:
    """Put the group node after the scene's Render Layers node (idempotent); returns the group node."""
    scene.render.use_compositing = True
    tree = scene_tree(scene)
    node = tree.nodes.get(NODE)
    if node is not None:
        return node
    rl = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"), None)
    if rl is None:
        rl = tree.nodes.new("CompositorNodeRLayers")
        rl.scene = scene
    for vl in scene.view_layers:
        vl.update_render_passes()
    if PASS not in rl.outputs:
        raise RuntimeError(
            f"the Render Layers node has no {PASS!r} output: set the render engine to Cycles (AdaIN stylizes Cycles renders)"
        )
    node = tree.nodes.new("CompositorNodeGroup")
    node.node_tree = node_group()
    node.name = node.label = NODE
    node.location = (rl.location.x + 300, rl.location.y)
    image_out = rl.outputs["Image"]
    for link in [lk for lk in tree.links if lk.from_socket == image_out]:
        to = link.to_socket
        tree.links.remove(link)
        tree.links.new(node.outputs["Image"], to)
    tree.links.new(image_out, node.inputs["Image"])
    tree.links.new(rl.outputs[PASS], node.inputs["Stylized"])
    return node


def output_warnings(scene: bpy.types.Scene) -> list[str]:
    """Why the render's output would not show the stylized frame although AdaIN runs (the AdaIN pass itself is
    still written, e.g. into multilayer EXR files)."""
    if not scene.render.use_compositing:
        return ["Compositing is off (Output properties > Post Processing), so the output is the plain render: turn it "
                "on to see the stylized frame"]  # fmt: skip
    if not _new_5x() and not scene.use_nodes:
        return ["the compositor's nodes are off (Compositor > Use Nodes), so the output is the plain render: "
                "press 'Set up AdaIN'"]  # fmt: skip
    tree = scene.compositing_node_group if _new_5x() else scene.node_tree
    node = tree.nodes.get(NODE) if tree is not None else None
    if node is None:
        return ["the 'AdaIN Stylize' node is not in the compositor, so the output is the plain render: press 'Set up AdaIN'"]
    if node.mute and scene.render.engine == "CYCLES":
        return ["the 'AdaIN Stylize' node is muted in the compositor, so the output is the plain render"]
    return []


def remove(scene: bpy.types.Scene) -> None:
    """Take the group node out again, reconnecting Render Layers.Image to what it fed."""
    tree = scene.compositing_node_group if _new_5x() else scene.node_tree
    if tree is None:
        return
    node = tree.nodes.get(NODE)
    if node is None:
        return
    src = next((lk.from_socket for lk in tree.links if lk.to_socket == node.inputs["Image"]), None)
    targets = [lk.to_socket for lk in tree.links if lk.from_socket == node.outputs["Image"]]
    tree.nodes.remove(node)
    if src is not None:
        for to in targets:
            tree.links.new(src, to)


AUTO_MUTED = "adain_auto_muted"  # custom property on the group node: the add-on muted it (not the user)


def sync_engine(scene: bpy.types.Scene) -> bool:
    """Keep the group node in step with the render engine; True where it stylizes.

    Only Cycles renders get the AdaIN pass. With any other engine (EEVEE, Workbench) the node's Stylized input has
    no source and would blend the render with black, so the node is muted (it then passes Image through) and marked
    as muted by the add-on; back on Cycles, a node the add-on muted is unmuted. A node the user muted stays muted.
    """
    tree = scene.compositing_node_group if _new_5x() else scene.node_tree
    node = tree.nodes.get(NODE) if tree is not None else None
    if node is None:
        return False
    cycles = scene.render.engine == "CYCLES"
    if not cycles and not node.mute:
        node.mute = True
        node[AUTO_MUTED] = True
    elif cycles and node.mute and node.get(AUTO_MUTED):
        node.mute = False
        del node[AUTO_MUTED]
    return cycles and not node.mute
