"""Paired comparison of trained decoders on the same content x style pairs: which one to ship.

    python scripts/compare_decoders.py --corpus /work/data/corpus A.safetensors B.safetensors [C ...]
                                       [--split heldout|train] [--contents 12] [--styles 12] [--size 256]

Every decoder stylizes the same pairs (alpha 1) and is measured with the paper's losses (the frozen
encoder's Lc against the AdaIN target, Ls on mean/std at relu1_1..relu4_1), exactly as
``scripts/evaluate.py`` measures "ours". Because the pairs are shared, the difference to the first decoder
is reported per pair, with its standard error over the styles (pairs that share a style are not
independent: how much a decoder gains depends mostly on the style). Use many styles: with five, one odd
style decides the sign. Rows per style category of the manifest (painting, portrait, ...) follow the
rows over all styles: a decoder can gain on the kind of art that dominates training and lose on another.

Pairs: the first --contents contents x the first --styles styles of the split, each list sorted by path,
or, with --sample, that many of each drawn with --seed (the training split is large). ``--split train``
measures images the decoders were trained on: the gap between train and heldout tells overfitting from
a decoder that got worse everywhere. The optimisation baseline is not run (see evaluate.py for it).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate import center_crop, measure, style_statistics

from adain import StyleTransfer
from adain.errors import AdainError, InputError
from adain.functional import adain
from adain.images import load_image
from adain.progress import Progress
from adain.weights import load_decoder


@dataclass(frozen=True)
class Summary:
    name: str
    group: str  # "all", or a style category of the manifest ("painting", "portrait", ...)
    n_styles: int
    content: float
    style: float
    d_content: float  # mean paired difference to the first decoder
    d_content_se: float
    d_style: float
    d_style_se: float


@dataclass(frozen=True)
class Split:
    contents: list[str]  # files, sorted
    styles: list[str]
    category: dict[str, str]  # file -> the manifest's category ("" where it has none)


def split_files(corpus: Path, split: str) -> Split:
    manifest = corpus / "manifest.csv"
    try:
        with manifest.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("split") == split]
    except OSError as e:
        raise InputError(f"cannot read {manifest}: {e.strerror or e}") from e
    contents = sorted(r["file"] for r in rows if r.get("kind") == "content")
    styles = sorted(r["file"] for r in rows if r.get("kind") == "style")
    if not contents or not styles:
        raise InputError(f"{manifest} has no {split} contents or styles")
    return Split(contents, styles, {r["file"]: r.get("category") or "" for r in rows})


def choose(files: list[str], n: int, sample: bool, rng: random.Random) -> list[str]:
    if n > len(files):
        raise InputError(f"asked for {n} images but the split has {len(files)}")
    return sorted(rng.sample(files, n)) if sample else files[:n]


def _diff(a: list[float], b: list[float], n_styles: int, styles: list[int] | None = None) -> tuple[float, float]:
    """Mean of b - a over the pairs (of ``styles`` only, if given), and its standard error over the styles.

    Pairs are content-major. A decoder's gain depends mostly on the style, so pairs that share a style are
    not independent: the error is taken over the per-style means (with one style it is 0).
    """
    d = [y - x for x, y in zip(a, b, strict=True)]
    per_style = [statistics.fmean(d[i::n_styles]) for i in (range(n_styles) if styles is None else styles)]
    se = statistics.stdev(per_style) / math.sqrt(len(per_style)) if len(per_style) > 1 else 0.0
    return statistics.fmean(per_style), se


def _mean(values: list[float], n_styles: int, styles: list[int]) -> float:
    return statistics.fmean(statistics.fmean(values[i::n_styles]) for i in styles)


def labels(paths: list[Path]) -> list[str]:
    """Row names: the file name, or the path as given where two different files share a name."""
    by_name: dict[str, set[Path]] = {}
    for p in paths:
        by_name.setdefault(p.name, set()).add(p.resolve())
    return [p.name if len(by_name[p.name]) == 1 else str(p) for p in paths]


def load_decoders(paths: list[Path], device: str) -> tuple[StyleTransfer, list[torch.nn.Module]]:
    """The first decoder with its encoder, then every decoder; the encoder is built once and shared, so all
    decoders must have been trained against the same one."""
    first = StyleTransfer.load(paths[0], device=device, precision="fp32")
    decoders: list[torch.nn.Module] = [first.decoder]
    for path in paths[1:]:
        dec, meta = load_decoder(path)
        wanted = meta.get("encoder", first.encoder_name)
        if wanted != first.encoder_name:
            raise InputError(
                f"{path} was trained with encoder {wanted!r} but {paths[0]} with {first.encoder_name!r}: "
                "compare decoders of one encoder at a time"
            )
        dec = dec.to(first.device).eval().requires_grad_(False)
        if first.channels_last:  # the same memory layout as the first, so equal weights give equal losses
            dec.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        decoders.append(dec)
    return first, decoders


def compare(args: argparse.Namespace) -> list[Summary]:
    """One "all" row per decoder, then one per decoder and style category (when the split has several)."""
    rng = random.Random(args.seed)
    split = split_files(args.corpus, args.split)
    contents = choose(split.contents, args.contents, args.sample, rng)
    styles = choose(split.styles, args.styles, args.sample, rng)
    first, decoders = load_decoders(args.decoders, args.device)
    enc, names = first.encoder, labels(args.decoders)
    load = lambda f: center_crop(load_image(args.corpus / f, args.size), args.size).unsqueeze(0).to(first.device)  # noqa: E731
    c_imgs = [load(f) for f in contents]
    s_imgs = [load(f) for f in styles]
    losses: list[dict[str, list[float]]] = [{"content": [], "style": []} for _ in decoders]
    t0 = time.perf_counter()
    with torch.inference_mode(), Progress(len(c_imgs) * len(s_imgs), "pairs") as bar:
        s_stats = [style_statistics(enc, s) for s in s_imgs]
        s_deep = [enc(s, last="relu4_1")["relu4_1"] for s in s_imgs]
        for c in c_imgs:
            c_feat = enc(c, last="relu4_1")["relu4_1"]
            for stats, deep in zip(s_stats, s_deep, strict=True):
                t = adain(c_feat, deep)
                for decoder, acc in zip(decoders, losses, strict=True):
                    out = decoder(t).clamp(0, 1)
                    m = measure(enc, out, t, c_feat, stats)
                    acc["content"].append(m.content)
                    acc["style"].append(m.style)
                bar.update(1)
    print(f"{len(c_imgs)} contents x {len(s_imgs)} styles ({args.split}, {args.size}²) in "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    if args.csv:
        with args.csv.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["decoder", "content", "style", "style_category", "content_loss", "style_loss"])
            for name, acc in zip(names, losses, strict=True):
                for k, (cf, sf) in enumerate(itertools.product(contents, styles)):
                    w.writerow([name, cf, sf, split.category.get(sf, ""), acc["content"][k], acc["style"][k]])
    groups = {"all": list(range(len(styles)))}
    categories = sorted({split.category.get(f, "") for f in styles})
    if len(categories) > 1:
        groups |= {c or "(none)": [i for i, f in enumerate(styles) if split.category.get(f, "") == c] for c in categories}
    base, n = losses[0], len(styles)
    rows = []
    for group, idx in groups.items():
        for name, acc in zip(names, losses, strict=True):
            dc, dcs = _diff(base["content"], acc["content"], n, idx)
            ds, dss = _diff(base["style"], acc["style"], n, idx)
            rows.append(Summary(name, group, len(idx), _mean(acc["content"], n, idx), _mean(acc["style"], n, idx),
                                dc, dcs, ds, dss))  # fmt: skip
    return rows


def format_table(rows: list[Summary]) -> str:
    lines = ["| decoder | styles | content | style | Δcontent vs first (± s.e. over styles) | Δstyle vs first (± s.e.) |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r.name} | {r.group} ({r.n_styles}) | {r.content:.3f} | {r.style:.3f} "
                     f"| {r.d_content:+.3f} ± {r.d_content_se:.3f} | {r.d_style:+.3f} ± {r.d_style_se:.3f} |")  # fmt: skip
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("decoders", nargs="+", type=Path, help="decoder .safetensors files; the first is the baseline")
    p.add_argument("--corpus", type=Path, required=True, help="corpus folder with manifest.csv")
    p.add_argument("--split", choices=("heldout", "train"), default="heldout")
    p.add_argument("--contents", type=int, default=12)
    p.add_argument("--styles", type=int, default=12)
    p.add_argument("--sample", action="store_true", help="draw the images at random (with --seed) instead of the first N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256, help="square side: shorter side resized, then centre-cropped")
    p.add_argument("--device", default="cpu")
    p.add_argument("--csv", type=Path, help="also write every pair's losses (per decoder) to this CSV file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rows = compare(args)
    except AdainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
