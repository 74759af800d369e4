"""Held-out evaluation while a decoder trains: α = 0 reconstruction PSNR, content and style loss.

``adain train --eval-every N`` runs it every N iterations on a small fixed set of the corpus's held-out
images, so a regression shows while it happens. The measures never change with the training recipe:

- **α = 0 PSNR**: ``g(f(c))`` against ``c`` (content = style, so the AdaIN target is ``f(c)``), output
  clamped to [0, 1], PSNR in dB per image, then the mean over images.
- **content loss** ``mean((f(g(t)) - t)^2)`` at relu4_1 with ``t = AdaIN(f(c), f(s))`` and **style loss**
  (uniform over relu1_1..relu4_1) as ``scripts/evaluate.py`` measures them, mean over every
  (content, style) pair, output clamped to [0, 1].

Images: every ``kind=content, category=photo`` and ``kind=style, category=painting`` row of the held-out
split, sorted by file, then ``count`` of them evenly spaced (so several sources are covered), resized to
shorter side ``size`` and centre-cropped to ``size`` × ``size``.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from adain.errors import InputError
from adain.functional import adain
from adain.images import resize_shorter
from adain.losses import content_loss, style_loss
from adain.networks import Decoder, Encoder


@dataclass(frozen=True)
class HeldOutSet:
    """Fixed evaluation images: ``contents`` (K, 3, S, S) and ``styles`` (M, 3, S, S) in [0, 1]."""

    contents: torch.Tensor
    styles: torch.Tensor
    content_files: tuple[str, ...]
    style_files: tuple[str, ...]


@dataclass(frozen=True)
class EvalResult:
    """Means over the held-out set; see the module docstring for the definitions."""

    psnr_alpha0: float  # dB, mean over the contents
    content: float  # mean over the K x M pairs
    style: float  # mean over the K x M pairs
    seconds: float

    def line(self) -> str:
        return f"held-out: alpha=0 PSNR {self.psnr_alpha0:.2f} dB, content {self.content:.3f}, style {self.style:.3f}"


def _spread(items: list[str], count: int) -> list[str]:
    """``count`` items evenly spaced over the sorted list (all of them if there are fewer)."""
    items = sorted(items)
    if count >= len(items):
        return items
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in idx]


def load_square(path: Path, size: int) -> torch.Tensor:
    with Image.open(path) as im:
        img = resize_shorter(im.convert("RGB"), size)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)))
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1).float() / 255.0


def load_heldout(corpus: Path, contents: int = 6, styles: int = 6, size: int = 256) -> HeldOutSet:
    """The held-out photos and paintings of a corpus built by ``scripts/build_corpus.py``."""
    manifest = corpus / "manifest.csv"
    if not manifest.is_file():
        raise InputError(f"{manifest} not found: build the corpus with scripts/build_corpus.py")
    rows = [r for r in csv.DictReader(manifest.open()) if r["split"] == "heldout"]
    photos = [r["file"] for r in rows if r["kind"] == "content" and r["category"] == "photo"]
    paintings = [r["file"] for r in rows if r["kind"] == "style" and r["category"] == "painting"]
    if not photos or not paintings:
        raise InputError(
            f"{manifest} has {len(photos)} held-out photo(s) and {len(paintings)} held-out painting(s); "
            "the evaluation needs at least one of each"
        )
    cf, sf = _spread(photos, contents), _spread(paintings, styles)
    return HeldOutSet(
        contents=torch.stack([load_square(corpus / f, size) for f in cf]),
        styles=torch.stack([load_square(corpus / f, size) for f in sf]),
        content_files=tuple(cf),
        style_files=tuple(sf),
    )


class EvaluationStoppedError(Exception):
    """``evaluate_decoder``'s ``should_stop`` turned true: no result."""


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of (N, 3, H, W) tensors in [0, 1] -> (N,)."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


@torch.no_grad()
def evaluate_decoder(
    encoder: Encoder, decoder: Decoder, heldout: HeldOutSet, should_stop: Callable[[], bool] = lambda: False
) -> EvalResult:
    """Evaluate ``decoder`` in fp32 on the device of its parameters (it is left in the mode it was in).

    ``should_stop`` is polled before each style: once it is true the evaluation ends early with EvaluationStoppedError
    (a stop asked for during training is not held up by it)."""
    t0 = time.monotonic()
    device = next(decoder.parameters()).device
    c = heldout.contents.to(device)
    fc = encoder(c)["relu4_1"].float()
    recon = decoder(fc).float().clamp(0, 1)
    p = psnr(recon, c)
    contents, styles = [], []
    for s in heldout.styles.to(device):
        if should_stop():
            raise EvaluationStoppedError("the evaluation was stopped before its end")
        s_feats = encoder(s[None])
        t = adain(fc, s_feats["relu4_1"])
        out = decoder(t).float().clamp(0, 1)
        o_feats = encoder(out)
        for k in range(c.shape[0]):
            contents.append(float(content_loss(o_feats["relu4_1"][k : k + 1], t[k : k + 1])))
            styles.append(float(style_loss({n: f[k : k + 1] for n, f in o_feats.items()}, s_feats)))
    return EvalResult(
        psnr_alpha0=float(p.mean()),
        content=math.fsum(contents) / len(contents),
        style=math.fsum(styles) / len(styles),
        seconds=time.monotonic() - t0,
    )


EVAL_LOG_COLUMNS = ("iteration", "psnr_alpha0", "content", "style", "seconds")


def append_eval_log(path: Path, iteration: int, result: EvalResult) -> None:
    """One row per evaluation in ``path`` (CSV, header written when the file is new)."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(EVAL_LOG_COLUMNS)
        w.writerow([iteration, f"{result.psnr_alpha0:.4f}", f"{result.content:.5f}", f"{result.style:.5f}",
                    f"{result.seconds:.2f}"])  # fmt: skip
