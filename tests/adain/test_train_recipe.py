"""The training recipe's flags reach the losses and the batches; held-out evaluation; a fresh-Adam start."""

from __future__ import annotations

import argparse
import csv

import pytest
import torch

from adain.errors import InputError
from adain.functional import calc_mean_std
from adain.losses import TORCH_STYLE_LAYER_WEIGHTS, style_loss
from adain.networks import TAPS, Decoder
from adain.tensorfile import load_tensors
from adain.train import TrainConfig, add_train_arguments, config_from_args, run_training, train_step
from adain.train_data import BatchSource, Pool, Sampling, corpus_pools
from adain.train_eval import EVAL_LOG_COLUMNS, evaluate_decoder, load_heldout, psnr
from adain.weights import build_encoder, load_decoder
from tests.corpus import make_tiny_corpus


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    return p.parse_args(["--checkpoint", "x.ckpt", "--iterations", "1", *argv])


def _feats(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {t: torch.randn(2, 3 + i, 5, 5, generator=g) * (i + 1) for i, t in enumerate(TAPS)}


def test_style_layer_weights_weight_each_tap():
    a, b = _feats(0), _feats(1)
    per_tap = [
        ((calc_mean_std(a[t])[0] - calc_mean_std(b[t])[0]) ** 2).mean()
        + ((calc_mean_std(a[t])[1] - calc_mean_std(b[t])[1]) ** 2).mean()
        for t in TAPS
    ]
    expect = sum(w * x for w, x in zip(TORCH_STYLE_LAYER_WEIGHTS, per_tap, strict=True))
    torch.testing.assert_close(style_loss(a, b, TORCH_STYLE_LAYER_WEIGHTS), expect)
    torch.testing.assert_close(style_loss(a, b, (0, 0, 0, 1)), per_tap[3])
    with pytest.raises(ValueError, match="needs 4 weights"):
        style_loss(a, b, (1.0, 2.0))


def test_defaults_are_the_chosen_recipe_and_the_old_one_is_two_flags():
    cfg = config_from_args(_parse())
    assert (cfg.style_weight, cfg.style_layer_weights, cfg.recon_share) == (15.0, (1.0, 1.0, 1.0, 1.0), 0.25)
    assert cfg.recon_layers == ("relu1_1", "relu2_1", "relu3_1") and cfg.recon_count(0) == 2
    old = config_from_args(_parse("--style-weight", "10", "--recon-share", "0", "--recon-layers"))
    assert old.recon_count(0) == 0 and old.recon_layers == () and old.style_weight == 10.0


def test_recipe_flags_reach_the_config():
    argv = ["--style-layer-weights", "torch", "--style-weight", "1", "--recon-share", "0.25", "--warmup", "10",
            "--recon-layers", "relu1_1", "relu3_1", "--recon-layer-weight", "0.3", "--pixel-weight", "2",
            "--painting-weight", "5", "--texture-share", "0.2", "--lr", "5e-5", "--lr-decay", "0"]  # fmt: skip
    cfg = config_from_args(_parse(*argv))
    assert cfg.style_layer_weights == TORCH_STYLE_LAYER_WEIGHTS and cfg.style_weight == 1.0
    assert cfg.recon_layers == ("relu1_1", "relu3_1") and cfg.pixel_weight == 2.0 and cfg.recon_layer_weight == 0.3
    assert cfg.sampling == Sampling(painting_weight=5.0, texture_share=0.2)
    assert (cfg.lr, cfg.lr_decay) == (5e-5, 0.0)
    assert [cfg.recon_count(i) for i in (0, 9, 10, 500)] == [8, 8, 2, 2]  # warm-up: all; then a quarter of 8
    assert config_from_args(_parse("--style-layer-weights", "1,0,2.5,3")).style_layer_weights == (1.0, 0.0, 2.5, 3.0)
    with pytest.raises(SystemExit):
        _parse("--style-layer-weights", "1,2,3")
    with pytest.raises(InputError, match="--recon-share"):
        config_from_args(_parse("--recon-share", "1.5"))
    with pytest.raises(InputError, match="--recon-layer-weight"):
        config_from_args(_parse("--recon-layer-weight", "-1"))


def test_train_step_applies_the_recipe(samples):
    """The loss that is minimised is content + λ Σ w_l style_l + recon terms, on the right samples."""
    torch.manual_seed(0)
    enc, dec = build_encoder(), Decoder()
    src = BatchSource(*(Pool([p], torch.ones(1).numpy()) for p in (samples / "content_coffee.jpg",
                      samples / "style_wesnoth_painted_mountains.jpg")), Sampling(), 3, 32, seed=0)  # fmt: skip
    content, style = src.batch(0, recon=1)
    plain = TrainConfig(batch=3, style_weight=10.0, recon_share=0.0, recon_layers=())  # the recipe before session 8
    recipe = TrainConfig(batch=3, style_weight=2.0, style_layer_weights=(0.5, 1.0, 0.0, 4.0), recon_layers=("relu2_1",),
                         recon_layer_weight=0.3, pixel_weight=3.0)  # fmt: skip
    a = train_step(enc, dec, content, style, plain, 1, None)
    b = train_step(enc, dec, content, style, recipe, 1, None)
    torch.testing.assert_close(b.content, a.content)
    for x, y in zip(a.style_layers, b.style_layers, strict=True):
        torch.testing.assert_close(x, y)
    assert float(a.recon.detach()) == 0.0 and float(b.recon.detach()) > 0  # the extra terms only where the recipe asks for them
    s = a.style_layers
    torch.testing.assert_close(b.total(recipe), b.content + 2.0 * (0.5 * s[0] + s[1] + 4.0 * s[3]) + b.recon)
    torch.testing.assert_close(a.total(plain), a.content + 10.0 * sum(s))
    with torch.no_grad():
        out = dec(enc(content[:1])["relu4_1"])
        feats = enc(out)
        deep = ((feats["relu2_1"] - enc(content[:1])["relu2_1"]) ** 2).mean()
        expect_recon = 0.3 * deep + 3.0 * ((out - content[:1]) ** 2).mean()
    torch.testing.assert_close(b.recon.detach(), expect_recon, rtol=1e-4, atol=1e-5)


def test_reconstruction_samples_keep_the_other_draws(samples):
    pools = (Pool(sorted(samples.glob("content_*.jpg")), torch.full((3,), 1 / 3).numpy()),
             Pool(sorted(samples.glob("style_*.jpg")), torch.full((4,), 0.25).numpy()))  # fmt: skip
    src = BatchSource(*pools, Sampling(), 4, 32, seed=3)
    c0, s0 = src.batch(7)
    c2, s2 = src.batch(7, recon=2)
    assert torch.equal(c0, c2) and torch.equal(s2[:2], c2[:2]) and torch.equal(s2[2:], s0[2:])
    assert not torch.equal(s0[:2], c0[:2])


def test_heldout_evaluation_measures_reconstruction_and_pairs(tmp_path, samples):
    corpus = make_tiny_corpus(tmp_path, samples)
    held = load_heldout(corpus, contents=5, styles=5, size=64)
    assert held.contents.shape == (2, 3, 64, 64) and held.styles.shape[1:] == (3, 64, 64)
    assert all(f.startswith("content/heldout_") for f in held.content_files)
    torch.manual_seed(0)
    enc = build_encoder()
    shipped, _ = load_decoder()
    good, bad = evaluate_decoder(enc, shipped, held), evaluate_decoder(enc, Decoder(), held)
    assert good.psnr_alpha0 > bad.psnr_alpha0 + 3  # a trained decoder reconstructs; a random one does not
    assert 0 < good.content < bad.content and 0 < good.style
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(psnr(x, x.clamp(0, 1) * 0 + 0.5), -10 * torch.log10(((x - 0.5) ** 2).flatten(1).mean(1)))


def test_an_evaluation_stops_when_asked(tmp_path, samples):
    """Training's SIGTERM flag is polled before each style: a stop is not held up by a whole evaluation."""
    from adain.train_eval import EvaluationStoppedError

    held = load_heldout(make_tiny_corpus(tmp_path, samples), contents=1, styles=2, size=64)
    polls: list[int] = []

    def stop_after_first_style() -> bool:
        polls.append(1)
        return len(polls) > 1

    with pytest.raises(EvaluationStoppedError):
        evaluate_decoder(build_encoder(), load_decoder()[0], held, stop_after_first_style)
    assert len(polls) == 2, "one style was measured, then the stop was seen before the second"


def test_training_evaluates_every_n_iterations_and_starts_from_weights(tmp_path, samples):
    """--eval-every logs the held-out figures; --init-from starts from exported weights with a fresh Adam."""
    corpus = make_tiny_corpus(tmp_path, samples)
    ckpt = tmp_path / "run" / "d.ckpt"
    args = _parse("--corpus", str(corpus), "--crop", "32", "--batch", "2", "--device", "cpu", "--precision", "fp32",
                  "--eval-every", "2", "--eval-contents", "1", "--eval-styles", "2", "--eval-size", "64",
                  "--recon-share", "0.5", "--init-from", str(samples.parents[0] / "decoder.safetensors"))  # fmt: skip
    args.checkpoint = ckpt
    args.iterations = start = int(load_decoder()[1]["iterations"])  # the shipped weights' own count ...
    args.iterations += 3  # ... goes on: 3 more iterations
    assert run_training(args) == 0
    rows = list(csv.DictReader(ckpt.with_suffix(".eval.csv").open()))
    assert tuple(rows[0]) == EVAL_LOG_COLUMNS
    assert [int(r["iteration"]) - start for r in rows] == [0, 2] if start % 2 == 0 else [0, 1]
    torch.manual_seed(0)
    shipped = evaluate_decoder(build_encoder(), load_decoder()[0], load_heldout(corpus, 1, 2, 64))
    assert abs(float(rows[0]["psnr_alpha0"]) - shipped.psnr_alpha0) < 1e-3  # the shipped weights were evaluated first
    assert abs(float(rows[0]["style"]) - shipped.style) < 1e-3
    log = list(csv.DictReader(ckpt.with_suffix(".log.csv").open()))
    assert [r["recon_samples"] for r in log] == ["1", "1", "1"] and float(log[0]["style_relu4_1"]) > 0
    tensors, md = load_tensors(ckpt)
    assert float(tensors["adam.0.step"]) == 3.0  # a fresh Adam: three steps, not the shipped run's count
    assert '"init_from"' in md["meta"]
    args.iterations += 1  # resumes the checkpoint; --init-from is only for a new run
    assert run_training(args) == 0
    assert int(list(csv.DictReader(ckpt.with_suffix(".eval.csv").open()))[-1]["iteration"]) == start + 4


def test_init_from_a_checkpoint_drops_its_adam_and_keeps_its_count(tmp_path, samples):
    src, dst = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    corpus = make_tiny_corpus(tmp_path, samples)
    args = _parse("--corpus", str(corpus), "--crop", "32", "--batch", "2", "--device", "cpu", "--precision", "fp32")
    args.checkpoint, args.iterations = src, 2
    assert run_training(args) == 0
    args.checkpoint, args.iterations, args.init_from = dst, 4, src
    assert run_training(args) == 0
    a, _ = load_tensors(src)
    b, md = load_tensors(dst)
    assert md["iteration"] == "4" and float(b["adam.0.step"]) == 2.0  # two fresh Adam steps after iteration 2
    assert not torch.equal(a["decoder.convs.dec1_1.weight"], b["decoder.convs.dec1_1.weight"])


def test_eval_needs_a_corpus(tmp_path, samples):
    args = _parse("--content", str(samples), "--style", str(samples), "--eval-every", "5")
    args.checkpoint = tmp_path / "d.ckpt"
    with pytest.raises(InputError, match="--eval-every needs --corpus"):
        run_training(args)


def test_texture_share_and_painting_weight_reweight_the_pools(tmp_path, samples):
    corpus = make_tiny_corpus(tmp_path, samples)
    content, style = corpus_pools(corpus, Sampling(painting_weight=2.0))
    assert abs(content.weights.sum() - 1) < 1e-9 and abs(style.weights.sum() - 1) < 1e-9
    with pytest.raises(InputError, match="texture share"):
        corpus_pools(corpus, Sampling(texture_share=1.5))
