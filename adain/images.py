"""Image files <-> tensors: sRGB 8-bit files to (3, H, W) float32 in [0, 1] and back, with resizing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from adain.errors import InputError

MAX_IMAGE_PIXELS = 16384 * 16384  # refuse decompression bombs beyond this


def load_image(path: str | Path, size: int = 0) -> torch.Tensor:
    """Read an image file as (3, H, W) float32 RGB in [0, 1]; ``size`` > 0 resizes the shorter side."""
    path = Path(path)
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(path) as im:
            im.load()
            rgb = _to_rgb(im)
    except FileNotFoundError as e:
        raise InputError(f"image {path} does not exist") from e
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path}: {e}") from e
    if size:
        rgb = resize_shorter(rgb, size)
    return pil_to_tensor(rgb)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")


def resize_shorter(im: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` pixels, keeping the aspect ratio (Lanczos)."""
    w, h = im.size
    scale = size / min(w, h)
    if scale == 1:
        return im
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def tensor_to_pil(img: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> 8-bit RGB PIL image (rounded)."""
    if img.dim() == 4 and img.shape[0] == 1:
        img = img[0]
    if img.dim() != 3 or img.shape[0] != 3:
        raise InputError(f"expected a (3, H, W) image, got {tuple(img.shape)}")
    arr = (img.detach().float().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def save_image(img: torch.Tensor, path: str | Path) -> None:
    path = Path(path)
    try:
        tensor_to_pil(img).save(path)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot write {path}: {e}") from e


def load_label_map(path: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """Read a label image (single channel, value k = region k) resized (nearest) to ``size`` (H, W)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise InputError(f"mask {path} must be a single-channel label image (mode L or P), got mode {im.mode}")
            labels = im.convert("I") if im.mode != "P" else im
            labels = labels.resize((size[1], size[0]), Image.Resampling.NEAREST)
            arr = np.asarray(labels).astype(np.int64)
    except FileNotFoundError as e:
        raise InputError(f"mask {path} does not exist") from e
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"cannot read mask {path}: {e}") from e
    return torch.from_numpy(arr)
