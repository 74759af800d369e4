"""Training: losses against their formulas, and an interrupted run resumes exactly."""

from __future__ import annotations

import argparse

import torch

from adain.functional import calc_mean_std
from adain.losses import content_loss, style_loss
from adain.networks import Decoder, Encoder
from adain.tensorfile import load_tensors
from adain.train import add_train_arguments, run_training


def test_style_loss_is_sum_of_mean_and_std_mse():
    g = torch.Generator().manual_seed(0)
    a = {t: torch.randn(2, 4, 6, 6, generator=g) for t in ("relu1_1", "relu2_1", "relu3_1", "relu4_1")}
    b = {t: torch.randn(2, 4, 5, 5, generator=g) * 2 for t in a}
    expect = sum(
        ((calc_mean_std(a[t])[0] - calc_mean_std(b[t])[0]) ** 2).mean()
        + ((calc_mean_std(a[t])[1] - calc_mean_std(b[t])[1]) ** 2).mean()
        for t in a
    )
    torch.testing.assert_close(style_loss(a, b), expect)
    torch.testing.assert_close(content_loss(a["relu1_1"], a["relu1_1"] + 1), torch.tensor(1.0))


def _args(tmp_path, samples, ckpt, iterations):
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    content, style = tmp_path / "content", tmp_path / "style"
    for d, pattern in ((content, "content_*"), (style, "style_*")):
        d.mkdir(exist_ok=True)
        for f in samples.glob(pattern):
            (d / f.name).write_bytes(f.read_bytes())
    return p.parse_args(["--content", str(content), "--style", str(style), "--checkpoint", str(ckpt),
                         "--iterations", str(iterations), "--crop", "32", "--batch", "2", "--device", "cpu",
                         "--precision", "fp32", "--save-every", "1"])  # fmt: skip


def test_resume_is_exact(tmp_path, samples):
    straight, resumed = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    assert run_training(_args(tmp_path, samples, straight, 4)) == 0
    assert run_training(_args(tmp_path, samples, resumed, 2)) == 0
    assert run_training(_args(tmp_path, samples, resumed, 4)) == 0
    a, ma = load_tensors(straight)
    b, mb = load_tensors(resumed)
    assert ma["iteration"] == mb["iteration"] == "4"
    for k in a:
        if k.startswith(("decoder.", "adam.")):
            assert torch.equal(a[k], b[k]), k
    torch.manual_seed(0)  # as run_training: seed, build the encoder, then initialise the decoder
    Encoder(), (d0 := Decoder().state_dict())
    assert not torch.equal(a["decoder.convs.dec1_1.weight"], d0["convs.dec1_1.weight"])  # it did train
    log = (resumed.with_suffix(".log.csv")).read_text().splitlines()
    assert log[0].startswith("iteration,") and len(log) == 5
