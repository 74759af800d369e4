"""scripts/recon_sheet.py: a contact sheet and its PSNR table from real decoders on the sample images."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from adain.tensorfile import load_tensors, save_tensors
from adain.train_eval import load_square, psnr
from adain.weights import DEFAULT_DECODER_PATH, build_encoder, load_decoder
from tests.scripts.script_loader import load_script


def test_sheet_rows_columns_and_psnr_table(samples, tmp_path, capsys):
    sheet = load_script("recon_sheet")
    tensors, meta = load_tensors(DEFAULT_DECODER_PATH)
    damaged = {k: v * 0.7 if v.ndim == 4 else v for k, v in tensors.items()}  # every convolution weakened
    other = tmp_path / "broken.safetensors"
    save_tensors(other, damaged, meta)
    contents = [f.name for f in sorted(samples.glob("content_*.jpg"))[:2]]
    styles = [f.name for f in sorted(samples.glob("style_*.jpg"))[:1]]
    out = tmp_path / "sheet.png"
    args = [f"shipped={DEFAULT_DECODER_PATH}", f"broken={other}", "--corpus", str(samples), "--contents", *contents,
            "--styles", *styles, "--size", "64", "--out", str(out)]  # fmt: skip
    assert sheet.main(args) == 0
    img = Image.open(out)
    cell, label_w = 160, sheet.LABEL_W
    assert img.size == (label_w + cell * (2 + 2 * 1), cell * 3 + 18), "inputs + 2 decoders; 2 reconstructions + 2x1 stylized"
    table = out.with_suffix(".md").read_text()
    assert table.startswith("α = 0 PSNR (dB) per content, 64² centre crops")
    assert table.split("\n\n", 1)[1].strip() == capsys.readouterr().out.strip(), "the printed table is the one written"
    # the shipped decoder's figure is the PSNR of its own reconstruction, computed here independently
    encoder, decoder = build_encoder(), load_decoder(DEFAULT_DECODER_PATH)[0]
    c = torch.stack([load_square(samples / f, 64) for f in contents])
    with torch.no_grad():
        expected = psnr(decoder(encoder(c)["relu4_1"]).float().clamp(0, 1), c)
    row = next(line for line in table.splitlines() if line.startswith("| shipped |"))
    got = [float(v) for v in row.strip("|").split("|")[1:3]]
    assert all(abs(a - float(b)) < 0.011 for a, b in zip(got, expected, strict=True)), (got, expected)
    broken = next(line for line in table.splitlines() if line.startswith("| broken |"))
    assert float(broken.strip("|").split("|")[-1]) < float(row.strip("|").split("|")[-1]), "a damaged decoder scores lower"


def test_an_out_path_without_an_image_extension_is_refused_first(tmp_path, capsys):
    sheet = load_script("recon_sheet")
    missing = tmp_path / "no_such_decoder.safetensors"  # (never read: the check comes before any work)
    with pytest.raises(SystemExit) as exit_:
        sheet.main([f"x={missing}", "--corpus", str(tmp_path), "--contents", "a.jpg", "--out", str(tmp_path / "sheet")])
    assert exit_.value.code == 2
    assert "--out must name a .png or .jpg file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
