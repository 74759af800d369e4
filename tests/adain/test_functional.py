"""Each op of adain.functional against its formula, computed independently with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adain import functional as AF
from adain.errors import InputError


def _np_stats(x: np.ndarray, w: np.ndarray | None = None, eps: float = 1e-5):
    # x (C, P), w (P,)
    if w is None:
        w = np.ones(x.shape[1])
    mean = (x * w).sum(1) / w.sum()
    var = ((x - mean[:, None]) ** 2 * w).sum(1) / w.sum()
    return mean, np.sqrt(var + eps)


def test_calc_mean_std_matches_formula():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 5, 7, 9, generator=g, dtype=torch.float64) * 3 + 1
    mean, std = AF.calc_mean_std(feat)
    assert mean.shape == std.shape == (2, 5, 1, 1)
    for n in range(2):
        m, s = _np_stats(feat[n].reshape(5, -1).numpy())
        np.testing.assert_allclose(mean[n].flatten().numpy(), m, rtol=1e-10)
        np.testing.assert_allclose(std[n].flatten().numpy(), s, rtol=1e-10)


@pytest.mark.parametrize("soft", [False, True])
def test_calc_mean_std_with_mask_matches_weighted_formula(soft):
    g = torch.Generator().manual_seed(1)
    feat = torch.randn(2, 4, 6, 6, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 1, 6, 6, generator=g, dtype=torch.float64)
    if not soft:
        mask = (mask > 0.5).double()
    mean, std = AF.calc_mean_std(feat, mask)
    for n in range(2):
        m, s = _np_stats(feat[n].reshape(4, -1).numpy(), mask[n].flatten().numpy())
        np.testing.assert_allclose(mean[n].flatten().numpy(), m, rtol=1e-10)
        np.testing.assert_allclose(std[n].flatten().numpy(), s, rtol=1e-10)


def test_calc_mean_std_rejects_bad_shapes():
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        AF.calc_mean_std(torch.zeros(3, 4, 4))
    with pytest.raises(InputError, match="mask must be"):
        AF.calc_mean_std(torch.zeros(1, 3, 4, 4), torch.ones(1, 1, 5, 4))


def test_adain_matches_formula_and_transfers_statistics():
    g = torch.Generator().manual_seed(2)
    c = torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64)
    s = torch.randn(1, 3, 5, 6, generator=g, dtype=torch.float64) * 4 + 2
    out = AF.adain(c, s)
    cm, cs = _np_stats(c[0].reshape(3, -1).numpy())
    sm, ss = _np_stats(s[0].reshape(3, -1).numpy())
    expect = (c[0].reshape(3, -1).numpy() - cm[:, None]) / cs[:, None] * ss[:, None] + sm[:, None]
    np.testing.assert_allclose(out[0].reshape(3, -1).numpy(), expect, rtol=1e-9, atol=1e-12)
    om, os_ = AF.calc_mean_std(out)
    torch.testing.assert_close(om.flatten(), torch.from_numpy(sm), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(os_.flatten(), torch.from_numpy(ss), rtol=1e-3, atol=1e-4)


def test_alpha_blend_is_eq14():
    f, t = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
    torch.testing.assert_close(AF.alpha_blend(f, t, 0.25), 0.75 * f + 0.25 * t)
    with pytest.raises(InputError, match="alpha"):
        AF.alpha_blend(f, t, 1.5)


def test_blend_stats_equals_blending_adain_outputs():
    """Eq. 15: sum_k w_k AdaIN(x, s_k) == AdaIN with blended statistics (weights normalised)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 6, 6, generator=g, dtype=torch.float64)
    styles = [torch.randn(1, 4, 5, 5, generator=g, dtype=torch.float64) * (k + 1) for k in range(3)]
    stats = [AF.calc_mean_std(s) for s in styles]
    raw_w = [2.0, 1.0, 1.0]
    mean, std = AF.blend_stats([m for m, _ in stats], [s for _, s in stats], raw_w)
    w = np.array(raw_w) / sum(raw_w)
    expect = sum(wk * AF.adain(x, s) for wk, s in zip(w, styles, strict=True))
    torch.testing.assert_close(AF.adain_with_stats(x, mean, std), expect, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [[1.0], [-1.0, 2.0], [0.0, 0.0], [float("nan"), 1.0]])
def test_blend_stats_rejects_bad_weights(bad):
    m = [torch.zeros(1, 2, 1, 1)] * 2
    with pytest.raises(InputError, match="weight"):
        AF.blend_stats(m, m, bad)


def test_regional_adain_each_region_gets_its_own_statistics():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 6, 10, 10, generator=g)
    labels = torch.zeros(1, 10, 10, dtype=torch.long)
    labels[:, :, 5:] = 1
    labels[:, 8:, :] = 7  # belongs to no region: keeps the content
    masks = AF.labels_to_masks(labels, 2)
    means = torch.randn(2, 6, generator=g) * 3
    stds = torch.rand(2, 6, generator=g) * 2 + 0.5
    out = AF.regional_adain(x, masks, means, stds)
    for r in range(2):
        m, s = AF.calc_mean_std(out, masks[:, r : r + 1])
        torch.testing.assert_close(m.flatten(), means[r], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(s.flatten(), stds[r], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(out[..., 8:, :], x[..., 8:, :])


def test_regional_adain_alpha_per_region_and_soft_masks():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 3, 4, 4, generator=g)
    means, stds = torch.randn(2, 3, generator=g), torch.rand(2, 3, generator=g) + 0.5
    full = torch.ones(1, 1, 4, 4)
    # alpha 0 gives back the content; a soft 50/50 mask is the average of the two regions' targets
    out0 = AF.regional_adain(x, full, means[:1], stds[:1], alphas=[0.0])
    torch.testing.assert_close(out0, x)
    half = torch.full((1, 2, 4, 4), 0.5)
    out = AF.regional_adain(x, half, means, stds)
    t0 = AF.adain_with_stats(x, means[0].view(1, 3, 1, 1), stds[0].view(1, 3, 1, 1))
    t1 = AF.adain_with_stats(x, means[1].view(1, 3, 1, 1), stds[1].view(1, 3, 1, 1))
    torch.testing.assert_close(out, 0.5 * (t0 + t1), rtol=1e-5, atol=1e-5)


def test_coral_gives_target_mean_and_covariance_for_different_sizes():
    g = torch.Generator().manual_seed(6)
    # correlated colours, different sizes, values well inside [0, 1] so clamping does not interfere
    mix = torch.tensor([[0.10, 0.02, 0.01], [0.03, 0.08, 0.02], [0.01, 0.04, 0.12]])
    src = (mix @ torch.randn(3, 40 * 50, generator=g)).reshape(3, 40, 50) + 0.5
    tgt = (mix.T @ torch.randn(3, 17 * 23, generator=g)).reshape(3, 17, 23) * 0.7 + torch.tensor([0.3, 0.5, 0.6]).view(3, 1, 1)
    out = AF.coral(src.double(), tgt.double())
    assert out.shape == src.shape
    o, t = out.reshape(3, -1), tgt.double().reshape(3, -1)
    torch.testing.assert_close(o.mean(1), t.mean(1), atol=1e-6, rtol=0)
    cov = lambda a: (a - a.mean(1, keepdim=True)) @ (a - a.mean(1, keepdim=True)).T / a.shape[1]  # noqa: E731
    torch.testing.assert_close(cov(o), cov(t), atol=2e-5, rtol=1e-3)


def test_coral_rejects_non_rgb():
    with pytest.raises(InputError, match=r"\(3, H, W\)"):
        AF.coral(torch.rand(4, 8, 8), torch.rand(3, 8, 8))


def test_luminance_helpers():
    g = torch.Generator().manual_seed(7)
    content, stylized = torch.rand(3, 8, 8, generator=g), torch.rand(3, 8, 8, generator=g)
    out = AF.combine_luminance(stylized, content)
    y_out, y_sty = AF.rgb_to_yiq(out)[0], AF.rgb_to_yiq(stylized)[0]
    iq_out, iq_c = AF.rgb_to_yiq(out)[1:], AF.rgb_to_yiq(content)[1:]
    inside = (out > 1e-4).all(0) & (out < 1 - 1e-4).all(0)  # where clamping did not act
    torch.testing.assert_close(y_out[inside], y_sty[inside], atol=1e-5, rtol=0)
    torch.testing.assert_close(iq_out[:, inside], iq_c[:, inside], atol=1e-5, rtol=0)
    torch.testing.assert_close(AF.yiq_to_rgb(AF.rgb_to_yiq(content)), content, atol=1e-5, rtol=0)
    matched = AF.match_luminance(stylized, content * 0.5)
    yc = AF.rgb_to_yiq(content * 0.5)[0]
    torch.testing.assert_close(matched[0].mean(), yc.mean(), atol=1e-4, rtol=0)
