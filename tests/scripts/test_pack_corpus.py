"""scripts/pack_corpus.py: the train split travels in parts and merges back into a corpus `adain train` reads."""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from adain.train_data import corpus_pools as _corpus_pools
from adain.train_eval import load_heldout
from tests.scripts.script_loader import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pack_corpus.py"


@pytest.fixture(scope="module")
def pc() -> ModuleType:
    return load_script("pack_corpus")


def _corpus(tmp: Path, samples: Path) -> Path:
    rows = [("train", "content", "content/a.png", "content_astronaut.jpg", "photo"),
            ("train", "content", "content/b.jpg", "content_coffee.jpg", "texture"),
            ("train", "style", "style/c.jpg", "style_wesnoth_httt_wizards.jpg", "painting"),
            ("train", "style", "style/d.jpg", "style_wesnoth_painted_mountains.jpg", "story"),
            ("heldout", "content", "content/e.jpg", "content_chelsea_cat.jpg", "photo"),
            ("heldout", "style", "style/f.jpg", "style_wesnoth_trow_great_tree.jpg", "painting"),
            ("heldout", "style", "style/g.jpg", "style_freecol_portrait_hudson.jpg", "portrait")]  # fmt: skip
    tmp.mkdir()
    with (tmp / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "kind", "file", "source_package", "package_version", "original_path", "licence", "category"])
        for split, kind, file, source, category in rows:
            (tmp / file).parent.mkdir(parents=True, exist_ok=True)
            with Image.open(samples / source) as im:  # larger than the packed sides, so packing must shrink them
                im.convert("RGB").resize((im.width * 2, im.height * 2)).save(tmp / file)
            w.writerow([split, kind, file, "samples", "1", source, "test", category])
    return tmp


def test_pack_in_parts_then_merge_gives_the_train_split_resized(pc, samples, tmp_path):
    corpus = _corpus(tmp_path / "corpus", samples)
    parts = pc.pack(corpus, tmp_path / "pack", part_mb=0.05, quality=85)  # ~50 KB parts: one or two images each
    assert len(parts) >= 2 and all((p / "manifest.csv").is_file() for p in parts)
    with (parts[0] / "manifest.csv").open(newline="") as f:
        assert next(csv.DictReader(f))["split"] == "heldout", "the evaluation's images come first, in part00"
    into = tmp_path / "merged"
    assert pc.merge(tmp_path / "pack", into) == 6  # the held-out portrait (no evaluation uses it) does not travel
    assert pc.merge(tmp_path / "pack", into) == 0  # merging again adds nothing
    with (into / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    train = sorted(r["file"] for r in rows if r["split"] == "train")
    assert train == ["content/a.jpg", "content/b.jpg", "style/c.jpg", "style/d.jpg"]
    assert {r["category"] for r in rows} == {"photo", "texture", "painting", "story"}  # sampling weights still work
    held = load_heldout(into, contents=6, styles=6, size=64)  # adain train --eval-every works on the merged corpus
    assert held.content_files == ("content/e.jpg",) and held.style_files == ("style/f.jpg",)
    assert pc.merge(tmp_path / "pack", tmp_path / "m2") == 6
    assert len(pc.pack(corpus, tmp_path / "pack2", part_mb=50, quality=85, heldout=False)) == 1
    assert pc.merge(tmp_path / "pack2", tmp_path / "m3") == 4
    for r in rows:
        with Image.open(into / r["file"]) as im:
            assert im.format == "JPEG" and min(im.size) <= pc.SIDES[r["kind"]]
    content, style = _corpus_pools(into)
    assert len(content.files) == 2 and len(style.files) == 2


def test_pack_refuses_a_folder_without_manifest(pc, tmp_path):
    with pytest.raises(SystemExit, match=r"manifest\.csv not found"):
        pc.pack(tmp_path, tmp_path / "out", 48.0, 88)
