"""The main demo: build a small scene in real Blender and render it stylized, headless, on the CPU.

    .venv-bpy45/bin/python scripts/demo_blender.py --out out/demo --backend-python .venv/bin/python

Three objects with three materials on a floor, a camera move, and three style slots from the shipped
samples: the red material, the sphere object, and everything else; the global alpha is keyed 0 -> 1 over
the animation. The add-on starts the backend (the shipped decoder) as a subprocess, renders every frame
with Cycles, stylizes it inside the render (before the compositor), and writes PNG frames plus the .blend,
which opens in Blender's UI with the same setup (Ctrl-F12 renders it again). Prints progress per frame;
Ctrl-C stops after the current frame.

Blender runs with a private, empty user folder (scripts/blender_user.py; unless BLENDER_USER_RESOURCES is set),
so add-ons and extensions installed in the user's Blender, this add-on's zip among them, play no part.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # blender_user, beside this file

from blender_user import remove_private_user_folders, use_private_user_folder  # noqa: E402

SAMPLES = REPO / "adain" / "data" / "samples"


def build_scene(frames: int, width: int, height: int, samples: int) -> None:
    import bpy

    import addon

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon.register()
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", samples, False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.render.image_settings.file_format = "PNG"
    scene.frame_start, scene.frame_end = 1, frames

    def material(name: str, rgb: tuple[float, float, float], rough: float = 0.5) -> bpy.types.Material:
        m = bpy.data.materials.new(name)
        m.use_nodes = True
        bsdf = m.node_tree.nodes["Principled BSDF"]
        bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
        bsdf.inputs["Roughness"].default_value = rough
        return m

    def add(op: str, name: str, mat: bpy.types.Material, **kw: object) -> None:
        getattr(bpy.ops.mesh, op)(**kw)
        bpy.context.object.name = name
        bpy.context.object.data.materials.append(mat)
        if op != "primitive_plane_add" and op != "primitive_cube_add":
            bpy.ops.object.shade_smooth()

    add("primitive_plane_add", "Floor", material("Floor", (0.55, 0.5, 0.45), 0.8), size=30, location=(0, 0, -1))
    add("primitive_cube_add", "Crate", material("Red paint", (0.75, 0.12, 0.08)), size=1.6, location=(-2.0, 0.5, -0.2))
    add("primitive_uv_sphere_add", "Ball", material("Blue glaze", (0.1, 0.25, 0.8), 0.2), radius=1.0, location=(0.3, 0, 0))
    add("primitive_torus_add", "Ring", material("Gold", (0.9, 0.7, 0.2), 0.3), location=(2.3, 0.6, -0.4))
    bpy.ops.object.light_add(type="SUN", location=(2, -2, 6), rotation=(0.6, 0.2, 0.4))
    bpy.context.object.data.energy = 4.0
    bpy.ops.object.camera_add(location=(-1.5, -12.5, 1.8), rotation=(1.44, 0, -0.1))
    cam = bpy.context.object
    scene.camera = cam
    cam.keyframe_insert("location", frame=1)
    cam.location = (1.5, -12.0, 2.4)
    cam.keyframe_insert("location", frame=frames)
    world = bpy.data.worlds.new("Sky")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs[0].default_value = (0.45, 0.55, 0.7, 1.0)

    assert bpy.ops.adain.setup() == {"FINISHED"}
    st = scene.adain
    st.slots.clear()
    st.style_size = max(256, min(width, height) * 2)  # style scale follows the frame size

    def slot(name: str, target: str, style: str, things: tuple[str, ...], alpha: float = 1.0) -> None:
        s = st.slots.add()
        s.name, s.target, s.alpha = name, target, alpha
        s.styles.add().image = bpy.data.images.load(str(SAMPLES / style), check_existing=True)
        for t in things:
            item = s.targets.add()
            if target == "MATERIALS":
                item.material = bpy.data.materials[t]
            else:
                item.object = bpy.data.objects[t]

    slot("Painted crate", "MATERIALS", "style_freecol_portrait_hudson.jpg", ("Red paint",))
    slot("Mountain ball", "OBJECTS", "style_wesnoth_painted_mountains.jpg", ("Ball",))
    slot("Background", "OTHER", "style_wesnoth_trow_great_tree.jpg", (), alpha=0.8)
    st.alpha = 0.0
    st.keyframe_insert("alpha", frame=1)
    st.alpha = 1.0
    st.keyframe_insert("alpha", frame=frames)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=REPO / "out" / "demo")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--size", default="320x180", help="WIDTHxHEIGHT (default 320x180)")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--backend-python", default=os.environ.get("ADAIN_BACKEND_PYTHON", str(REPO / ".venv" / "bin" / "python")))
    p.add_argument("--backend", help="address of a running backend instead of starting one (e.g. tcp://host:5555)")
    args = p.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        p.error(f"--size {args.size!r}: use WIDTHxHEIGHT, e.g. 320x180")
    if args.backend:
        os.environ["ADAIN_BACKEND"] = args.backend
    else:
        if not Path(args.backend_python).is_file():
            p.error(f"--backend-python {args.backend_python} does not exist: run `bash scripts/setup_env.sh` first")
        os.environ.setdefault("ADAIN_BACKEND", "tcp://127.0.0.1:5587")
        os.environ["ADAIN_BACKEND_COMMAND"] = f"{shlex.quote(args.backend_python)} -m backend --device cpu"
    use_private_user_folder()  # before Blender starts: it reads the user folder once, at import
    try:
        import bpy
    except ImportError:
        p.error("needs bpy (Blender as a Python module): run with .venv-bpy45/bin/python after scripts/setup_blender.sh")

    from addon import session_backend
    from addon.session import SESSION

    args.out.mkdir(parents=True, exist_ok=True)
    build_scene(args.frames, width, height, args.samples)
    scene = bpy.context.scene
    blend = args.out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    scene.render.filepath = str(args.out / "frame_")
    print(f"Blender {bpy.app.version_string}: rendering {args.frames} frames at {width}x{height} into {args.out}")
    t0 = time.perf_counter()
    failed = []
    try:
        for f in range(scene.frame_start, scene.frame_end + 1):  # frame by frame: progress, and Ctrl-C between frames
            scene.frame_set(f)
            scene.render.filepath = str(args.out / f"frame_{f:04d}.png")
            try:
                bpy.ops.render.render(write_still=True)
            except RuntimeError:  # a frame that was not stylized: the operator reports why (printed below)
                pass
            stylized = SESSION.status.ok and f in SESSION.status.stylized_frames  # the add-on says it did this frame
            state = "stylized" if stylized else "NOT stylized"
            if not stylized:
                failed.append(f)
            print(f"[{f - scene.frame_start + 1}/{args.frames}] frame {f} {state}: {SESSION.status.message}", flush=True)
    except KeyboardInterrupt:
        print("interrupted: the frames written so far are kept", file=sys.stderr)
        return 130
    finally:
        session_backend.shutdown()
    print(f"done in {time.perf_counter() - t0:.0f} s: {args.out}/frame_*.png and {blend}")
    if failed:
        print(f"frames not stylized: {failed} (see the messages above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    code = main()
    # bpy as a module can hang in its C++ static destructors at interpreter exit: leave directly (atexit does not run)
    remove_private_user_folders()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
