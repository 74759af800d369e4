"""The paper's losses (§6.2): content loss against the AdaIN target, style loss on IN statistics.

Both are mean-reduced MSE (the PyTorch port's scale). The style term can weight its four layers apart:
the original Torch ``train.lua`` (styleWeight 1e-2, per-layer error summed over channels, divided by the
batch) is, in these mean-reduced units, the per-layer weights ``TORCH_STYLE_LAYER_WEIGHTS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from adain.functional import calc_mean_std
from adain.networks import TAPS

# styleWeight 1e-2 x channels (64, 128, 256, 512): train.lua's scale in mean-reduced units, relu1_1 -> relu4_1
TORCH_STYLE_LAYER_WEIGHTS: tuple[float, float, float, float] = (0.64, 1.28, 2.56, 5.12)
UNIFORM_STYLE_LAYER_WEIGHTS: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Losses:
    content: torch.Tensor  # scalar
    style: torch.Tensor  # scalar, sum over the four taps

    def total(self, style_weight: float) -> torch.Tensor:
        return self.content + style_weight * self.style


def content_loss(output_feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_c = mean((f(g(t)) - t)^2) at relu4_1 (eq. 12, mean-reduced). Shapes (N, 512, h, w)."""
    return F.mse_loss(output_feat.float(), target.float())


def style_loss(
    output_feats: dict[str, torch.Tensor],
    style_feats: dict[str, torch.Tensor],
    layer_weights: tuple[float, ...] = UNIFORM_STYLE_LAYER_WEIGHTS,
) -> torch.Tensor:
    """L_s = sum over relu1_1..relu4_1 of w_l * (MSE(mu) + MSE(sigma)) (eq. 13, mean-reduced).

    Each dict maps a tap to (N, C, H, W) features; output and style may differ in H, W. ``layer_weights``
    has one weight per tap in ``TAPS`` order (default: 1 each, the paper's unweighted sum).

    Example:
        >>> f = {t: torch.ones(1, 2, 4, 4) for t in TAPS}
        >>> float(style_loss(f, f, TORCH_STYLE_LAYER_WEIGHTS))
        0.0
    """
    if len(layer_weights) != len(TAPS):
        raise ValueError(f"layer_weights needs {len(TAPS)} weights ({', '.join(TAPS)}), got {len(layer_weights)}")
    return sum(
        (w * part for w, part in zip(layer_weights, style_loss_per_layer(output_feats, style_feats), strict=True)),
        torch.zeros((), device=next(iter(output_feats.values())).device),
    )


def style_loss_per_layer(output_feats: dict[str, torch.Tensor], style_feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """MSE(mu) + MSE(sigma) for each tap in ``TAPS`` order, unweighted (scalars)."""
    parts = []
    for tap in TAPS:
        om, os_ = calc_mean_std(output_feats[tap])
        sm, ss = calc_mean_std(style_feats[tap])
        parts.append(F.mse_loss(om, sm) + F.mse_loss(os_, ss))
    return parts


def style_loss_from_stats(
    output_feats: dict[str, torch.Tensor], style_stats: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """As ``style_loss`` with the style's (mean, std) per tap precomputed (evaluation, optimisation)."""
    total = torch.zeros((), device=next(iter(output_feats.values())).device)
    for tap in TAPS:
        om, os_ = calc_mean_std(output_feats[tap])
        sm, ss = style_stats[tap]
        total = total + F.mse_loss(om, sm.expand_as(om)) + F.mse_loss(os_, ss.expand_as(os_))
    return total
