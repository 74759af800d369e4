"""Style images between the wire and the model, in numpy and Pillow only (no torch).

Style images arrive as arrays ((H, W, 3|4) uint8, uint16, float16 or float32) or as encoded files; the
model takes float32 RGB in [0, 1], alpha composited over white. Encoded images are decoded with a pixel
limit checked before any pixel is decompressed. Frames to stylize go through ``backend.device_pixels``,
which converts them on the model's device.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from adain_wire.options import INTEGER_SCALE
from adain_wire.protocol import ErrorCode
from backend.errors import BackendError


def to_unit_float(arr: np.ndarray, name: str) -> np.ndarray:
    """Any wire dtype -> float32 in [0, 1] (integers scaled; floats clipped; NaN/inf rejected)."""
    if arr.dtype.name in INTEGER_SCALE:
        return arr.astype(np.float32) / np.float32(INTEGER_SCALE[arr.dtype.name])
    out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise BackendError(ErrorCode.BAD_REQUEST, f"{name} holds NaN or infinite values; send finite display-referred values")
    return np.clip(out, 0.0, 1.0, out=out)


def flatten_alpha(rgba: np.ndarray) -> np.ndarray:
    """Float (H, W, 3|4) in [0, 1] -> RGB composited over white (as style image files are)."""
    if rgba.shape[2] == 3:
        return rgba
    a = rgba[..., 3:4]
    return rgba[..., :3] * a + (1.0 - a)


def decode_image(data: bytes, max_pixels: int, size: int = 0) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, ...) -> float32 (H, W, 3) in [0, 1], alpha composited over white,
    the shorter side resized to ``size`` (Lanczos on the 8-bit image, as ``adain.images.load_image`` does).

    The size is read from the header and checked against ``max_pixels`` before decompressing; Pillow's
    own decompression-bomb check is a second line.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise BackendError(
                        ErrorCode.TOO_LARGE,
                        f"style image is {w}x{h} = {w * h} pixels; this backend takes at most {max_pixels} (--max-pixels): "
                        "send a smaller image",
                    )
                im.load()
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    rgba = im.convert("RGBA")
                    rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
                else:
                    rgb = im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BackendError(ErrorCode.TOO_LARGE, f"style image refused as a decompression bomb: {e}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BackendError(ErrorCode.BAD_IMAGE, f"cannot decode the style image ({e}); send PNG or JPEG file bytes") from e
    if size > 0 and min(rgb.size) != size:
        rgb = rgb.resize(_resized(rgb.size, size, max_pixels), Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.float32) / np.float32(255.0)


def _resized(wh: tuple[int, int], size: int, max_pixels: int) -> tuple[int, int]:
    scale = size / min(wh)
    nw, nh = max(1, round(wh[0] * scale)), max(1, round(wh[1] * scale))
    if nw * nh > max_pixels:
        raise BackendError(ErrorCode.TOO_LARGE, f"size {size} would make the style {nw}x{nh} = {nw * nh} pixels; "
                           f"this backend takes at most {max_pixels} (--max-pixels): ask for a smaller size")  # fmt: skip
    return nw, nh


def resize_shorter(rgb: np.ndarray, size: int, max_pixels: int) -> np.ndarray:
    """Float (H, W, 3) -> shorter side ``size`` pixels (Lanczos per channel, aspect kept); 0 keeps it."""
    h, w = rgb.shape[:2]
    if size <= 0 or min(h, w) == size:
        return rgb
    nw, nh = _resized((w, h), size, max_pixels)
    planes = [Image.fromarray(np.ascontiguousarray(rgb[..., c], dtype=np.float32)) for c in range(3)]
    chans = [np.asarray(p.resize((nw, nh), Image.Resampling.LANCZOS)) for p in planes]
    return np.clip(np.stack(chans, axis=2), 0.0, 1.0)
