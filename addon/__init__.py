"""AdaIN Stylize: arbitrary style transfer for Blender renders (Cycles, EEVEE, Workbench), made by a backend process.

The wire format, the client and the backend's start/stop come from the ``adain_wire`` package (shared with the
backend; the add-on zip carries it as a wheel). Modules without bpy (testable anywhere): ``frames`` (what a frame
asks and how the answer is composed), ``background_task`` (backend work on a thread the UI polls), ``temporal``
(smoothing along motion vectors), ``cryptomatte`` (soft masks), ``png16``, ``samples`` (the bundled sample styles).
``render_maths`` (mask composition, alpha, sRGB), ``session`` (what persists between renders).
Blender-facing: ``properties``, ``operators``, ``panels``, ``render`` (the Cycles hook), ``scene_snapshot`` (the
scene read at render time), ``render_result`` (a render result stylized), ``restyle`` (the last render stylized
again), ``colour`` (view transform round trip), ``compositor`` (the node group), ``engine_watch`` (keeps the node
group out of non-Cycles renders), ``engine_hook`` (EEVEE, Workbench: after the compositor), ``escape_watch`` (Esc
during their stylization), ``session_backend`` (the session's backend, from the preferences or the environment).
"""

from __future__ import annotations

_registered: list[type] = []


def register() -> None:
    import bpy

    from . import engine_watch, escape_watch, image_operators, install_operators, operators, panels, properties, render

    classes = (*properties.CLASSES, *operators.CLASSES, *image_operators.CLASSES, *install_operators.CLASSES,
               *escape_watch.CLASSES, *panels.CLASSES)  # fmt: skip
    for cls in classes:
        bpy.utils.register_class(cls)
        _registered.append(cls)
    properties.register_props()
    image_operators.register_menu()
    render.install()
    bpy.app.handlers.render_init.append(render.on_render_init)
    bpy.app.handlers.load_post.append(render.on_load_post)
    bpy.app.handlers.render_init.append(engine_watch.on_render_init)
    bpy.app.handlers.load_post.append(engine_watch.on_load_post)
    engine_watch.watch()


def unregister() -> None:
    import bpy

    from . import engine_watch, image_operators, install_operators, properties, render, session, session_backend

    install_operators.cancel_running()
    image_operators.unregister_menu()
    engine_watch.unwatch()
    init, load = bpy.app.handlers.render_init, bpy.app.handlers.load_post
    hooks = ((init, render.on_render_init), (load, render.on_load_post), (init, engine_watch.on_render_init),
             (load, engine_watch.on_load_post))  # fmt: skip
    for handlers, fn in hooks:
        if fn in handlers:
            handlers.remove(fn)
    render.uninstall()
    session_backend.shutdown()
    session.SESSION.reset()
    properties.unregister_props()
    while _registered:
        bpy.utils.unregister_class(_registered.pop())
