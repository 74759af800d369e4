"""scripts/average_decoders.py: the mean of real decoder files, loadable, and refusals that say why."""

from __future__ import annotations

import json

import pytest
import torch

from adain import StyleTransfer
from adain.tensorfile import load_tensors, save_tensors
from adain.weights import DEFAULT_DECODER_PATH
from tests.scripts.script_loader import load_script


@pytest.fixture(scope="module")
def avg():
    return load_script("average_decoders")


def _snapshot(path, iterations: int, shift: float):
    tensors, meta = load_tensors(DEFAULT_DECODER_PATH)
    save_tensors(path, {k: (v.float() + shift).half() for k, v in tensors.items()}, meta | {"iterations": str(iterations)})
    return path


def test_mean_of_snapshots_loads_as_a_decoder(avg, tmp_path, capsys):
    a = _snapshot(tmp_path / "a.safetensors", 1000, -0.25)
    b = _snapshot(tmp_path / "b.safetensors", 1500, +0.25)
    out = tmp_path / "mean.safetensors"
    assert avg.main([str(b), str(a), "--out", str(out)]) == 0
    assert "mean of 2 decoders, iterations [1000, 1500]" in capsys.readouterr().out
    mean, meta = load_tensors(out)
    ref, _ = load_tensors(DEFAULT_DECODER_PATH)
    for k in ref:
        assert mean[k].dtype == torch.float16
        torch.testing.assert_close(mean[k].float(), ref[k].float(), atol=2e-3, rtol=2e-3)  # the ±0.25 shifts cancel
    assert (meta["iterations"], json.loads(meta["averaged_iterations"])) == ("1500", [1000, 1500])
    st = StyleTransfer.load(out, device="cpu", precision="fp32")
    assert st.decoder_metadata["name"] == "adain-decoder-1500it-avg2"


def test_refuses_what_is_not_two_snapshots_of_one_decoder(avg, tmp_path, capsys):
    a = _snapshot(tmp_path / "a.safetensors", 1000, 0.0)
    out = str(tmp_path / "x.safetensors")
    assert avg.main([str(a), "--out", out]) == 2
    assert "at least two snapshots" in capsys.readouterr().err
    tensors, meta = load_tensors(a)
    save_tensors(tmp_path / "enc.safetensors", tensors, meta | {"kind": "encoder"})
    assert avg.main([str(a), str(tmp_path / "enc.safetensors"), "--out", out]) == 2
    assert "holds 'encoder' weights, expected a decoder" in capsys.readouterr().err
    save_tensors(tmp_path / "less.safetensors", dict(list(tensors.items())[1:]), meta)
    assert avg.main([str(a), str(tmp_path / "less.safetensors"), "--out", out]) == 2
    assert "other tensors than" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_weighted_mean_is_a_point_on_the_line(avg, tmp_path, capsys):
    a = _snapshot(tmp_path / "a.safetensors", 1000, -0.25)
    b = _snapshot(tmp_path / "b.safetensors", 1500, +0.25)
    out = tmp_path / "blend.safetensors"
    assert avg.main([str(a), str(b), "--weights", "3,1", "--out", str(out)]) == 0
    blend, meta = load_tensors(out)
    ref, _ = load_tensors(DEFAULT_DECODER_PATH)
    for k in ref:  # 0.75 * (ref - 0.25) + 0.25 * (ref + 0.25) = ref - 0.125
        torch.testing.assert_close(blend[k].float(), ref[k].float() - 0.125, atol=2e-3, rtol=2e-3)
    assert json.loads(meta["averaged_weights"]) == {str(a): 0.75, str(b): 0.25}
    for bad in ("1", "1,-1", "0,0", "a,b"):
        assert avg.main([str(a), str(b), "--weights", bad, "--out", str(tmp_path / "x.safetensors")]) == 2
        assert "weight" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_heldout_scores_the_mean_as_training_does(avg, tmp_path, samples, capsys):
    from adain.train_eval import evaluate_decoder, load_heldout
    from adain.weights import build_encoder, load_decoder
    from tests.corpus import make_tiny_corpus

    corpus = make_tiny_corpus(tmp_path, samples)
    a = _snapshot(tmp_path / "a.safetensors", 1000, -0.02)
    b = _snapshot(tmp_path / "b.safetensors", 1500, +0.02)
    out = tmp_path / "mean.safetensors"
    assert avg.main([str(a), str(b), "--out", str(out), "--heldout", str(corpus)]) == 0
    printed = capsys.readouterr().out.splitlines()[-1]
    enc, held = build_encoder(), load_heldout(corpus)
    shipped = evaluate_decoder(enc, load_decoder(DEFAULT_DECODER_PATH)[0], held)
    one_side = evaluate_decoder(enc, load_decoder(a)[0], held)
    psnr = float(printed.split("PSNR ")[1].split(" dB")[0])
    assert printed.startswith(f"{out}: held-out: alpha=0 PSNR")
    assert abs(psnr - shipped.psnr_alpha0) < 0.05, "the shifts cancel: the mean scores as the shipped decoder"
    assert abs(one_side.psnr_alpha0 - shipped.psnr_alpha0) > 0.1, "(a shifted snapshot alone scores otherwise)"
    assert avg.main([str(a), str(b), "--out", str(out), "--heldout", str(tmp_path / "none")]) == 2
    assert "manifest.csv not found" in capsys.readouterr().err
