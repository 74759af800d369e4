"""A tiny corpus (``manifest.csv`` + images) made from the shipped sample images, for training and evaluation tests."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path


def make_tiny_corpus(root: Path, samples: Path) -> Path:
    """``root/corpus``: every sample in the train split; every other sample also held out (photos, paintings)."""
    corpus = root / "corpus"
    rows = []
    for i, f in enumerate(sorted(samples.glob("*.jpg"))):
        kind, category = ("content", "photo") if f.name.startswith("content") else ("style", "painting")
        for split in ("train", "heldout") if i % 2 == 0 else ("train",):
            dst = corpus / kind / f"{split}_{f.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst)
            rows.append({"split": split, "kind": kind, "file": f"{kind}/{dst.name}", "category": category})
    with (corpus / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["split", "kind", "file", "category"])
        w.writeheader()
        w.writerows(rows)
    return corpus
