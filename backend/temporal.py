"""Temporal smoothing on the backend's device: the ``smooth`` op (torch; part of the model service, no ZeroMQ here).

The same step as the add-on's ``addon.temporal`` (numpy, in Blender), defined once by its tolerances in
``adain_wire.options``: the previous smoothed frame, moved along the render's motion, is blended into the newly
stylized one where the moved render matches the current render (and, with the previous frame's motion toward the
next one, where the motion's round trip comes home):

    out = stylized + w * (warp(previous) - stylized),    w = strength * match * inside [* round trip]

The bilinear warp is ``grid_sample`` with corner-aligned coordinates and border padding, which samples exactly where
the numpy version does: a source position clipped into the frame, its four neighbours weighted by the fractions.
Pixels whose source lies outside the frame (by more than half a pixel) take nothing from the previous frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from adain_wire.options import MOTION_TOLERANCE, SMOOTH_TOLERANCE
from adain_wire.protocol import ErrorCode
from backend.errors import BackendError


def smooth_step(
    stylized: torch.Tensor, content: torch.Tensor, history: torch.Tensor, flow: torch.Tensor, strength: float
) -> torch.Tensor:
    """One step of the recursion, all tensors float32 on one device, channels last.

    Args:
        stylized: (H, W, C) the frame as stylized now, C = 3 or 4 (alpha is blended like colour).
        content: (H, W, 3) the current render's display RGB.
        history: (H, W, C + 3) the previous smoothed frame and the previous render's display RGB, or (H, W, C + 5)
            with the previous frame's motion toward the next one (dx, drow) after them.
        flow: (H, W, 2) dx, drow from each pixel to where it was in the previous frame.
        strength: in [0, 1).

    Returns:
        (H, W, C) float32, the smoothed frame.

    Example:
        >>> s = torch.rand(32, 32, 3); c = torch.rand(32, 32, 3)
        >>> out = smooth_step(s, c, torch.cat([s, c], -1), torch.zeros(32, 32, 2), 0.5)
        >>> bool(torch.allclose(out, s))
        True
    """
    h, w, c = stylized.shape
    if content.shape != (h, w, 3) or flow.shape != (h, w, 2) or history.shape[:2] != (h, w):
        raise ValueError(f"smooth_step: content {tuple(content.shape)}, flow {tuple(flow.shape)} and history "
                         f"{tuple(history.shape)} do not fit a stylized frame of {tuple(stylized.shape)}")  # fmt: skip
    if history.shape[2] not in (c + 3, c + 5):
        raise ValueError(f"smooth_step: history has {history.shape[2]} channels; expected {c + 3} or {c + 5}")
    dev = stylized.device
    sx = flow[..., 0] + torch.arange(w, dtype=torch.float32, device=dev)[None, :]
    sy = flow[..., 1] + torch.arange(h, dtype=torch.float32, device=dev)[:, None]
    inside = (sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)
    grid = torch.stack([sx * (2.0 / max(w - 1, 1)) - 1.0, sy * (2.0 / max(h - 1, 1)) - 1.0], dim=-1)[None]
    source = history.permute(2, 0, 1)[None]  # (1, K, H, W), a view: grid_sample reads the strides
    moved = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)[0].permute(1, 2, 0)
    lo, hi = SMOOTH_TOLERANCE
    err = (content - moved[..., c : c + 3]).abs().sum(dim=-1)
    weight = ((hi - err / 3.0) * (strength / (hi - lo))).clamp_(0.0, strength) * inside
    if history.shape[2] == c + 5:
        trip = torch.hypot(flow[..., 0] + moved[..., c + 3], flow[..., 1] + moved[..., c + 4])
        mlo, mhi = MOTION_TOLERANCE
        weight *= ((mhi - trip) / (mhi - mlo)).clamp_(0.0, 1.0)
    return torch.lerp(stylized, moved[..., :c], weight[..., None])


def upload(arr: torch.Tensor, name: str, device: torch.device) -> torch.Tensor:
    """A received array (float16 or float32, CPU) -> float32 on ``device``; non-finite values are refused."""
    t = arr.to(device).to(torch.float32)
    if not math.isfinite(float(t.sum())) and not bool(torch.isfinite(t).all()):
        raise BackendError(ErrorCode.BAD_REQUEST, f"smooth: {name} holds NaN or infinite values; send finite values")
    return t
