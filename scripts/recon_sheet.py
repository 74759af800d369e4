#!/usr/bin/env python3
"""A contact sheet of decoders side by side: α = 0 reconstructions, then stylized images, with PSNR.

    python scripts/recon_sheet.py NAME=adain/data/decoder.safetensors NAME2=runs/x/final.safetensors \
        --contents content/skimage_data_astronaut_3bd23a.jpg ... --styles style/....jpg \
        --corpus /work/data/corpus --out docs/reconstruction.png

Rows: the inputs, then one row per decoder; columns: each content reconstructed at α = 0 (g(f(c)), the
content as its own style), then each content stylized with each style at α = 1. Images are resized to
shorter side ``--size`` and centre-cropped square (as ``adain.train_eval``). Prints the α = 0 PSNR per
content and decoder, and writes them beside the sheet as Markdown (``OUT`` with suffix ``.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adain.functional import adain
from adain.images import tensor_to_pil
from adain.networks import Decoder, Encoder
from adain.train_eval import load_square, psnr
from adain.weights import build_encoder, load_decoder

LABEL_W = 170  # the default bitmap font has no Greek: labels say alpha


def contact_sheet(
    encoder: Encoder, decoders: list[tuple[str, Decoder]], contents: torch.Tensor, styles: torch.Tensor, out: Path,
    cell: int = 160,
) -> dict[str, list[float]]:  # fmt: skip
    """Write the sheet to ``out``; returns the α = 0 PSNR per content for each decoder name.

    contents (K, 3, S, S), styles (M, 3, S, S) in [0, 1].
    """
    with torch.no_grad():
        fc = encoder(contents)["relu4_1"]
        targets = [fc, *(adain(fc, encoder(s[None])["relu4_1"]) for s in styles)]
        inputs = [*contents, *(s for s in styles for _ in range(len(contents)))]
        rows: list[tuple[str, list[torch.Tensor]]] = [("inputs", inputs)]
        scores: dict[str, list[float]] = {}
        for name, dec in decoders:
            outs = [dec(t).float().clamp(0, 1) for t in targets]
            scores[name] = [float(x) for x in psnr(outs[0], contents)]
            rows.append((name, [img for o in outs for img in o]))
    sheet = Image.new("RGB", (LABEL_W + cell * len(inputs), cell * len(rows) + 18), "white")
    draw = ImageDraw.Draw(sheet)
    k = len(contents)
    draw.text((LABEL_W + 4, 2), "alpha = 0: reconstructions (the content as its own style)", fill="black")
    draw.text((LABEL_W + k * cell + 4, 2), "alpha = 1: stylized with the styles in the first row", fill="black")
    for r, (name, imgs) in enumerate(rows):
        y = 18 + r * cell
        label = name if r == 0 else f"{name}\nalpha=0 PSNR {sum(scores[name]) / k:.2f} dB"
        draw.multiline_text((4, y + cell // 2 - 12), label, fill="black")
        for i, img in enumerate(imgs):
            sheet.paste(tensor_to_pil(img).resize((cell, cell)), (LABEL_W + i * cell, y))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return scores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("decoders", nargs="+", help="NAME=PATH of decoder .safetensors files (one row each)")
    p.add_argument("--corpus", type=Path, required=True, help="folder the --contents and --styles paths are relative to")
    p.add_argument("--contents", nargs="+", required=True)
    p.add_argument("--styles", nargs="*", default=[])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        p.error(f"--out must name a .png or .jpg file, got {str(args.out)!r}")  # (before any of the work)
    named = []
    for spec in args.decoders:
        name, _, path = spec.rpartition("=")
        named.append((name or Path(path).stem, load_decoder(Path(path))[0]))
    contents = torch.stack([load_square(args.corpus / f, args.size) for f in args.contents])
    styles = torch.stack([load_square(args.corpus / f, args.size) for f in args.styles]) if args.styles else contents[:0]
    torch.manual_seed(0)
    scores = contact_sheet(build_encoder(), named, contents, styles, args.out)
    lines = ["| decoder | " + " | ".join(Path(f).stem for f in args.contents) + " | mean |",
             "|---|" + "---|" * (len(args.contents) + 1)]  # fmt: skip
    for name, vals in scores.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {sum(vals) / len(vals):.2f} |")
    table = "\n".join(lines)
    print(table)
    args.out.with_suffix(".md").write_text(f"α = 0 PSNR (dB) per content, {args.size}² centre crops\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
