"""scripts/evaluate.py on a tiny case: the optimisation baseline works, the report and contact sheet are right."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from types import ModuleType

import pytest
import torch
from PIL import Image

from adain.images import load_image
from tests.scripts.script_loader import load_script

pytestmark = pytest.mark.slow  # L-BFGS optimisations against the real encoder

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "evaluate.py"
SIZE = 40
ITERS = (1, 4)


@pytest.fixture(scope="module")
def ev() -> ModuleType:
    return load_script("evaluate")


@pytest.fixture(scope="module")
def results(ev, model, samples):
    content = ev.center_crop(load_image(samples / "content_coffee.jpg", SIZE), SIZE)
    styles = [ev.center_crop(load_image(samples / name, SIZE), SIZE)
              for name in ("style_wesnoth_httt_wizards.jpg", "style_wesnoth_painted_mountains.jpg")]  # fmt: skip
    # The strong Wolfe line search makes the loss fall from the first iteration; without one (the default,
    # as the paper) it can rise above the content image's in the first few iterations.
    return [ev.evaluate_pair(model, content, s, ITERS, line_search="strong_wolfe") for s in styles]


def _total(m) -> float:
    return m.content + 10.0 * m.style


def test_optimisation_lowers_the_total_loss(ev, results):
    for r in results:
        assert list(r.losses) == ev.method_keys(ITERS)
        assert _total(r.losses["gatys@4"]) < _total(r.losses["content"])
        assert _total(r.losses["gatys@4"]) <= _total(r.losses["gatys@1"]) * 1.01
        assert r.losses["content"].content_fc == pytest.approx(0.0, abs=1e-6)
        assert r.evals["gatys@4"] >= 4
        assert r.stylized.shape == r.optimised.shape == (3, SIZE, SIZE)
        assert 0.0 <= float(r.optimised.min()) and float(r.optimised.max()) <= 1.0


def test_table_and_goals(ev, results):
    rows = ev.summarise(results, ev.method_keys(ITERS))
    table = ev.format_table(rows)
    for label in ("Ours (AdaIN decoder", "Gatys et al., 1 L-BFGS iterations", "Gatys et al., 4 L-BFGS iterations",
                  "Content image"):  # fmt: skip
        assert sum(label in line for line in table.splitlines()) == 1
    first = [r.losses[rows[0].key].content for r in results]  # sample standard deviation over the two pairs
    assert rows[0].n == 2 and first[0] != first[1]
    assert rows[0].content_mean == pytest.approx(statistics.fmean(first))
    assert rows[0].content_std == pytest.approx(statistics.stdev(first)) and rows[0].content_std > 0
    assert all("not evaluated" in g.text and g.met is None for g in ev.goals(rows))

    def row(key, lc, ls):
        return ev.Row(key, key, 2, lc, 0.0, ls, 0.0, 0.0, 0.0, None)

    met = ev.goals([row("ours", 14.0, 1.0), row("gatys@100", 10.0, 1.5)])
    assert [g.met for g in met] == [True, True] and all("**met**" in g.text for g in met)
    missed = ev.goals([row("ours", 16.0, 2.0), row("gatys@100", 10.0, 1.5)])
    assert [g.met for g in missed] == [False, False] and all("NOT met" in g.text for g in missed)


def test_contact_sheet_size(ev, results):
    c = torch.rand(3, SIZE, SIZE)
    styles = [torch.rand(3, SIZE, SIZE + 10), Image.new("RGB", (20, 30), "red")]
    sheet = ev.contact_sheet([c], styles, {(0, j): r.stylized for j, r in enumerate(results)}, thumb=32, pad=4)
    assert sheet.size == (3 * 36 + 4, 2 * 36 + 4)
    assert sheet.getpixel((10, 10)) == (255, 255, 255)  # the empty corner cell


def _corpus(tmp: Path, samples: Path) -> Path:
    """A corpus folder whose manifest lists the held-out files out of order, plus a train file to ignore."""
    tmp.mkdir()
    rows = [("heldout", "style", "style/b_style.jpg", "style_wesnoth_painted_mountains.jpg"),
            ("heldout", "content", "content/b_content.jpg", "content_chelsea_cat.jpg"),
            ("train", "content", "content/0_train.jpg", "content_astronaut.jpg"),
            ("heldout", "content", "content/a_content.jpg", "content_coffee.jpg"),
            ("heldout", "style", "style/a_style.jpg", "style_wesnoth_httt_wizards.jpg")]  # fmt: skip
    with (tmp / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "kind", "file", "source_package", "package_version", "original_path", "licence", "category"])
        for split, kind, file, source in rows:
            (tmp / file).parent.mkdir(parents=True, exist_ok=True)
            (tmp / file).write_bytes((samples / source).read_bytes())
            w.writerow([split, kind, file, "samples", "1", source, "test", kind])
    return tmp


def test_main_writes_report_and_sheet(ev, samples, tmp_path, capsys):
    corpus = _corpus(tmp_path / "corpus", samples)
    contents, styles = ev.heldout_files(corpus)
    assert contents == ["content/a_content.jpg", "content/b_content.jpg"]
    assert styles == ["style/a_style.jpg", "style/b_style.jpg"]
    out = tmp_path / "docs"
    rc = ev.main(["--corpus", str(corpus), "--contents", "2", "--styles", "1", "--size", "32", "--iters", "3", "1",
                  "--thumb", "24", "--out", str(out)])  # fmt: skip
    assert rc == 0
    text = (out / "quality.md").read_text(encoding="utf-8")
    for expected in ("| Ours (AdaIN decoder", "| Gatys et al., 1 L-BFGS iterations", "| Gatys et al., 3 L-BFGS iterations",
                     "| Content image", "| pairs | 2 = first 2 contents × first 1 styles", "trained iterations:",
                     "AdaIN target t = AdaIN(f(c), f(s))", "clamped to [0, 1]", "line search none"):  # fmt: skip
        assert expected in text
    assert "Gatys et al., 1 L-BFGS iterations" in capsys.readouterr().out
    with Image.open(out / "contact_sheet.png") as im:
        assert im.size == (2 * 28 + 4, 3 * 28 + 4)


def test_ctrl_c_stops_cleanly_and_writes_nothing(ev, samples, tmp_path, monkeypatch, capsys):
    corpus = _corpus(tmp_path / "corpus", samples)
    real = ev.evaluate_pair
    calls = []

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "evaluate_pair", interrupt_second)
    out = tmp_path / "docs"
    rc = ev.main(["--corpus", str(corpus), "--contents", "2", "--styles", "1", "--size", "32", "--iters", "1", "--out", str(out)])
    assert rc == 130
    assert not out.exists()
    captured = capsys.readouterr()
    assert "interrupted after 1 of 2 pairs" in captured.err
    assert "| Content image" in captured.out  # the finished pair's table is still printed


def test_reference_cache_reuses_the_optimisation_only_for_the_same_pairs_and_settings(ev, samples, tmp_path, monkeypatch):
    corpus = _corpus(tmp_path / "corpus", samples)
    cache = tmp_path / "reference.json"
    args = ["--corpus", str(corpus), "--contents", "2", "--styles", "1", "--size", "32", "--thumb", "24",
            "--reference-cache", str(cache)]  # fmt: skip
    assert ev.main([*args, "--iters", "2", "--out", str(tmp_path / "first")]) == 0
    first = (tmp_path / "first" / "quality.md").read_text(encoding="utf-8")
    assert "0 of 2 pairs reused" in first and len(ev.json.loads(cache.read_text())["entries"]) == 2

    runs = []
    real = ev.optimise
    monkeypatch.setattr(ev, "optimise", lambda *a, **k: runs.append(1) or real(*a, **k))
    assert ev.main([*args, "--iters", "2", "--out", str(tmp_path / "second")]) == 0
    second = (tmp_path / "second" / "quality.md").read_text(encoding="utf-8")
    assert runs == [] and "2 of 2 pairs reused" in second
    gatys = [line for line in first.splitlines() if line.startswith("| Gatys et al.")]
    assert (
        gatys
        and gatys[0].split("|")[2:4]
        == next(line for line in second.splitlines() if line.startswith("| Gatys et al.")).split("|")[2:4]
    )  # the same losses (times are the cached ones too)

    assert ev.main([*args, "--iters", "3", "--out", str(tmp_path / "third")]) == 0  # other settings: recomputed
    assert runs == [1, 1] and "0 of 2 pairs reused" in (tmp_path / "third" / "quality.md").read_text(encoding="utf-8")

    cache.write_text("{not json")
    assert ev.main([*args, "--iters", "2", "--out", str(tmp_path / "fourth")]) == 2  # a clear error, not a crash
