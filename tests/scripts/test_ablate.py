"""scripts/ablate.py: candidates from one start, resumable, reported with a table and a contact sheet."""

from __future__ import annotations

import csv

import pytest

from tests.corpus import make_tiny_corpus
from tests.scripts.script_loader import load_script


@pytest.mark.slow
def test_two_candidates_run_from_the_same_start_and_are_reported(tmp_path, samples):
    ablate = load_script("ablate")
    corpus = make_tiny_corpus(tmp_path, samples)
    out = tmp_path / "abl"
    argv = ["--corpus", str(corpus), "--init-from", str(samples.parent / "decoder.safetensors"), "--iterations", "2",
            "--crop", "32", "--eval-every", "1", "--eval-size", "64", "--out", str(out),
            "--only", "base", "torch"]  # fmt: skip
    assert ablate.main(argv) == 0
    start = ablate._start_iteration(samples.parent / "decoder.safetensors")
    for name in ("base", "torch"):
        assert (out / name / "final.safetensors").is_file()
        rows = list(csv.DictReader((out / name / "decoder.eval.csv").open()))
        assert [int(r["iteration"]) - start for r in rows] == [0, 1, 2]
    base_rows = list(csv.DictReader((out / "base" / "decoder.eval.csv").open()))
    torch_rows = list(csv.DictReader((out / "torch" / "decoder.eval.csv").open()))
    assert base_rows[0] == torch_rows[0]  # the same start point, evaluated once
    assert base_rows[1] != torch_rows[1]  # different recipes, different decoders after one iteration
    report = (out / "ablation.md").read_text()
    assert all(f"| {n} |" in report for n in ("start", "base", "torch")) and (out / "contact_sheet.png").is_file()
    mtime = (out / "base" / "final.safetensors").stat().st_mtime
    assert ablate.main(argv) == 0  # done candidates are not run again
    assert (out / "base" / "final.safetensors").stat().st_mtime == mtime


def test_unknown_candidate_is_refused(tmp_path, capsys):
    ablate = load_script("ablate")
    assert ablate.main(["--corpus", str(tmp_path), "--only", "nope"]) == 2
    assert "unknown candidate(s): nope" in capsys.readouterr().err
