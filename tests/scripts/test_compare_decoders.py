"""scripts/compare_decoders.py: paired differences on a tiny held-out split, with real decoders."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from adain.tensorfile import load_tensors, save_tensors
from adain.weights import DEFAULT_DECODER_PATH
from tests.scripts.script_loader import load_script


@pytest.fixture(scope="module")
def cmp():
    return load_script("compare_decoders")


@pytest.fixture
def corpus(tmp_path, samples) -> Path:
    root = tmp_path / "corpus"
    rows = []
    for kind in ("content", "style"):
        (root / kind).mkdir(parents=True)
        for f in sorted(samples.glob(f"{kind}_*.jpg"))[:2]:
            (root / kind / f.name).write_bytes(f.read_bytes())
            rows.append({"split": "heldout", "kind": kind, "file": f"{kind}/{f.name}"})
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["split", "kind", "file"])
        w.writeheader()
        w.writerows(rows)
    return root


def test_rows_per_style_category_and_the_csv(cmp, corpus, tmp_path):
    manifest = corpus / "manifest.csv"
    rows = list(csv.DictReader(manifest.open()))
    with manifest.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["split", "kind", "file", "category"])
        w.writeheader()
        for r, cat in zip(rows, ["photo", "photo", "painting", "portrait"], strict=True):
            w.writerow(r | {"category": cat})
    other = _perturbed_decoder(tmp_path / "other.safetensors")
    out = tmp_path / "pairs.csv"
    args = ["--corpus", str(corpus), "--contents", "2", "--styles", "2", "--size", "64", "--csv", str(out),
            str(DEFAULT_DECODER_PATH), str(other)]  # fmt: skip
    summary = cmp.compare(cmp.parse_args(args))
    assert [(r.group, r.n_styles) for r in summary] == [("all", 2)] * 2 + [("painting", 1)] * 2 + [("portrait", 1)] * 2
    pairs = list(csv.DictReader(out.open()))
    assert len(pairs) == 2 * 4 and {p["style_category"] for p in pairs} == {"painting", "portrait"}
    for group in ("painting", "portrait"):  # a category's row is the mean of its pairs
        mine = [float(p["style_loss"]) for p in pairs if p["decoder"] == "other.safetensors" and p["style_category"] == group]
        row = next(r for r in summary if r.group == group and r.name == "other.safetensors")
        assert row.style == pytest.approx(sum(mine) / len(mine))
    all_row = next(r for r in summary if r.group == "all" and r.name == "other.safetensors")
    assert all_row.d_style == pytest.approx(sum(r.d_style for r in summary[3::2]) / 2)


def _perturbed_decoder(path: Path) -> Path:
    tensors, meta = load_tensors(DEFAULT_DECODER_PATH)
    g = torch.Generator().manual_seed(0)
    w = tensors["dec1_1.weight"]
    tensors["dec1_1.weight"] = (w.float() + 0.05 * w.float().std() * torch.randn(w.shape, generator=g)).half()
    save_tensors(path, tensors, meta)
    return path


def test_same_decoder_differs_by_zero_and_another_does_not(cmp, corpus, tmp_path, capsys):
    other = _perturbed_decoder(tmp_path / "other.safetensors")
    args = ["--corpus", str(corpus), "--contents", "2", "--styles", "2", "--size", "64",
            str(DEFAULT_DECODER_PATH), str(DEFAULT_DECODER_PATH), str(other)]  # fmt: skip
    rows = cmp.compare(cmp.parse_args(args))
    assert [r.name for r in rows] == ["decoder.safetensors", "decoder.safetensors", "other.safetensors"]
    assert rows[1].d_content == rows[1].d_style == 0.0 and rows[1].content == rows[0].content
    assert rows[2].d_content != 0.0 and rows[2].d_style != 0.0
    assert rows[2].d_style == pytest.approx(rows[2].style - rows[0].style, abs=1e-9)
    assert cmp.main(args) == 0
    table = capsys.readouterr().out
    assert "2 contents x 2 styles (heldout, 64²)" in table and table.count("| decoder.safetensors |") == 2


def test_standard_error_is_over_styles(cmp):
    # content-major pairs: 2 contents x 2 styles; style 0 gains 1 and 3 (mean 2), style 1 gains 0 and 2 (mean 1)
    mean, se = cmp._diff([0.0] * 4, [1.0, 0.0, 3.0, 2.0], n_styles=2)
    assert mean == 1.5
    assert se == pytest.approx(0.5)  # stdev of (2, 1) / sqrt(2)


def test_bad_requests_say_what_is_wrong(cmp, corpus, capsys):
    assert cmp.main(["--corpus", str(corpus), "--contents", "5", str(DEFAULT_DECODER_PATH)]) == 2
    assert "asked for 5 images but the split has 2" in capsys.readouterr().err
    assert cmp.main(["--corpus", str(corpus), "--split", "train", str(DEFAULT_DECODER_PATH)]) == 2
    assert "has no train contents or styles" in capsys.readouterr().err


def test_two_files_with_one_name_get_their_paths_as_row_names(cmp, corpus, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _perturbed_decoder(tmp_path / "a" / "decoder.safetensors")
    b = tmp_path / "b" / "decoder.safetensors"
    b.write_bytes(DEFAULT_DECODER_PATH.read_bytes())
    assert cmp.labels([a, b, a]) == [str(a), str(b), str(a)]
    assert cmp.labels([a, tmp_path / "other.safetensors"]) == ["decoder.safetensors", "other.safetensors"]
    args = ["--corpus", str(corpus), "--contents", "1", "--styles", "1", "--size", "64", str(a), str(b)]
    assert [r.name for r in cmp.compare(cmp.parse_args(args))] == [str(a), str(b)]


def test_a_decoder_of_another_encoder_is_refused(cmp, corpus, tmp_path):
    tensors, meta = load_tensors(DEFAULT_DECODER_PATH)
    other = tmp_path / "raw.safetensors"
    save_tensors(other, tensors, meta | {"encoder": "vgg19-raw-test"})
    args = ["--corpus", str(corpus), "--contents", "1", "--styles", "1", "--size", "64",
            str(DEFAULT_DECODER_PATH), str(other)]  # fmt: skip
    with pytest.raises(cmp.InputError, match="vgg19-raw-test"):
        cmp.compare(cmp.parse_args(args))
    assert cmp.main(args) == 2
