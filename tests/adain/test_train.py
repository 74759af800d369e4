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


def test_snapshots_export_the_decoder_every_n_iterations(tmp_path, samples):
    from adain import StyleTransfer

    ckpt = tmp_path / "d.ckpt"
    args = _args(tmp_path, samples, ckpt, 4)
    args.snapshot_every = 2
    assert run_training(args) == 0
    snaps = sorted((tmp_path / "d.snapshots").iterdir())
    assert [p.name for p in snaps] == ["decoder-000002.safetensors", "decoder-000004.safetensors"]
    first, meta = load_tensors(snaps[0])
    last, meta_last = load_tensors(snaps[1])
    assert (meta["kind"], meta["iterations"], meta_last["iterations"]) == ("decoder", "2", "4")
    ck, _ = load_tensors(ckpt)
    w = "dec1_1.weight"  # the file's name for the module's convs.dec1_1.weight
    assert last[w].dtype == torch.float16
    torch.testing.assert_close(last[w], ck[f"decoder.convs.{w}"].half(), rtol=0, atol=0)  # the final state, in fp16
    assert not torch.equal(first[w], last[w])  # iteration 2's own state, not a copy of the last
    st = StyleTransfer.load(snaps[0], device="cpu", precision="fp32")
    assert st.decoder_metadata["iterations"] == "2"


def test_negative_snapshot_interval_is_refused(tmp_path, samples):
    import pytest

    from adain.errors import InputError

    args = _args(tmp_path, samples, tmp_path / "d.ckpt", 1)
    args.snapshot_every = -5
    with pytest.raises(InputError, match="--snapshot-every must be 0"):
        run_training(args)
