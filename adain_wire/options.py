"""The choices and limits that the library, the backend, the wire and the add-on share, defined once.

Plain constants: importing this module loads neither torch, bpy, pyzmq nor msgpack, so ``adain`` (torch), the
backend's command line (parsed before torch loads) and the add-on (inside Blender) all take them from here.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

# --- where the backend listens ----------------------------------------------------------------------------
DEFAULT_ENDPOINT: Final = "tcp://127.0.0.1:5555"  # the backend's --bind default and the client's default address

# --- how the model runs -----------------------------------------------------------------------------------
PRECISIONS: Final = ("auto", "fp32", "bf16", "fp16")  # "auto": bf16 where the device has it, else fp16 on GPUs, fp32
COMPILE_MODES: Final = ("off", "default", "max-autotune", "reduce-overhead")  # torch.compile modes ("off": eager)

# --- what a request asks ----------------------------------------------------------------------------------
# none: the style's colours; coral: the style recoloured to the content first (paper §7.3); luminance: transfer on
# luminance only, the content's chroma kept (Gatys et al. 2016). The wire's preserve_color, the CLI's --preserve-color,
# the add-on's per-slot colour mode.
COLOR_MODES: Final = ("none", "coral", "luminance")

# --- limits -----------------------------------------------------------------------------------------------
MIN_SIDE: Final = 16  # smallest frame side the encoder takes (three 2x poolings before relu4_1)
MIN_TILE: Final = 64  # smallest tile side; 0 means no tiling
MAX_HEADER_BYTES: Final = 64 * 1024  # a message's msgpack header (frame 0)
MAX_ID_LENGTH: Final = 128  # request ids and cancel targets, in characters
STYLE_SIZES: Final = (64, 4096)  # a style's shorter side when the add-on asks for a resize (inclusive)

# Integer pixel dtypes carry values in [0, 1] scaled by this (uint8: value / 255); float dtypes carry them as they are.
INTEGER_SCALE: Final = MappingProxyType({"uint8": 255.0, "uint16": 65535.0})

# --- temporal smoothing (addon.temporal in numpy, the backend's smooth op in torch: one definition) -----------
# The previous smoothed frame is blended in where the render, moved along the motion vectors, matches the current
# render: fully where the mean |RGB| difference of the display values is below the first value, not at all above the
# second. With the previous frame's motion toward the next one, also only where the motion's round trip comes home
# within the first value in pixels (not at all beyond the second).
SMOOTH_TOLERANCE: Final = (0.04, 0.12)
MOTION_TOLERANCE: Final = (0.5, 1.5)
