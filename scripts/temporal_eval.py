"""How steady stylized animations are: the warping error of the plain render, per-frame stylization and smoothing.

    .venv-bpy45/bin/python scripts/temporal_eval.py --blend FILE --strength 0.5 [--frames 1-24] [--json OUT] [--out DIR]
    .venv-bpy45/bin/python scripts/temporal_eval.py --make-scene out/temporal/scene.blend   # the docs' test scene

It renders the file's animation three ways, with the add-on, as ``blender -b FILE -s A -e B -a`` would. The
backend comes from the same environment variables as there (ADAIN_BACKEND, ADAIN_BACKEND_COMMAND); without them
it starts one with ``--backend-python``. The three ways:

- the plain render (AdaIN off);
- stylized per frame (smoothing off);
- stylized with smoothing at ``--strength`` (a farm job's seeding included).

For each it computes the warping error (``scripts/warp_error.py``: Lai et al. 2018, along Blender's own Vector
pass, with a non-occlusion mask from the render's forward and backward motion). It prints one line,
``warp error: plain P, per-frame F, smoothed S (S/F = r)``, plus the lag of the smoothed frames after the largest
sudden change. It writes ``{"plain": P, "per_frame": F, "smoothed": S, "ratio": r, "frames": n, ...}`` to
``--json``, and to ``--out`` a strip of frames (rows: plain, per-frame, smoothed) and the three renders' frames.

The frames are read inside the render hook, as the "AdaIN" pass leaves it (display-referred: what the network saw
and answered). The file is rendered as it is, with its own settings; the Vector pass is turned on where it is off,
and motion blur must be off.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from blender_user import remove_private_user_folders, use_private_user_folder  # noqa: E402

MODES = ("plain", "per_frame", "smoothed")


def make_scene(path: Path, frames: int = 24, width: int = 160, height: int = 90) -> None:
    """A small scene for the figures: a textured floor and wall, a cube that slides across, a camera that pans and
    dollies; one style slot over everything, its alpha keyed 0.3 -> 1.0 at the middle frame (a sudden change)."""
    import bpy

    import addon
    from addon import render

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon.register()
    render.install()  # (factory settings may have re-registered Cycles' classes)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", 16, False
    scene.cycles.use_animated_seed = True
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.frame_start, scene.frame_end = 1, frames

    def material(name: str, scale: float, a: tuple[float, ...], b: tuple[float, ...]) -> bpy.types.Material:
        m = bpy.data.materials.new(name)
        m.use_nodes = True
        nodes, links = m.node_tree.nodes, m.node_tree.links
        checker = nodes.new("ShaderNodeTexChecker")
        checker.inputs["Scale"].default_value = scale
        checker.inputs["Color1"].default_value, checker.inputs["Color2"].default_value = (*a, 1.0), (*b, 1.0)
        links.new(checker.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
        return m

    bpy.ops.mesh.primitive_plane_add(size=30, location=(0, 0, -1))
    bpy.context.object.data.materials.append(material("Floor", 12, (0.5, 0.45, 0.4), (0.15, 0.2, 0.3)))
    bpy.ops.mesh.primitive_plane_add(size=30, location=(0, 6, 5), rotation=(1.5708, 0, 0))
    bpy.context.object.data.materials.append(material("Wall", 20, (0.7, 0.6, 0.3), (0.3, 0.35, 0.5)))
    bpy.ops.mesh.primitive_cube_add(size=1.6, location=(-3, 0, 0))
    cube = bpy.context.object
    cube.data.materials.append(material("Cube", 4, (0.8, 0.2, 0.1), (0.9, 0.8, 0.7)))
    for frame, x in ((1, -3.0), (frames, 3.0)):
        cube.location.x = x
        cube.keyframe_insert("location", index=0, frame=frame)
    bpy.ops.object.light_add(type="SUN", location=(0, 0, 5))
    bpy.context.object.data.energy = 3.0
    bpy.ops.object.camera_add(location=(-1.0, -9.0, 1.0), rotation=(1.45, 0, 0))
    camera = scene.camera = bpy.context.object
    for frame, x, y in ((1, -1.0, -9.0), (frames, 1.0, -8.0)):
        camera.location.x, camera.location.y = x, y
        camera.keyframe_insert("location", frame=frame)
    bpy.ops.adain.setup()  # AdaIN on: Cryptomatte, the node group, a first slot "Everything" with a sample style
    slot = scene.adain.slots[0]
    slot.styles[0].image = bpy.data.images.load(str(REPO / "adain" / "data" / "samples" / "style_wesnoth_painted_mountains.jpg"))
    for frame, alpha in ((frames // 2 - 1, 0.3), (frames // 2, 1.0)):
        slot.alpha = alpha
        slot.keyframe_insert("alpha", frame=frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    print(f"wrote {path}: {frames} frames at {width}x{height}")


class Tap:
    """Reads each frame's passes inside the render hook, after the add-on wrote "AdaIN"."""

    def __init__(self) -> None:
        self.frames: dict[int, np.ndarray] = {}
        self.vectors: dict[int, np.ndarray] = {}

    def install(self) -> None:
        from addon import colour, render
        from addon.render_result import _pass_array
        from addon.session import SESSION

        original = render.process_result

        def tapped(engine: Any, snap: Any) -> None:
            original(engine, snap)
            if SESSION.seeding:
                return
            result = engine.get_result()
            layer = result.layers[0]
            w, h = result.resolution_x, result.resolution_y
            shown = _pass_array(layer, "AdaIN", w, h)
            vector = _pass_array(layer, "Vector", w, h)
            if shown is None or vector is None:
                raise RuntimeError("the render has no AdaIN or Vector pass")
            self.frames[snap.frame] = np.ascontiguousarray(colour.to_display(snap.view, shown)[::-1, :, :3])
            self.vectors[snap.frame] = vector

        render.process_result = tapped


def render_mode(mode: str, blend: Path, first: int, last: int, strength: float, out: Path, tap: Tap) -> None:
    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    if scene.render.use_motion_blur:
        raise SystemExit("turn Motion Blur off: Cycles writes no motion vectors with it, and the error needs them")
    for vl in scene.view_layers:
        vl.use_pass_vector = True
    scene.frame_start, scene.frame_end = first, last
    st = scene.adain
    st.enabled = mode != "plain"
    st.temporal = strength if mode == "smoothed" else 0.0
    scene.render.filepath = str(out / mode / "f_")
    scene.render.image_settings.file_format = "PNG"
    argv = sys.argv
    sys.argv = ["blender", "-b", str(blend), "-s", str(first), "-e", str(last), "-a"]  # what the add-on sees there
    try:
        tap.frames.clear()
        bpy.ops.render.render(animation=True)
    finally:
        sys.argv = argv


def keyed_change(blend: Path, first: int, last: int) -> int | None:
    """The frame (first+1 .. last) where the slots' keyed alphas and style weights change most, if by 0.1 or more."""
    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene

    def state() -> list[float]:
        return [v for slot in scene.adain.slots for v in (slot.alpha, *(s.weight for s in slot.styles))]

    best, where = 0.0, None
    scene.frame_set(first)
    before = state()
    for f in range(first + 1, last + 1):
        scene.frame_set(f)
        now = state()
        step = sum(abs(a - b) for a, b in zip(now, before, strict=True))
        if step > best:
            best, where = step, f
        before = now
    return where if best >= 0.1 else None


def strip(runs: dict[str, list[np.ndarray]], count: int = 5) -> np.ndarray:
    """Rows plain / per-frame / smoothed, ``count`` frames spread over the range, 2-pixel white gaps."""
    n = len(runs["plain"])
    picks = sorted({round(i * (n - 1) / max(1, count - 1)) for i in range(count)})
    h, w = runs["plain"][0].shape[:2]
    sheet = np.ones((3 * h + 4, len(picks) * w + 2 * (len(picks) - 1), 3), np.float32)
    for r, mode in enumerate(MODES):
        for c, i in enumerate(picks):
            sheet[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = runs[mode][i]
    return sheet


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blend", type=Path, help="the .blend whose animation to render")
    p.add_argument("--strength", type=float, default=0.5, help="the smoothing strength of the third run (0..0.9)")
    p.add_argument("--frames", help="A-B (default: the file's frame range)")
    p.add_argument("--json", type=Path)
    p.add_argument("--out", type=Path, help="folder for the strip and the three runs' frames")
    p.add_argument("--make-scene", type=Path, help="write the docs' test scene to this .blend and stop")
    p.add_argument("--backend-python", default=os.environ.get("ADAIN_BACKEND_PYTHON", str(REPO / ".venv" / "bin" / "python")))
    args = p.parse_args(argv)
    if not os.environ.get("ADAIN_BACKEND") and not os.environ.get("ADAIN_BACKEND_COMMAND"):
        os.environ["ADAIN_BACKEND"] = "tcp://127.0.0.1:5588"
        os.environ["ADAIN_BACKEND_COMMAND"] = f"{shlex.quote(args.backend_python)} -m backend --device cpu"
    use_private_user_folder()
    try:
        import bpy
    except ImportError:
        p.error("needs bpy (Blender as a Python module): run with .venv-bpy45/bin/python after scripts/setup_blender.sh")
    import addon
    from addon import session_backend
    from addon.session import SESSION

    if args.make_scene:
        make_scene(args.make_scene)
        return 0
    if args.blend is None or not args.blend.is_file():
        p.error(f"--blend {args.blend}: no such file")
    if not 0.0 < args.strength < 1.0:
        p.error("--strength must be within (0, 1)")
    import warp_error

    addon.register()
    tap = Tap()
    tap.install()
    out = args.out or Path(os.environ.get("TMPDIR", "/tmp")) / "adain-temporal-eval"
    runs: dict[str, list[np.ndarray]] = {}
    vectors: list[np.ndarray] = []
    try:
        bpy.ops.wm.open_mainfile(filepath=str(args.blend))
        scene = bpy.context.scene
        first, last = scene.frame_start, scene.frame_end
        if args.frames:
            try:
                first, last = (int(v) for v in args.frames.split("-"))
            except ValueError:
                p.error(f"--frames {args.frames!r}: use A-B, e.g. 1-24")
            if last <= first:
                p.error(f"--frames {args.frames!r}: the warping error needs at least two frames")
        for mode in MODES:
            print(f"rendering {mode}: frames {first}-{last}", file=sys.stderr, flush=True)
            render_mode(mode, args.blend, first, last, args.strength, out, tap)
            if not SESSION.status.ok:
                raise SystemExit(f"{mode}: {SESSION.status.message}")
            frames = list(range(first, last + 1))
            if sorted(tap.frames) != frames:
                raise SystemExit(f"{mode}: frames {sorted(tap.frames)} were read, expected {frames}")
            runs[mode] = [tap.frames[f] for f in frames]
            vectors = vectors or [tap.vectors[f] for f in frames]
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        session_backend.shutdown()
    errors = {mode: warp_error.warping_error(runs[mode], vectors) for mode in MODES}
    ratio = errors["smoothed"] / max(errors["per_frame"], 1e-12)
    change = keyed_change(args.blend, first, last)
    lag = warp_error.lag(runs["per_frame"], runs["smoothed"], vectors, None if change is None else change - first)
    print(f"warp error: plain {errors['plain']:.5f}, per-frame {errors['per_frame']:.5f}, smoothed {errors['smoothed']:.5f} "
          f"(S/F = {ratio:.2f})")  # fmt: skip
    on_uncovered, elsewhere = warp_error.trail(runs["per_frame"], runs["smoothed"], vectors)
    print(f"trail: smoothed vs per-frame where something was uncovered {on_uncovered * 255:.2f} levels, elsewhere "
          f"{elsewhere * 255:.2f}")  # fmt: skip
    if lag.frame is None:
        print("lag: no keyed alpha or style change, and no sudden change in the per-frame output, to measure it on")
    else:
        print(f"lag: after the change at frame {first + lag.frame}, the smoothed frames trailed the per-frame ones by up to "
              f"{lag.peak * 255:.1f} levels more than usual, down to 1/4 of that after {lag.frames} frame(s)")  # fmt: skip
    figures = {"plain": errors["plain"], "per_frame": errors["per_frame"], "smoothed": errors["smoothed"], "ratio": ratio,
               "frames": last - first + 1, "strength": args.strength, "blend": str(args.blend),
               "trail_levels": {"uncovered": round(on_uncovered * 255, 3), "elsewhere": round(elsewhere * 255, 3)},
               "per_frame_errors": {mode: warp_error.frame_errors(runs[mode], vectors) for mode in MODES},
               "lag": {"change_frame": None if lag.frame is None else first + lag.frame, "frames": lag.frames,
                       "peak_levels": round(lag.peak * 255, 2)}}  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    if args.out:
        from addon.png16 import write_png16

        write_png16(args.out / "strip.png", strip(runs), level=6)
        print(f"wrote {args.out / 'strip.png'} (rows: plain, per-frame, smoothed) and the frames under {args.out}")
    return 0


if __name__ == "__main__":
    code = main()
    remove_private_user_folders()  # bpy as a module can hang in its static destructors: leave directly
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
