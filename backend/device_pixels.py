"""Frames between the wire and the model's device, in torch (part of the model service; no ZeroMQ here).

A frame arrives as an (H, W, 3|4) array of uint8, uint16, float16 or float32 display-referred RGB(A),
usually a read-only view of the received ZeroMQ frame. It is uploaded to the model's device as it is
(half the bytes of float32 for float16, a quarter for uint8) and converted there; the result is assembled
on the device in the reply's dtype, alpha included, and comes back in one device-to-host copy. On a GPU
this keeps the per-pixel work off the CPU (see docs/performance.md); on the CPU it is the same arithmetic
``backend.style_images`` does in numpy, with fewer temporaries.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from adain_wire.options import INTEGER_SCALE
from adain_wire.protocol import ErrorCode
from backend.errors import BackendError

TORCH_DTYPES = {"uint8": torch.uint8, "uint16": torch.uint16, "float16": torch.float16, "float32": torch.float32}


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    """A numpy array as a CPU tensor sharing its memory, read-only wire buffers included (never written)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(arr)


def upload_frame(frame: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(H, W, 3|4) wire frame -> RGB float32 (3, H, W) in [0, 1] on ``device``, and the alpha (H, W) as sent.

    The RGB tensor is a new one (HWC strides, i.e. channels-last), never a view of ``frame``. Floats are clipped
    to [0, 1]; NaN or infinite values are refused with bad_request.
    """
    name = frame.dtype.name
    if name not in TORCH_DTYPES or frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise BackendError(ErrorCode.BAD_ARRAY, f"frame must be (H, W, 3|4) uint8, uint16, float16 or float32, "
                           f"got {frame.shape} {name}")  # fmt: skip
    t = as_tensor(frame).to(device)
    if device.type == "cpu":  # numpy's strided float16 -> float32 conversion is ~2.5x faster than torch's on a CPU
        rgb = torch.from_numpy(frame[..., :3].astype(np.float32)).permute(2, 0, 1)
    else:
        rgb = t[..., :3].permute(2, 0, 1).to(torch.float32, copy=True)
    if name in INTEGER_SCALE:
        rgb.div_(INTEGER_SCALE[name])
    else:
        # NaN and inf survive a sum (30x cheaper than isfinite on a CPU); a huge finite frame may overflow it, so check
        if not math.isfinite(float(rgb.sum())) and not bool(torch.isfinite(rgb).all()):
            raise BackendError(ErrorCode.BAD_REQUEST, "image holds NaN or infinite values; send finite display-referred values")
        rgb.clamp_(0.0, 1.0)
    return rgb, (t[..., 3] if frame.shape[2] == 4 else None)


def upload_labels(labels: np.ndarray, device: torch.device) -> torch.Tensor:
    """An (H, W) uint8 or uint16 label map -> int32 on ``device`` (uploaded at its wire width, widened there)."""
    if labels.dtype == np.uint16:  # sent as int16 bits, unsigned again on the device (uint16 ops are sparse in torch)
        return as_tensor(labels.view(np.int16)).to(device).to(torch.int32).bitwise_and_(0xFFFF)
    return as_tensor(labels).to(device).to(torch.int32)


def quantise(unit: torch.Tensor, dtype: str) -> torch.Tensor:
    """Floats in [0, 1] -> ``dtype`` (integers rounded to nearest, values clipped first)."""
    if dtype in INTEGER_SCALE:
        return unit.clamp(0.0, 1.0).mul_(INTEGER_SCALE[dtype]).round_().to(TORCH_DTYPES[dtype])
    return unit.to(TORCH_DTYPES[dtype])


def download_frame(rgb: torch.Tensor, alpha: torch.Tensor | None, dtype: str) -> np.ndarray:
    """RGB (3, H, W) floats in [0, 1] on any device + alpha from ``upload_frame`` -> (H, W, 3|4) numpy ``dtype``.

    Alpha keeps its exact values when ``dtype`` is the dtype it arrived in; otherwise it is converted by the same
    rule as colour (uint8 255 <-> 1.0).
    """
    if dtype not in TORCH_DTYPES:
        raise BackendError(ErrorCode.BAD_REQUEST, f"output dtype {dtype!r}: use one of {', '.join(TORCH_DTYPES)}")
    h, w = rgb.shape[-2:]
    out = torch.empty((h, w, 3 if alpha is None else 4), dtype=TORCH_DTYPES[dtype], device=rgb.device)
    out[..., :3] = quantise(rgb, dtype).permute(1, 2, 0)
    if alpha is not None:
        if alpha.dtype == out.dtype:
            out[..., 3] = alpha
        else:
            src = str(alpha.dtype).removeprefix("torch.")
            unit = alpha.to(torch.float32)
            if src in INTEGER_SCALE:
                unit.div_(INTEGER_SCALE[src])
            elif not bool(torch.isfinite(unit).all()):
                raise BackendError(ErrorCode.BAD_REQUEST, "alpha holds NaN or infinite values; send finite values")
            out[..., 3] = quantise(unit.clamp_(0.0, 1.0), dtype)
    return out.cpu().numpy()
