"""StyleTransfer with the real encoder and the shipped decoder: the runtime controls of §7.3."""

from __future__ import annotations

import pytest
import torch

from adain import AdainError, CancelledError, InputError, Region, StyleStats, StyleTransfer, StylizeResult
from adain import functional as AF
from adain.regions import pad_masks


def test_load_default_uses_local_weights(model):
    info = model.info()
    assert info["encoder"] == "vgg19-normalised-adain-v1"
    assert info["precision"] == "fp32" and info["device"].startswith("cpu")


def test_features_have_the_four_taps_at_the_input_size(model):
    x = torch.rand(1, 3, 37, 50)
    f = model.features(x)
    assert list(f) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
    assert f["relu1_1"].shape == (1, 64, 37, 50)
    assert f["relu2_1"].shape == (1, 128, 19, 25)
    assert f["relu3_1"].shape == (1, 256, 10, 13)
    assert f["relu4_1"].shape == (1, 512, 5, 7)


def test_output_has_the_content_size_and_range(model, content_img, style_imgs):
    out = model.stylize(content_img[:, :100, :90], style_imgs[0])
    assert out.shape == (3, 100, 90) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    batch = model.stylize(torch.stack([content_img, content_img.flip(-1)]), style_imgs[0])
    assert batch.shape == (2, *content_img.shape)


def test_alpha_zero_is_decode_of_content_features(model, content_img, style_imgs):
    out = model.stylize(content_img, style_imgs[0], alpha=0.0)
    with torch.inference_mode():
        f = model.encoder(content_img[None], last="relu4_1")["relu4_1"]
        ref = model.decoder(f, size=content_img.shape[-2:]).clamp(0, 1)[0]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_cached_statistics_equal_the_style_image(model, content_img, style_imgs):
    stats = model.encode_style(style_imgs[1])
    assert isinstance(stats, StyleStats) and stats.mean.shape == (512,)
    torch.testing.assert_close(model.stylize(content_img, stats), model.stylize(content_img, style_imgs[1]))


def test_weights_one_zero_equal_the_single_style(model, content_img, style_imgs):
    s0, s1 = model.encode_style(style_imgs[0]), model.encode_style(style_imgs[1])
    single = model.stylize(content_img, s0, alpha=0.7)
    mixed = model.stylize(content_img, [s0, s1], alpha=0.7, weights=[1.0, 0.0])
    torch.testing.assert_close(mixed, single, atol=1e-6, rtol=0)
    half = model.stylize(content_img, [s0, s1], weights=[0.5, 0.5])
    assert (half - single).abs().mean() > 1e-3  # the second style does change the result


def test_each_region_gets_its_own_style_statistics(model, content_img, style_imgs):
    """In feature space the target t of each region carries exactly its style's relu4_1 statistics."""
    s0, s1 = model.encode_style(style_imgs[0]), model.encode_style(style_imgs[2])
    h, w = content_img.shape[-2:]
    labels = torch.zeros(h, w, dtype=torch.long)
    labels[:, w // 2 :] = 1
    feat = model.features(content_img)["relu4_1"]
    masks = AF.downsample_masks(pad_masks(AF.labels_to_masks(labels, 2)), tuple(feat.shape[-2:]))
    hard = (masks == 1).float()  # cells wholly inside one region
    t = AF.regional_adain(feat, hard, torch.stack([s0.mean, s1.mean]), torch.stack([s0.std, s1.std]))
    for r, s in enumerate((s0, s1)):
        m, sd = AF.calc_mean_std(t, hard[:, r : r + 1])
        # a channel that is constant over the region carries no variation to rescale: skip those
        live = AF.calc_mean_std(feat, hard[:, r : r + 1])[1].flatten() > 0.05
        assert live.sum() > 400
        torch.testing.assert_close(m.flatten()[live], s.mean[live], rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(sd.flatten()[live], s.std[live], rtol=1e-2, atol=1e-2)
    # and end to end: the stylized left half is closer (in relu4_1 statistics) to its own style
    out = model.stylize(content_img, regions=[Region([s0]), Region([s1])], masks=labels)
    assert isinstance(out, torch.Tensor)
    for r, (own, other) in enumerate(((s0, s1), (s1, s0))):
        half = out[:, :, : w // 2] if r == 0 else out[:, :, w // 2 :]
        m, sd = AF.calc_mean_std(model.features(half)["relu4_1"])
        d_own = (m.flatten() - own.mean).norm() + (sd.flatten() - own.std).norm()
        d_other = (m.flatten() - other.mean).norm() + (sd.flatten() - other.std).norm()
        assert d_own < d_other


def test_regions_with_passes_and_alpha(model, content_img, style_imgs):
    s0, s1 = model.encode_style(style_imgs[0]), model.encode_style(style_imgs[1])
    h, w = content_img.shape[-2:]
    soft = torch.zeros(1, 2, h, w)
    soft[:, 0, :, : w // 2] = 1
    soft[:, 1, :, w // 2 :] = 1
    res = model.stylize_passes(content_img, regions=[Region([s0], alpha=1.0), Region([s1], alpha=0.0)], masks=soft)
    assert isinstance(res, StylizeResult) and len(res.passes) == 2
    assert res.combined.shape == res.passes[0].shape == content_img.shape
    torch.testing.assert_close(res.passes[0], model.stylize(content_img, s0), atol=1e-5, rtol=0)
    torch.testing.assert_close(res.passes[1], model.stylize(content_img, s0, alpha=0.0), atol=1e-5, rtol=0)


def test_stylize_returns_a_tensor_and_stylize_passes_a_result_of_the_same_shapes(model, content_img, style_imgs):
    """One return type each (issue 15): ``stylize`` an image, ``stylize_passes`` a StylizeResult whose combined image is
    ``stylize``'s; with a lone style there is one pass, that style over the whole frame, i.e. the same image."""
    s0 = model.encode_style(style_imgs[0])
    batch = torch.stack([content_img, content_img.flip(-1)])[..., :40, :48]
    for content in (batch, batch[0]):
        out = model.stylize(content, s0, 0.6)
        res = model.stylize_passes(content, s0, 0.6)
        assert isinstance(out, torch.Tensor) and isinstance(res, StylizeResult)
        assert len(res.passes) == 1 and res.combined.shape == res.passes[0].shape == out.shape == content.shape
        torch.testing.assert_close(res.combined, out, atol=1e-6, rtol=0)
        torch.testing.assert_close(res.passes[0], out, atol=1e-6, rtol=0)
    with pytest.raises(TypeError):
        model.stylize(batch, s0, passes=True)


@pytest.mark.parametrize("mode", ["coral", "luminance"])
def test_colour_preservation_keeps_content_colours(model, content_img, style_imgs, mode):
    style = style_imgs[3]
    plain = model.stylize(content_img, style)
    kept = model.stylize(content_img, style, preserve_color=mode)
    c_mean = content_img.mean((1, 2))
    # colour-preserved output's mean colour is nearer the content's than the plain stylization's
    assert (kept.mean((1, 2)) - c_mean).norm() < (plain.mean((1, 2)) - c_mean).norm()
    if mode == "luminance":
        iq_out, iq_c = AF.rgb_to_yiq(kept)[1:], AF.rgb_to_yiq(content_img)[1:]
        assert (iq_out - iq_c).abs().mean() < 0.01


def test_tiled_and_untiled_agree_on_a_large_frame(model, samples):
    from adain.images import load_image

    content = load_image(samples / "content_astronaut.jpg", 1024)[:, :1024, :1024]
    style = model.encode_style(load_image(samples / "style_wesnoth_httt_wizards.jpg", 256))
    whole = model.stylize(content, style)
    tiled = model.stylize(content, style, tile=384)
    assert tiled.shape == whole.shape == (3, 1024, 1024)
    diff = (tiled - whole).abs()
    assert float(diff.mean()) < 2 / 255, float(diff.mean())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"preserve_color": "sepia"}, "preserve_color"),
        ({"weights": [1.0, 2.0]}, "weights for 1 styles"),
    ],
)
def test_bad_arguments_say_what_is_wrong(model, content_img, style_imgs, kwargs, match):
    with pytest.raises(InputError, match=match):
        model.stylize(content_img, style_imgs[0], **kwargs)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (torch.rand(4, 32, 32), r"\(N, 3, H, W\)"),
        (torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8), "float"),
        (torch.rand(3, 8, 8), "at least 16x16"),
        ("not a tensor", "torch.Tensor"),
    ],
)
def test_bad_content_is_refused(model, style_imgs, content, match):
    with pytest.raises(InputError, match=match):
        model.stylize(content, style_imgs[0])


def test_bad_masks_are_refused(model, content_img, style_imgs):
    regions = [Region([style_imgs[0]]), Region([style_imgs[1]])]
    with pytest.raises(InputError, match="soft masks must be"):
        model.stylize(content_img, regions=regions, masks=torch.rand(1, 3, 10, 10))
    with pytest.raises(InputError, match="label map"):
        model.stylize(content_img, regions=regions, masks=torch.zeros(5, 5, dtype=torch.long))
    with pytest.raises(InputError, match="masks="):
        model.stylize(content_img, regions=regions)


def test_should_stop_stops_within_one_layer_and_the_next_call_is_unaffected(model, content_img, style_imgs):
    style = model.encode_style(style_imgs[0])
    polls: list[int] = []

    def after_four() -> bool:
        polls.append(1)
        return len(polls) > 4

    with pytest.raises(CancelledError, match="cancelled"):
        model.stylize(content_img, style, should_stop=after_four)
    assert len(polls) == 5, "polled before every convolution and stopped at the first true"
    out = model.stylize(content_img, style)  # the stop function was only for that call
    torch.testing.assert_close(out, model.stylize(content_img, style, should_stop=lambda: False))
    assert issubclass(CancelledError, AdainError)


def test_should_stop_is_polled_per_tile_by_compiled_networks(content_img, style_imgs):
    st = StyleTransfer.load_default(device="cpu", precision="fp32", compile="default")
    polls: list[int] = []
    with pytest.raises(CancelledError):
        st.stylize(content_img, style_imgs[0], tile=64, should_stop=lambda: bool(polls.append(1)) or len(polls) > 2)
    assert len(polls) == 3  # no hooks inside compiled graphs: one poll per tile (the style image is tiled too)


def test_unknown_device_and_precision():
    from adain.model import resolve_device, resolve_precision

    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu7")
    with pytest.raises(InputError, match="precision"):
        resolve_precision("int3", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA"):
            resolve_device("cuda")


def test_bf16_on_cpu_is_close_to_fp32(content_img, style_imgs):
    from adain.model import cpu_supports_bf16

    if not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16")
    fp32 = StyleTransfer.load_default(device="cpu", precision="fp32")
    bf16 = StyleTransfer.load_default(device="cpu", precision="bf16")
    a = fp32.stylize(content_img, style_imgs[0])
    b = bf16.stylize(content_img, bf16.encode_style(style_imgs[0]))
    assert float((a - b).abs().mean()) < 4 / 255


def test_cuda_matches_cpu(device, content_img, style_imgs):
    if device == "cpu":
        pytest.skip("compares CUDA to CPU")
    cpu = StyleTransfer.load_default(device="cpu", precision="fp32")
    for precision in ("fp32", "fp16", "bf16"):
        gpu = StyleTransfer.load_default(device=device, precision=precision)
        out = gpu.stylize(content_img, gpu.encode_style(style_imgs[0]))
        ref = cpu.stylize(content_img, style_imgs[0])
        assert float((out - ref).abs().mean()) < (1e-3 if precision == "fp32" else 4 / 255), precision


def test_compile_modes_are_checked():
    from adain.model import check_compile_mode

    with pytest.raises(InputError, match="unknown compile mode 'fast'"):
        check_compile_mode("fast", torch.device("cpu"))
    with pytest.raises(InputError, match="needs a CUDA device"):
        check_compile_mode("reduce-overhead", torch.device("cpu"))
    assert check_compile_mode("default", torch.device("cpu")) == "default"


def test_compiled_networks_give_the_eager_result_on_cpu(model, content_img, style_imgs):
    """torch.compile (inductor, C++ on the CPU) is an optimisation only: same pixels, regions and passes included."""
    compiled = StyleTransfer(model.encoder, model.decoder, "cpu", "fp32", compile="default")
    assert compiled.info()["compile"] == "default" and model.info()["compile"] == "off"
    content = content_img[:, :64, :80]
    stats = [model.encode_style(s) for s in style_imgs[:2]]
    labels = (torch.arange(80) * 2 // 80).view(1, -1).expand(64, -1)
    regions = [Region([stats[0]]), Region([stats[1]], alpha=0.5)]
    got = compiled.stylize_passes(content, regions=regions, masks=labels)
    ref = model.stylize_passes(content, regions=regions, masks=labels)
    assert isinstance(got, StylizeResult) and isinstance(ref, StylizeResult)
    torch.testing.assert_close(got.combined, ref.combined, atol=2e-4, rtol=0)
    for g, r in zip(got.passes, ref.passes, strict=True):
        torch.testing.assert_close(g, r, atol=2e-4, rtol=0)


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_networks_on_cuda_match_eager(mode, content_img, style_imgs):
    """CUDA graphs reuse their output buffers: passes decoded one after another must all survive."""
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine")
    eager = StyleTransfer.load_default(device="cuda", precision="fp16")
    fast = StyleTransfer(eager.encoder, eager.decoder, "cuda", "fp16", compile=mode)
    stats = [eager.encode_style(s) for s in style_imgs[:3]]
    h, w = content_img.shape[-2:]
    labels = (torch.arange(w) * 3 // w).view(1, -1).expand(h, -1)
    regions = [Region([s]) for s in stats]
    for _ in range(3):  # graphs are recorded after warm-up runs; the replays are what must match
        got = fast.stylize_passes(content_img, regions=regions, masks=labels)
    ref = eager.stylize_passes(content_img, regions=regions, masks=labels)
    assert isinstance(got, StylizeResult) and isinstance(ref, StylizeResult)
    assert float((got.combined - ref.combined).abs().mean()) < 2 / 255
    for g, r in zip(got.passes, ref.passes, strict=True):
        assert float((g - r).abs().mean()) < 2 / 255
    assert float((got.passes[0] - got.passes[1]).abs().mean()) > 1e-3  # each pass its own buffer, not the last one
    tiled = fast.stylize(content_img, stats[0], tile=64)
    assert float((tiled - eager.stylize(content_img, stats[0], tile=64)).abs().mean()) < 2 / 255
