#!/usr/bin/env python3
"""Write the add-on's bundled sample styles (``addon/sample_styles/``) from the training corpus.

Eight public-domain paintings that the corpus (``scripts/build_corpus.py``) took from Debian's
``gcompris-qt-data``, where GCompris ships them as puzzle pieces. Each is shrunk so its longer side is 512 px and
saved as a JPEG (quality 90) under a short name. ``LICENSES.md`` is written next to them, with each file's source
package, version, path inside the package and licence, read from the corpus manifest.

Usage::

    python scripts/make_sample_styles.py --corpus /data/corpus
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from addon.samples import SAMPLES  # noqa: E402  (the list the add-on offers: one source of truth)

OUT = REPO / "addon" / "sample_styles"
MAX_SIDE = 512


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--corpus", type=Path, required=True, help="a corpus built by scripts/build_corpus.py")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    manifest = args.corpus / "manifest.csv"
    if not manifest.is_file():
        p.error(f"{manifest} does not exist: build the corpus first (scripts/build_corpus.py)")
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Sample styles: provenance and licences",
        "",
        "Public-domain paintings (painted before 1930, by painters who died more than 70 years ago), as Debian's",
        "`gcompris-qt-data` package ships them (GCompris' puzzles; the corpus script put the pieces back together).",
        "The package's copyright file gives GPL-3+ for its data, so that is listed here too, and the add-on's manifest",
        "names GPL-3.0-or-later next to MIT for these files. Made by `scripts/make_sample_styles.py` from the corpus:",
        f"longer side shrunk to {MAX_SIDE} px, JPEG quality 90; nothing else changed.",
        "",
        "| File | Painting | Source package (version) | Path inside the package | Licence |",
        "|---|---|---|---|---|",
    ]
    for sample in SAMPLES:
        matches = [r for r in rows if r["kind"] == "style" and sample.corpus_stem in r["file"]]
        if len(matches) != 1:
            p.error(f"{sample.key}: {len(matches)} corpus files match {sample.corpus_stem!r}, expected one")
        row = matches[0]
        with Image.open(args.corpus / row["file"]) as im:
            img = im.convert("RGB")
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        img.save(args.out / sample.file, quality=90)
        lines.append(
            f"| `{sample.file}` | {sample.title} | `{row['source_package']}` ({row['package_version']}) | "
            f"`{row['original_path']}` | painting: public domain; package: {row['licence']} |"
        )
        print(f"{sample.file}: {img.width}x{img.height} from {row['file']}")
    (args.out / "LICENSES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
