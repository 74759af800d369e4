"""AdaIN style transfer for Blender renders: the Blender add-on.

The add-on's registration (operators, panels, properties) comes with the add-on issue. Nothing here may
import ``bpy`` at module level: ``addon.protocol`` and ``addon.client`` are imported by the backend and the
tests outside Blender.
"""
