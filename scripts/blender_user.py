"""A private Blender user folder for a process that imports bpy (the demo, the real-Blender tests).

Blender reads its preferences, add-ons and extensions from the user's folder (``~/.config/blender/<version>`` on
Linux). An extension installed there, the AdaIN add-on's own zip included, would then be enabled in our process,
sync its wheels over the modules we have imported, or wrap the renderer: what runs would depend on the user's
setup. Call ``use_private_user_folder()`` before the first ``import bpy``:

    from blender_user import remove_private_user_folders, use_private_user_folder

    use_private_user_folder()   # unless BLENDER_USER_RESOURCES is set: a new temporary folder, removed at exit
    import bpy

No bpy here: it must run before Blender starts.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

RESOURCES_VAR = "BLENDER_USER_RESOURCES"
# Blender's variables that send one kind of user folder elsewhere; BLENDER_USER_RESOURCES covers them all.
OTHER_USER_VARS = ("BLENDER_USER_CONFIG", "BLENDER_USER_SCRIPTS", "BLENDER_USER_EXTENSIONS", "BLENDER_USER_DATAFILES")

_made: list[Path] = []


def use_private_user_folder(prefix: str = "adain-blender-user-") -> Path | None:
    """Point Blender's user folder (``BLENDER_USER_RESOURCES``) at a new empty temporary folder and drop the other
    ``BLENDER_USER_*`` variables from ``os.environ``, so that nothing of the user's Blender setup is loaded. Returns
    that folder, which is removed at exit (or by ``remove_private_user_folders``, for a process that leaves with
    ``os._exit``).

    When ``BLENDER_USER_RESOURCES`` is already set, whoever set it chose the user folders: nothing changes and
    None is returned. Call it before bpy is first imported; later Blender has read its folders already."""
    if os.environ.get(RESOURCES_VAR, "").strip():
        return None
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    _made.append(folder)
    if len(_made) == 1:
        atexit.register(remove_private_user_folders)
    for var in OTHER_USER_VARS:
        os.environ.pop(var, None)
    os.environ[RESOURCES_VAR] = str(folder)
    return folder


def remove_private_user_folders() -> None:
    """Remove the folders ``use_private_user_folder`` made (idempotent)."""
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)
