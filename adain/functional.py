"""Pure tensor functions of AdaIN and its runtime controls (paper §5, §7.3). No state, no I/O.

Conventions: features are (N, C, H, W); statistics are (N, C, 1, 1); standard deviations are
``sqrt(var + eps)`` with the population variance (divided by the number of pixels, or by the total
mask weight). Images are (3, H, W) or (N, 3, H, W) RGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from adain.errors import InputError


def _check_feat(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} must be a (N, C, H, W) tensor, got {shape}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be floating point, got {x.dtype}")


def calc_mean_std(feat: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel-wise mean and standard deviation over the spatial positions.

    Args:
        feat: (N, C, H, W).
        mask: optional (N, 1, H, W) or (1, 1, H, W) non-negative weights (hard 0/1 or soft); the
            statistics are the weighted mean and weighted population variance. An all-zero mask gives
            mean 0 and std sqrt(eps).
        eps: added to the variance before the square root.

    Returns:
        (mean, std), each (N, C, 1, 1), in float32 (or float64 for float64 input).
    """
    _check_feat(feat, "feat")
    x = feat if feat.dtype == torch.float64 else feat.float()
    if mask is None:
        var, mean = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)  # one fused pass
        return mean, (var + eps).sqrt()
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-2:] != feat.shape[-2:] or mask.shape[0] not in (1, feat.shape[0]):
        raise InputError(f"mask must be (N, 1, H, W) matching feat {tuple(feat.shape)}, got {tuple(mask.shape)}")
    w = mask.to(x.dtype)
    total = w.sum(dim=(2, 3), keepdim=True).clamp_min(1e-8)
    mean = (x * w).sum(dim=(2, 3), keepdim=True) / total
    var = ((x - mean).pow(2) * w).sum(dim=(2, 3), keepdim=True) / total
    return mean, (var + eps).sqrt()


def adain_with_stats(
    content_feat: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """AdaIN with given style statistics: ``style_std * (x - mean(x)) / std(x) + style_mean``.

    content_feat (N, C, H, W); style_mean, style_std broadcastable to (N, C, 1, 1). Returns (N, C, H, W).
    """
    c_mean, c_std = calc_mean_std(content_feat, eps=eps)
    return (content_feat.to(c_mean.dtype) - c_mean) / c_std * style_std + style_mean


def adain(content_feat: torch.Tensor, style_feat: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation (eq. 8): align content channel means/stds to the style's.

    content_feat (N, C, H, W), style_feat (N or 1, C, H', W') -> (N, C, H, W).
    """
    _check_feat(style_feat, "style_feat")
    if style_feat.shape[1] != content_feat.shape[1]:
        raise InputError(f"content has {content_feat.shape[1]} channels but style has {style_feat.shape[1]}")
    s_mean, s_std = calc_mean_std(style_feat, eps=eps)
    return adain_with_stats(content_feat, s_mean, s_std, eps)


def alpha_blend(content_feat: torch.Tensor, target: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Content-style trade-off in feature space (eq. 14): ``(1 - alpha) * f(c) + alpha * t``."""
    if isinstance(alpha, (int, float)) and not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    return (1 - alpha) * content_feat.to(target.dtype) + alpha * target


def adain_blend(
    content_feat: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, alpha: float = 1.0, eps: float = 1e-5
) -> torch.Tensor:
    """``alpha_blend(x, adain_with_stats(x, mean, std), alpha)`` as one per-channel affine map ``x * a + b``.

    Equal to the composition up to rounding, but one pass over the features instead of five (the
    features of a 1080p frame are 66 MB in fp32, so on a CPU these passes are memory-bound). Returns float32.
    """
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    x = content_feat.float()
    c_mean, c_std = calc_mean_std(x, eps=eps)
    gain = style_std.to(x) / c_std
    scale = (1 - alpha) + alpha * gain
    shift = alpha * (style_mean.to(x) - c_mean * gain)
    return torch.addcmul(shift, x, scale)


def normalise_weights(weights: Sequence[float] | torch.Tensor, count: int) -> torch.Tensor:
    """Return ``count`` non-negative weights scaled to sum to 1 (float32, shape (count,))."""
    w = torch.as_tensor(weights, dtype=torch.float32).flatten()
    if w.numel() != count:
        raise InputError(f"got {w.numel()} weights for {count} styles; give one weight per style")
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"style weights must be finite, non-negative and not all zero, got {w.tolist()}")
    return w / w.sum()


def blend_stats(
    means: Sequence[torch.Tensor], stds: Sequence[torch.Tensor], weights: Sequence[float] | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """K-style interpolation (eq. 15) by blending cached statistics.

    Since AdaIN is affine in the style statistics, ``sum_k w_k AdaIN(x, s_k)`` equals AdaIN with mean
    ``sum_k w_k mu_k`` and std ``sum_k w_k sigma_k`` (weights normalised to sum 1). Each mean/std is
    (..., C, 1, 1) of one shape; returns the blended pair of that shape.
    """
    if len(means) != len(stds) or not means:
        raise InputError(f"need one mean and one std per style, got {len(means)} means and {len(stds)} stds")
    w = normalise_weights(weights, len(means))
    mean = sum(wk * m.float() for wk, m in zip(w.tolist(), means, strict=True))
    std = sum(wk * s.float() for wk, s in zip(w.tolist(), stds, strict=True))
    return mean, std


def labels_to_masks(labels: torch.Tensor, num_regions: int) -> torch.Tensor:
    """One-hot masks from a label map: (N, H, W) or (H, W) integers in [0, R) -> (N, R, H, W) float.

    Labels outside [0, num_regions) belong to no region (their pixels keep the content).
    """
    if labels.dim() == 2:
        labels = labels.unsqueeze(0)
    if labels.dim() != 3 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise InputError(f"labels must be an integer (N, H, W) or (H, W) map, got {labels.dtype} {tuple(labels.shape)}")
    ids = torch.arange(num_regions, device=labels.device).view(1, -1, 1, 1)
    return (labels.long().unsqueeze(1) == ids).float()


def downsample_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-average soft masks (N, R, H, W) to a feature map size (h, w): fractional coverage per cell."""
    if masks.dim() != 4:
        raise InputError(f"masks must be (N, R, H, W), got {tuple(masks.shape)}")
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.float()
    return F.adaptive_avg_pool2d(masks.float(), size)


def regional_adain(
    content_feat: torch.Tensor,
    masks: torch.Tensor,
    style_means: torch.Tensor,
    style_stds: torch.Tensor,
    alphas: Sequence[float] | torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """AdaIN per region: each region's content statistics are aligned to its own style statistics.

    Args:
        content_feat: (N, C, h, w) content features.
        masks: (N, R, h, w) non-negative region weights at feature resolution (soft masks blend regions).
        style_means, style_stds: (R, C) one style statistic per region (already K-style blended).
        alphas: (R,) per-region content-style trade-off in [0, 1]; default all 1.

    Returns:
        (N, C, h, w): ``sum_r m_r [(1 - a_r) x + a_r AdaIN_r(x)] / sum_r m_r``; positions that no region
        covers (sum m_r = 0) keep the content features.
    """
    _check_feat(content_feat, "content_feat")
    n, c, h, w = content_feat.shape
    if masks.dim() != 4 or masks.shape[0] not in (1, n) or masks.shape[-2:] != (h, w):
        raise InputError(f"masks must be (N, R, {h}, {w}) for features {tuple(content_feat.shape)}, got {tuple(masks.shape)}")
    r = masks.shape[1]
    if style_means.shape != (r, c) or style_stds.shape != (r, c):
        raise InputError(
            f"need ({r}, {c}) style means and stds for {r} regions, got {tuple(style_means.shape)} and {tuple(style_stds.shape)}"
        )
    a = torch.ones(r) if alphas is None else torch.as_tensor(alphas, dtype=torch.float32).flatten()
    if a.numel() != r or (a < 0).any() or (a > 1).any():
        raise InputError(f"alphas must be {r} values in [0, 1], got {a.tolist()}")
    # Every region's map is affine in x, so the blend is one per-position, per-channel affine map
    # x * A + B with A = sum_r m_r a'_r / M and B = sum_r m_r b'_r / M: all R regions cost a few matrix
    # products over the (small) region axis and one pass over the features, not R passes.
    x = content_feat.float()
    m = masks.to(x.device, torch.float32).expand(n, r, h, w).reshape(n, r, h * w)
    xf = x.reshape(n, c, h * w)
    shift = xf.mean(dim=2, keepdim=True)  # centring first keeps E[x^2] - E[x]^2 well conditioned
    xc = xf - shift
    total = m.sum(dim=2).unsqueeze(1)  # (N, 1, R)
    mean_c = torch.bmm(xc, m.transpose(1, 2)) / total.clamp_min(1e-8)  # (N, C, R), centred
    var = (torch.bmm(xc.square(), m.transpose(1, 2)) / total.clamp_min(1e-8) - mean_c.square()).clamp_min(0)
    c_mean, c_std = mean_c + shift, (var + eps).sqrt()
    s_mean, s_std = style_means.to(x).t().unsqueeze(0), style_stds.to(x).t().unsqueeze(0)  # (1, C, R)
    ar = a.to(x).view(1, 1, r)
    gain = s_std / c_std
    coef_a = (1 - ar) + ar * gain  # (N, C, R)
    coef_b = ar * (s_mean - c_mean * gain)
    cover = m.sum(dim=1, keepdim=True)  # (N, 1, P)
    weights = m / cover.clamp_min(1e-8)  # each covered position's region weights sum to 1
    scale = torch.bmm(coef_a, weights) + (cover <= 0).to(x)  # uncovered positions keep the content (A = 1, B = 0)
    out = torch.bmm(coef_b, weights).addcmul_(xf, scale)
    return out.view(n, c, h, w)


# ----------------------------------------------------------------------------------------- colour
def _check_rgb(img: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(img, torch.Tensor) or img.dim() != 3 or img.shape[0] != 3:
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise InputError(f"{name} must be a (3, H, W) RGB image, got {shape}")
    if not img.is_floating_point():
        raise InputError(f"{name} must be float in [0, 1], got {img.dtype}")
    return img.double()


def _sqrtm(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(cov)
    vals = vals.clamp_min(1e-10)
    d = vals.rsqrt() if inverse else vals.sqrt()
    return vecs @ torch.diag(d) @ vecs.T


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CORAL colour transfer: recolour ``source`` to ``target``'s channel mean and covariance.

    source (3, H, W), target (3, H', W'), both RGB in [0, 1]; sizes may differ. Covariances are divided
    by each image's pixel count (the paper's reference code omits this, which is wrong when the sizes
    differ). Returns (3, H, W), clamped to [0, 1], in source's dtype.
    """
    s, t = _check_rgb(source, "source"), _check_rgb(target, "target")
    sf, tf = s.reshape(3, -1), t.reshape(3, -1)
    s_mean, t_mean = sf.mean(1, keepdim=True), tf.mean(1, keepdim=True)
    sc, tc = sf - s_mean, tf - t_mean
    eye = torch.eye(3, dtype=torch.float64) * 1e-5
    s_cov = sc @ sc.T / sf.shape[1] + eye
    t_cov = tc @ tc.T / tf.shape[1] + eye
    out = _sqrtm(t_cov) @ _sqrtm(s_cov, inverse=True) @ sc + t_mean
    return out.reshape(s.shape).clamp(0, 1).to(source.dtype)


# ITU-R BT.601 YIQ, as in Gatys et al. 2016 ("Preserving colour in neural artistic style transfer").
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])


def rgb_to_yiq(img: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB -> YIQ (Y is luminance)."""
    return torch.einsum("ij,...jhw->...ihw", _RGB_TO_YIQ.to(img), img)


def yiq_to_rgb(img: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) YIQ -> RGB."""
    return torch.einsum("ij,...jhw->...ihw", torch.linalg.inv(_RGB_TO_YIQ.double()).to(img), img)


def luminance_image(img: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB -> its luminance Y replicated to 3 channels (the network's input for luminance-only)."""
    y = rgb_to_yiq(img)[..., :1, :, :]
    return y.expand_as(img).contiguous()


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Affinely match the style's luminance mean/std to the content's (Gatys et al. 2016, eq. 3).

    style (..., 3, H, W), content (..., 3, H', W') RGB; returns the style's luminance image (3 channels).
    """
    ys, yc = rgb_to_yiq(style)[..., :1, :, :], rgb_to_yiq(content)[..., :1, :, :]
    dims = (-3, -2, -1)
    y = (ys - ys.mean(dims, keepdim=True)) * (yc.std(dims, keepdim=True) / ys.std(dims, keepdim=True).clamp_min(1e-6))
    y = (y + yc.mean(dims, keepdim=True)).clamp(0, 1)
    return y.expand_as(style).contiguous()


def combine_luminance(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer: the stylized image's Y with the content's I and Q. Same shapes in and out."""
    if stylized.shape != content.shape:
        raise InputError(f"stylized {tuple(stylized.shape)} and content {tuple(content.shape)} must match")
    yiq = rgb_to_yiq(content)
    y = rgb_to_yiq(stylized)[..., :1, :, :]
    return yiq_to_rgb(torch.cat([y, yiq[..., 1:, :, :]], dim=-3)).clamp(0, 1)
