"""scripts/make_sample_styles.py on a small corpus laid out as scripts/build_corpus.py writes one."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from script_loader import load_script

from addon.samples import SAMPLES

FIELDS = ["split", "kind", "file", "source_package", "package_version", "original_path", "licence", "category"]


def corpus(root: Path, skip: str = "") -> Path:
    (root / "style").mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    for i, s in enumerate(SAMPLES):
        if s.key == skip:
            continue
        name = f"style/gcompris_{s.corpus_stem}_{i:06x}.jpg"
        Image.fromarray(rng.integers(0, 255, (600 + i, 900, 3), dtype=np.uint8)).save(root / name)
        rows.append(dict(split="train", kind="style", file=name, source_package="gcompris-qt-data", package_version="3.1-2",
                         original_path=f"usr/share/x/{s.key}.qml", licence="GPL-3+", category="painting"))  # fmt: skip
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    return root


def test_writes_every_sample_shrunk_with_its_provenance(tmp_path: Path) -> None:
    mss = load_script("make_sample_styles")
    out = tmp_path / "out"
    assert mss.main(["--corpus", str(corpus(tmp_path / "corpus")), "--out", str(out)]) == 0
    for s in SAMPLES:
        with Image.open(out / s.file) as im:
            assert max(im.size) == mss.MAX_SIDE
    licences = (out / "LICENSES.md").read_text()
    assert all(f"`{s.file}`" in licences and s.title in licences for s in SAMPLES)
    assert "usr/share/x/great_wave.qml" in licences and "GPL-3+" in licences


def test_a_sample_missing_from_the_corpus_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mss = load_script("make_sample_styles")
    with pytest.raises(SystemExit) as exc:
        mss.main(["--corpus", str(corpus(tmp_path / "corpus", skip="moulin")), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "moulin: 0 corpus files match" in capsys.readouterr().err


def test_the_shipped_samples_are_the_listed_ones() -> None:
    folder = Path(__file__).resolve().parents[2] / "addon" / "sample_styles"
    assert sorted(p.name for p in folder.glob("*.jpg")) == sorted(s.file for s in SAMPLES)
