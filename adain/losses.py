"""The paper's losses (§6.2): content loss against the AdaIN target, style loss on IN statistics.

Both are mean-reduced MSE (the PyTorch port's scale), so with λ = 10 the two terms are of similar size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from adain.functional import calc_mean_std
from adain.networks import TAPS


@dataclass(frozen=True)
class Losses:
    content: torch.Tensor  # scalar
    style: torch.Tensor  # scalar, sum over the four taps

    def total(self, style_weight: float) -> torch.Tensor:
        return self.content + style_weight * self.style


def content_loss(output_feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_c = mean((f(g(t)) - t)^2) at relu4_1 (eq. 12, mean-reduced). Shapes (N, 512, h, w)."""
    return F.mse_loss(output_feat.float(), target.float())


def style_loss(output_feats: dict[str, torch.Tensor], style_feats: dict[str, torch.Tensor]) -> torch.Tensor:
    """L_s = sum over relu1_1..relu4_1 of MSE(mu) + MSE(sigma) (eq. 13, mean-reduced).

    Each dict maps a tap to (N, C, H, W) features; output and style may differ in H, W.
    """
    total = torch.zeros((), device=next(iter(output_feats.values())).device)
    for tap in TAPS:
        om, os_ = calc_mean_std(output_feats[tap])
        sm, ss = calc_mean_std(style_feats[tap])
        total = total + F.mse_loss(om, sm) + F.mse_loss(os_, ss)
    return total


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
