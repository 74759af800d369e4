"""Pack a corpus's training images into parts small enough to carry to a GPU machine, and merge them there.

    python scripts/pack_corpus.py pack --corpus /work/data/corpus --out .pack          # here: .pack/part00, ...
    python3 scripts/pack_corpus.py merge --parts .pack --into /tmp/corpus              # there, after each part

The device tool carries at most 64 MiB a call (the working tree included), so a corpus of a few hundred MB
travels as several parts, one a call, each merged into one corpus folder on the machine while it stays warm
(docs/gpu_session.md gives the whole procedure). ``pack`` writes the train split, each image resized to
what ``adain train`` keeps in memory anyway (contents: shorter side 512; styles: shorter side 768; never
enlarged) and re-encoded as JPEG, so training on the packed corpus sees the same pixels up to JPEG noise.
First, in part00, come the held-out photos and paintings that ``adain train --eval-every`` evaluates on (the same
selection is made from them: ``adain.train_eval.load_heldout``), so a GPU run logs its held-out figures as it goes;
their figures match this machine's within the JPEG and resize noise (``--no-heldout`` leaves them out).
Every part holds its images and a ``manifest.csv`` with the original rows (licences and sources kept).
``merge`` moves a part's images into the target and appends its rows to the target's manifest; merging the
same part twice is refused. Progress goes to stderr; Ctrl-C stops cleanly (the parts written so far stay).
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

SIDES = {"content": 512, "style": 768}  # adain.train.TrainConfig.content_side / style_side_max
FIELDS_REQUIRED = ("split", "kind", "file")


def _read_manifest(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (a corpus folder has a manifest.csv; see scripts/build_corpus.py)")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        missing = [c for c in FIELDS_REQUIRED if c not in fields]
        if missing:
            raise SystemExit(f"error: {path} lacks the column(s) {', '.join(missing)}")
        return fields, list(reader)


def _encode(src: Path, side: int, quality: int) -> bytes:
    with Image.open(src) as im:
        rgb = im.convert("RGB")
        w, h = rgb.size
        if min(w, h) > side:
            scale = side / min(w, h)
            rgb = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=quality)
        return buf.getvalue()


def _write_part(out: Path, index: int, fields: list[str], rows: list[tuple[dict[str, str], bytes]]) -> Path:
    part = out / f"part{index:02d}"
    if part.exists():
        shutil.rmtree(part)
    for row, data in rows:
        dest = part / row["file"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    with (part / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(r for r, _ in rows)
    return part


EVAL_ROWS = {("content", "photo"), ("style", "painting")}  # what adain.train_eval.load_heldout picks from


def pack(corpus: Path, out: Path, part_mb: float, quality: int, heldout: bool = True) -> list[Path]:
    fields, rows = _read_manifest(corpus / "manifest.csv")
    train = [r for r in rows if r["split"] == "train" and r["kind"] in SIDES]
    if not train:
        raise SystemExit(f"error: {corpus / 'manifest.csv'} has no training images")
    if heldout:
        train = [r for r in rows if r["split"] == "heldout" and (r["kind"], r.get("category", "")) in EVAL_ROWS] + train
    limit = int(part_mb * 2**20)
    parts: list[Path] = []
    current: list[tuple[dict[str, str], bytes]] = []
    size = 0
    for n, row in enumerate(train, 1):
        renamed = dict(row, file=str(Path(row["file"]).with_suffix(".jpg")))
        data = _encode(corpus / row["file"], SIDES[row["kind"]], quality)
        if current and size + len(data) > limit:
            parts.append(_write_part(out, len(parts), fields, current))
            current, size = [], 0
        current.append((renamed, data))
        size += len(data)
        if n % 100 == 0 or n == len(train):
            print(f"pack: {n}/{len(train)} images, {len(parts)} part(s) written", file=sys.stderr, flush=True)
    if current:
        parts.append(_write_part(out, len(parts), fields, current))
    return parts


def merge(parts: Path, into: Path) -> int:
    """Merge every part under ``parts`` not merged yet; returns how many images were added."""
    into.mkdir(parents=True, exist_ok=True)
    done_file = into / ".merged_parts"
    done = set(done_file.read_text().split()) if done_file.is_file() else set()
    added = 0
    for part in sorted(p for p in parts.glob("part*") if p.is_dir()):
        if part.name in done:
            print(f"merge: {part.name} was merged already; skipped", file=sys.stderr)
            continue
        fields, rows = _read_manifest(part / "manifest.csv")
        for row in rows:
            dest = into / row["file"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(part / row["file"], dest)
        manifest = into / "manifest.csv"
        new = not manifest.is_file()
        with manifest.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            if new:
                w.writeheader()
            w.writerows(rows)
        with done_file.open("a") as f:
            f.write(part.name + "\n")
        added += len(rows)
        print(f"merge: {part.name}: {len(rows)} images", file=sys.stderr)
    return added


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="write the train split (and the evaluation's held-out images) as parts")
    pk.add_argument("--corpus", type=Path, required=True)
    pk.add_argument("--out", type=Path, required=True)
    pk.add_argument("--part-mb", type=float, default=48.0, help="largest part in MiB (default 48)")
    pk.add_argument("--quality", type=int, default=88, help="JPEG quality (default 88)")
    pk.add_argument("--no-heldout", action="store_true", help="leave out the held-out evaluation images")
    mg = sub.add_parser("merge", help="merge parts into one corpus folder")
    mg.add_argument("--parts", type=Path, required=True)
    mg.add_argument("--into", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        if args.cmd == "pack":
            parts = pack(args.corpus, args.out, args.part_mb, args.quality, heldout=not args.no_heldout)
            print("\n".join(str(x) for x in parts))
        else:
            print(f"merged {merge(args.parts, args.into)} images into {args.into}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
