"""Quantitative comparison of the paper (§7.1, Fig. 3): our decoder against optimisation-based transfer.

    python scripts/evaluate.py --corpus /work/data/corpus_v1 [--decoder PATH] [--contents 20] [--styles 10]
                               [--size 256] [--iters 50 100 200] [--device cpu] [--out docs]

On the held-out split of a corpus (the first N contents x the first M styles, each list sorted by file
path; every image resized to shorter side --size and centre-cropped to a --size square), measures the
paper's losses with the frozen encoder f for
  * ours: g(t) with t = AdaIN(f(c), f(s)), alpha = 1;
  * Gatys et al.: the image optimised for L = Lc + 10 Ls with the same encoder and losses, content target
    t, initialised from the content image, pixels optimised directly by torch.optim.LBFGS (lr 1, history
    100, no line search by default, one iteration per step, clamped to [0, 1] after every iteration),
    measured after each of --iters iterations (one run to the largest);
  * the content image itself.
Lc = MSE(f(x)_relu4_1, t); Ls = sum over relu1_1..relu4_1 of MSE(mean) + MSE(std) against f(s).
Writes OUT/quality.md (table, settings, the paper's goals met or not) and OUT/contact_sheet.png (style
thumbnails across, content thumbnails down, our output in each cell). Ctrl-C stops after printing the
pairs finished so far and writes nothing (the reference cache keeps the pairs it finished).

The optimisation does not depend on the decoder, and it is ~97 % of the run: ``--reference-cache FILE``
keeps its losses per pair in a JSON file, keyed by a hash of the two images, the encoder's weights, the
image size, the iteration counts, the line search and the style weight, so re-evaluating a newly trained
decoder on the same pairs takes seconds. Anything that changes the key recomputes; the report says how
many pairs came from the cache.

The default (--line-search none) runs L-BFGS as the paper's reference did (its footnote 1: Johnson's
neural-style, which uses fixed unit steps, one loss + gradient evaluation per iteration). The loss is
not monotone in the first ~10 iterations that way (it can jump far above the content image's). With
--line-search strong_wolfe every iteration is a line search: a stronger baseline per iteration, but
2-4 evaluations each (the clamp forces a fresh evaluation whenever it moves a pixel); about as good per
evaluation. The report's "evals" column gives the evaluations spent either way.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps

from adain import StyleTransfer
from adain.errors import AdainError, InputError
from adain.functional import adain, calc_mean_std
from adain.images import load_image, tensor_to_pil
from adain.losses import content_loss, style_loss_from_stats
from adain.networks import TAPS, Encoder
from adain.progress import Progress
from adain.tensorfile import load_tensors
from adain.weights import DEFAULT_DECODER_PATH

STYLE_WEIGHT = 10.0
GOAL_ITERATION = 100  # the paper: our style loss is that of Gatys et al. between 50 and 100 iterations
CONTENT_FACTOR = 1.5

IterCallback = Callable[[int, float], None]


# ------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Item:
    name: str  # file path relative to the corpus
    image: torch.Tensor  # (3, size, size) in [0, 1]


def center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) with H, W >= size -> the central (3, size, size)."""
    h, w = img.shape[-2:]
    if min(h, w) < size:
        raise InputError(f"cannot crop {size}x{size} from a {w}x{h} image")
    top, left = (h - size) // 2, (w - size) // 2
    return img[..., top : top + size, left : left + size].contiguous()


def heldout_files(corpus: Path) -> tuple[list[str], list[str]]:
    """(content files, style files) of the held-out split, each sorted by path (the fixed order)."""
    manifest = corpus / "manifest.csv"
    try:
        with manifest.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"cannot read {manifest}: {e.strerror or e}") from e
    contents = sorted(r["file"] for r in rows if r.get("split") == "heldout" and r.get("kind") == "content")
    styles = sorted(r["file"] for r in rows if r.get("split") == "heldout" and r.get("kind") == "style")
    return contents, styles


def load_items(root: Path, files: Sequence[str], size: int) -> list[Item]:
    return [Item(f, center_crop(load_image(root / f, size), size)) for f in files]


# ----------------------------------------------------------------------------------- measurements
@dataclass(frozen=True)
class Measure:
    content: float  # Lc against the AdaIN target t (the paper's)
    style: float  # Ls against the style image
    content_fc: float  # supplementary: MSE at relu4_1 against f(c) (the classic content loss)


@dataclass
class PairResult:
    losses: dict[str, Measure]  # method key -> losses; keys from method_keys()
    seconds: dict[str, float]  # method key -> wall time to produce that image
    evals: dict[str, int]  # Gatys keys -> loss + gradient evaluations spent
    stylized: torch.Tensor  # our output, (3, H, W) on the CPU
    optimised: torch.Tensor | None  # the optimised image after the last iteration, (3, H, W) on the CPU; None if cached
    cached: bool = False  # the Gatys entries came from the reference cache


@dataclass(frozen=True)
class Reference:
    """The optimisation's results on one pair (Gatys keys only): what the reference cache stores."""

    losses: dict[str, Measure]
    seconds: dict[str, float]
    evals: dict[str, int]

    @classmethod
    def of(cls, result: PairResult) -> Reference:
        keys = [k for k in result.losses if k.startswith("gatys@")]
        return cls({k: result.losses[k] for k in keys}, {k: result.seconds[k] for k in keys}, dict(result.evals))


def encoder_digest(encoder: Encoder) -> str:
    """sha256 of the encoder's weights (names and float32 bytes): the cache key's notion of "same encoder"."""
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def reference_key(content: torch.Tensor, style: torch.Tensor, encoder_sha: str, iters: Sequence[int],
                  line_search: str | None, style_weight: float) -> str:  # fmt: skip
    """What the optimisation's result depends on, hashed: the exact pixels, the encoder and the settings."""
    h = hashlib.sha256()
    for img in (content, style):
        h.update(str(tuple(img.shape)).encode())
        h.update(img.detach().cpu().float().contiguous().numpy().tobytes())
    h.update(json.dumps([encoder_sha, sorted(iters), line_search, style_weight]).encode())
    return h.hexdigest()


class ReferenceCache:
    """A JSON file of ``Reference`` results by ``reference_key``; written after every new pair."""

    VERSION = 1

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict] = {}
        if path.is_file():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise InputError(f"reference cache {path} is unreadable ({e}); delete it to recompute") from e
            if not isinstance(doc, dict) or doc.get("version") != self.VERSION:
                raise InputError(f"reference cache {path} is not a version {self.VERSION} cache; delete it to recompute")
            self.entries = dict(doc.get("entries", {}))

    def get(self, key: str) -> Reference | None:
        e = self.entries.get(key)
        if e is None:
            return None
        return Reference({k: Measure(**m) for k, m in e["losses"].items()}, dict(e["seconds"]), dict(e["evals"]))

    def put(self, key: str, ref: Reference, note: dict[str, str]) -> None:
        self.entries[key] = {"losses": {k: vars(m) for k, m in ref.losses.items()}, "seconds": ref.seconds,
                             "evals": ref.evals, **note}  # fmt: skip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"version": self.VERSION, "entries": self.entries}, indent=1, sort_keys=True) + "\n",
                       encoding="utf-8")  # fmt: skip
        tmp.replace(self.path)


def method_keys(iters: Sequence[int]) -> list[str]:
    return ["ours", *[f"gatys@{k}" for k in sorted(iters)], "content"]


def method_label(key: str) -> str:
    if key == "ours":
        return "Ours (AdaIN decoder, α = 1)"
    if key == "content":
        return "Content image"
    return f"Gatys et al., {key.split('@')[1]} L-BFGS iterations"


StyleStatsDict = dict[str, tuple[torch.Tensor, torch.Tensor]]


def style_statistics(encoder: Encoder, style: torch.Tensor) -> StyleStatsDict:
    feats = encoder(style)
    return {tap: calc_mean_std(feats[tap]) for tap in TAPS}


@torch.inference_mode()
def measure(encoder: Encoder, image: torch.Tensor, t: torch.Tensor, c_feat: torch.Tensor, s_stats: StyleStatsDict) -> Measure:
    """The losses of one image (1, 3, H, W) against the AdaIN target t, f(c) and the style's statistics."""
    feats = encoder(image)
    return Measure(
        content=float(content_loss(feats["relu4_1"], t)),
        style=float(style_loss_from_stats(feats, s_stats)),
        content_fc=float(content_loss(feats["relu4_1"], c_feat)),
    )


@dataclass(frozen=True)
class Snapshot:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1]
    evals: int  # loss + gradient evaluations (forward + backward passes) spent to get here
    seconds: float


def optimise(
    encoder: Encoder,
    content: torch.Tensor,
    t: torch.Tensor,
    s_stats: StyleStatsDict,
    iters: Sequence[int],
    style_weight: float = STYLE_WEIGHT,
    line_search: str | None = None,
    on_iter: IterCallback | None = None,
) -> dict[int, Snapshot]:
    """Gatys et al. with our losses: L-BFGS on the pixels of x, initialised from content (1, 3, H, W).

    One ``step`` is one L-BFGS iteration (history 100, lr 1; with ``line_search="strong_wolfe"`` a strong
    Wolfe line search, else a fixed unit step with one evaluation, as Johnson's neural-style runs it);
    x is clamped to [0, 1] after each iteration. Returns {iteration: Snapshot} for each of ``iters``.
    t and s_stats must be ordinary tensors (not made under inference_mode): they are saved for backward.
    """
    if line_search not in (None, "strong_wolfe"):
        raise InputError(f"line_search must be None or 'strong_wolfe', got {line_search!r}")
    x = content.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, max_eval=26 if line_search else None, history_size=100,
                            line_search_fn=line_search)  # fmt: skip
    evals = 0
    last: dict[str, torch.Tensor] = {}

    def closure() -> torch.Tensor:
        nonlocal evals
        # A step starts by evaluating x, which the previous step's line search has usually just evaluated
        # (unless the clamp moved it): reuse that result instead of a second forward + backward pass.
        if last and torch.equal(last["x"], x):
            x.grad = last["grad"].clone()
            return last["loss"]
        opt.zero_grad(set_to_none=True)
        feats = encoder(x)
        loss = content_loss(feats["relu4_1"], t) + style_weight * style_loss_from_stats(feats, s_stats)
        loss.backward()
        evals += 1
        assert x.grad is not None
        last.update(x=x.detach().clone(), grad=x.grad.clone(), loss=loss.detach())
        return loss

    snapshots: dict[int, Snapshot] = {}
    wanted = set(iters)
    t0 = time.perf_counter()
    for k in range(1, max(wanted) + 1):
        loss = opt.step(closure)  # the loss before this iteration's update
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        if k in wanted:
            snapshots[k] = Snapshot(x.detach().clone(), evals, time.perf_counter() - t0)
        if on_iter is not None:
            on_iter(k, float(loss.detach()))
    return snapshots


def evaluate_pair(
    st: StyleTransfer,
    content: torch.Tensor,
    style: torch.Tensor,
    iters: Sequence[int] = (50, 100, 200),
    style_weight: float = STYLE_WEIGHT,
    line_search: str | None = None,
    on_iter: IterCallback | None = None,
    reference: Reference | None = None,
) -> PairResult:
    """All methods on one content (3, H, W) and style (3, H', W'), both in [0, 1].

    With ``reference`` (from the cache, for exactly these images and settings) the optimisation is not run.
    """
    if not iters or min(iters) < 1:
        raise InputError(f"iteration counts must be positive, got {list(iters)}")
    enc = st.encoder
    c = content.unsqueeze(0).to(st.device, torch.float32)
    s = style.unsqueeze(0).to(st.device, torch.float32)
    # no_grad rather than inference_mode: the targets are saved for backward by the optimisation.
    with torch.no_grad():
        c_feat = enc(c, last="relu4_1")["relu4_1"]
        s_stats = style_statistics(enc, s)
        t = adain(c_feat, enc(s, last="relu4_1")["relu4_1"])

    losses: dict[str, Measure] = {}
    seconds: dict[str, float] = {}
    evals: dict[str, int] = {}
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = st.stylize(c, s, alpha=1.0)
    assert isinstance(out, torch.Tensor)
    seconds["ours"] = time.perf_counter() - t0
    losses["ours"] = measure(enc, out.to(st.device), t, c_feat, s_stats)

    optimised = None
    if reference is not None:
        losses.update(reference.losses)
        seconds.update(reference.seconds)
        evals.update(reference.evals)
    else:
        snaps = optimise(enc, c, t, s_stats, iters, style_weight, line_search, on_iter)
        for k, snap in sorted(snaps.items()):
            key = f"gatys@{k}"
            losses[key] = measure(enc, snap.image, t, c_feat, s_stats)
            seconds[key], evals[key] = snap.seconds, snap.evals
        optimised = snaps[max(snaps)].image[0].cpu()
    losses["content"] = measure(enc, c, t, c_feat, s_stats)
    seconds["content"] = 0.0
    losses = {k: losses[k] for k in method_keys(iters)}  # the report's order, cached or not
    return PairResult(losses, seconds, evals, out[0].cpu(), optimised, cached=reference is not None)


# ---------------------------------------------------------------------------------------- summary
@dataclass(frozen=True)
class Row:
    key: str
    label: str
    n: int
    content_mean: float
    content_std: float
    style_mean: float
    style_std: float
    content_fc_mean: float
    seconds_mean: float
    evals_mean: float | None  # optimisation only


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(results: Sequence[PairResult], keys: Sequence[str]) -> list[Row]:
    """One row per method: mean and sample standard deviation (n - 1) over the pairs."""
    if not results:
        raise InputError("no pairs to summarise")
    rows = []
    for key in keys:
        lc = [r.losses[key].content for r in results]
        ls = [r.losses[key].style for r in results]
        cm, cs = _mean_std(lc)
        sm, ss = _mean_std(ls)
        evals = [r.evals[key] for r in results if key in r.evals]
        rows.append(Row(key, method_label(key), len(results), cm, cs, sm, ss,
                        statistics.fmean(r.losses[key].content_fc for r in results),
                        statistics.fmean(r.seconds[key] for r in results),
                        statistics.fmean(evals) if evals else None))  # fmt: skip
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table (also readable as plain text)."""
    lines = [
        "| method | content loss Lc (mean ± std) | style loss Ls (mean ± std) | Lc + 10 Ls | Lc vs f(c) | s / pair | evals |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        total = r.content_mean + STYLE_WEIGHT * r.style_mean
        ev = "—" if r.evals_mean is None else f"{r.evals_mean:.0f}"
        lines.append(f"| {r.label} | {r.content_mean:.4f} ± {r.content_std:.4f} | {r.style_mean:.4f} ± {r.style_std:.4f} "
                     f"| {total:.4f} | {r.content_fc_mean:.4f} | {r.seconds_mean:.2f} | {ev} |")  # fmt: skip
    return "\n".join(lines)


@dataclass(frozen=True)
class Goal:
    text: str
    met: bool | None  # None: not evaluated


def goals(rows: Sequence[Row]) -> list[Goal]:
    """The paper's goals: our mean Ls <= Gatys@100's, our mean Lc <= 1.5x Gatys@100's."""
    by_key = {r.key: r for r in rows}
    ours, ref = by_key.get("ours"), by_key.get(f"gatys@{GOAL_ITERATION}")
    if ours is None or ref is None:
        why = f"not evaluated: --iters does not include {GOAL_ITERATION}"
        return [Goal(f"style loss ≤ Gatys@{GOAL_ITERATION}: {why}", None),
                Goal(f"content loss ≤ {CONTENT_FACTOR}× Gatys@{GOAL_ITERATION}: {why}", None)]  # fmt: skip
    style_ok = ours.style_mean <= ref.style_mean
    content_ok = ours.content_mean <= CONTENT_FACTOR * ref.content_mean
    return [
        Goal(f"mean style loss ≤ Gatys@{GOAL_ITERATION}: ours {ours.style_mean:.4f} vs {ref.style_mean:.4f} "
             f"— **{'met' if style_ok else 'NOT met'}**", style_ok),
        Goal(f"mean content loss within {CONTENT_FACTOR}× of Gatys@{GOAL_ITERATION}: ours {ours.content_mean:.4f} vs "
             f"{CONTENT_FACTOR}× {ref.content_mean:.4f} = {CONTENT_FACTOR * ref.content_mean:.4f} "
             f"({ours.content_mean / max(ref.content_mean, 1e-12):.2f}×) — **{'met' if content_ok else 'NOT met'}**",
             content_ok),
    ]  # fmt: skip


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(st: StyleTransfer) -> str:
    if st.device.type == "cuda":
        return f"{st.device} ({torch.cuda.get_device_name(st.device)})"
    return f"cpu ({cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def line_search_text(line_search: str | None) -> str:
    if line_search == "strong_wolfe":
        return ("a strong Wolfe line search (so an iteration may take more than one loss and gradient evaluation; "
                "the evals column counts them)")  # fmt: skip
    return ("no line search (a fixed unit step, one loss and gradient evaluation per iteration, as Johnson's neural-style, "
            "which the paper used for its Fig. 3)")  # fmt: skip


def render_markdown(rows: Sequence[Row], settings: dict[str, str], line_search: str | None = None) -> str:
    """docs/quality.md: settings, the table, the goals."""
    setting_lines = "\n".join(f"| {k} | {v} |" for k, v in settings.items())
    goal_lines = "\n".join(f"- {g.text}" for g in goals(rows))
    return f"""# Quality: our decoder against optimisation-based transfer (paper §7.1, Fig. 3)

Produced by `scripts/evaluate.py`. Both losses are the paper's, computed with our frozen normalised
VGG-19 encoder f and mean-reduced as in training (`adain.losses`):

- **content loss** Lc = MSE(f(x) at relu4_1, t) with the **AdaIN target t = AdaIN(f(c), f(s))**, not f(c).
  The paper's §7.1 says only that its content loss is "the same as in" the compared methods, so the
  target is not pinned down there; we use t, the target the decoder is trained for (eq. 12), both for
  the optimisation and for the measurement. The column "Lc vs f(c)" is a supplementary measure against
  the content features (the classic content loss; 0 for the content image).
- **style loss** Ls = Σ over relu1_1, relu2_1, relu3_1, relu4_1 of MSE(mean) + MSE(std) against the style image.

Methods, on every (content, style) pair:

- **Ours**: x = g(t) with the decoder below, α = 1, fp32, output clamped to [0, 1].
- **Gatys et al.**: x optimised for L = Lc + 10·Ls with the same encoder, losses and target t,
  initialised from the content image; `torch.optim.LBFGS` (lr 1, history 100) on the pixel values
  directly (no sigmoid), with
  {line_search_text(line_search)};
  one L-BFGS iteration per step and **x clamped to [0, 1] after every iteration**; one run to the
  largest count, losses measured on snapshots taken after each reported count.
- **Content image**: x = c, for reference.

Columns: mean ± sample standard deviation over the pairs; "Lc + 10 Ls" of the means; "s / pair" is
the wall time to produce the image (decoder: one stylize call including style encoding; Gatys: time
to reach that iteration); "evals": mean forward + backward passes the optimisation spent.

## Settings

| setting | value |
|---|---|
{setting_lines}

## Results

{format_table(rows)}

## The paper's goals

The paper reports that our style loss is that of Gatys et al. between 50 and 100 iterations, with
comparable content loss. Goals here: our mean style loss ≤ Gatys@{GOAL_ITERATION} iterations, and our
mean content loss within {CONTENT_FACTOR}× of Gatys@{GOAL_ITERATION} iterations.

{goal_lines}

## Contact sheet

![contact sheet](contact_sheet.png)

Top row: the styles; left column: the contents; each cell: our output for that pair.
"""


# ----------------------------------------------------------------------------------- contact sheet
def thumbnail(img: torch.Tensor | Image.Image, thumb: int) -> Image.Image:
    """A (3, H, W) tensor or PIL image -> a thumb x thumb RGB image (centre-cropped to square if needed)."""
    pil = tensor_to_pil(img) if isinstance(img, torch.Tensor) else img.convert("RGB")
    return ImageOps.fit(pil, (thumb, thumb), Image.Resampling.LANCZOS)


def contact_sheet(
    contents: Sequence[torch.Tensor | Image.Image],
    styles: Sequence[torch.Tensor | Image.Image],
    cells: Mapping[tuple[int, int], torch.Tensor | Image.Image],
    thumb: int = 128,
    pad: int = 4,
) -> Image.Image:
    """Grid: header row of style thumbnails, header column of content thumbnails, cell (i, j) = content i x style j.

    Size: ((len(styles) + 1) * (thumb + pad) + pad) x ((len(contents) + 1) * (thumb + pad) + pad); white background.
    """
    step = thumb + pad
    sheet = Image.new("RGB", ((len(styles) + 1) * step + pad, (len(contents) + 1) * step + pad), "white")
    for j, s in enumerate(styles):
        sheet.paste(thumbnail(s, thumb), (pad + (j + 1) * step, pad))
    for i, c in enumerate(contents):
        sheet.paste(thumbnail(c, thumb), (pad, pad + (i + 1) * step))
    for (i, j), img in cells.items():
        sheet.paste(thumbnail(img, thumb), (pad + (j + 1) * step, pad + (i + 1) * step))
    return sheet


# -------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="corpus folder with manifest.csv (heldout split is used)")
    ap.add_argument("--decoder", type=Path, default=DEFAULT_DECODER_PATH, help="decoder file (default: the shipped one)")
    ap.add_argument("--contents", type=int, default=20, help="number of held-out content images (first N)")
    ap.add_argument("--styles", type=int, default=10, help="number of held-out style images (first M)")
    ap.add_argument("--size", type=int, default=256, help="square side of the test images")
    ap.add_argument("--iters", type=int, nargs="+", default=[50, 100, 200], help="L-BFGS iteration counts to report")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    ap.add_argument("--out", type=Path, default=Path("docs"), help="folder for quality.md and contact_sheet.png")
    ap.add_argument("--line-search", choices=["none", "strong_wolfe"], default="none",
                    help="L-BFGS line search (none: fixed unit steps, one evaluation per iteration, as the paper)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--thumb", type=int, default=128, help="contact sheet thumbnail side")
    ap.add_argument("--reference-cache", type=Path, metavar="FILE",
                    help="JSON file of the optimisation's results per pair, reused when images and settings match "
                         "(e.g. docs/quality_reference.json)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.contents < 1 or args.styles < 1:
        ap.error("--contents and --styles must be at least 1")
    if args.size < 16:
        ap.error("--size must be at least 16")
    if min(args.iters) < 1:
        ap.error("--iters must be positive")
    args.iters = sorted(set(args.iters))
    args.line_search = None if args.line_search == "none" else args.line_search
    if args.threads < 0:
        ap.error("--threads must be 0 (torch default) or more")
    return args


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    content_files, style_files = heldout_files(args.corpus)
    content_files, style_files = content_files[: args.contents], style_files[: args.styles]
    if not content_files or not style_files:
        raise InputError(f"{args.corpus}: the heldout split has {len(content_files)} contents and {len(style_files)} styles")
    if len(content_files) < args.contents or len(style_files) < args.styles:
        print(f"note: only {len(content_files)} held-out contents and {len(style_files)} styles available", file=sys.stderr)
    st = StyleTransfer.load(args.decoder, device=args.device, precision="fp32")
    _, meta = load_tensors(args.decoder)
    contents = load_items(args.corpus, content_files, args.size)
    styles = load_items(args.corpus, style_files, args.size)
    pairs = [(i, j) for i in range(len(contents)) for j in range(len(styles))]
    keys = method_keys(args.iters)
    results: list[PairResult] = []
    cells: dict[tuple[int, int], Image.Image] = {}
    started = dt.datetime.now().astimezone()
    t_start = time.perf_counter()
    cache = ReferenceCache(args.reference_cache) if args.reference_cache else None
    ref_keys: dict[tuple[int, int], str] = {}
    if cache is not None:
        enc_sha = encoder_digest(st.encoder)
        ref_keys = {(i, j): reference_key(contents[i].image, styles[j].image, enc_sha, args.iters, args.line_search,
                                          STYLE_WEIGHT) for i, j in pairs}  # fmt: skip
    cached = {p: ref for p, k in ref_keys.items() if cache is not None and (ref := cache.get(k)) is not None}
    try:
        total = sum(1 if p in cached else max(args.iters) + 1 for p in pairs)
        with Progress(total, "evaluate") as bar:
            for n, (i, j) in enumerate(pairs, 1):

                def note(k: int, loss: float, n: int = n) -> None:
                    bar.update(1, f"pair {n}/{len(pairs)} it {k} L {loss:.4f}")

                r = evaluate_pair(st, contents[i].image, styles[j].image, args.iters, STYLE_WEIGHT, args.line_search, note,
                                  reference=cached.get((i, j)))  # fmt: skip
                bar.update(1, f"pair {n}/{len(pairs)} done" + (" (optimisation from the cache)" if r.cached else ""))
                results.append(r)
                cells[(i, j)] = thumbnail(r.stylized, args.thumb)
                if cache is not None and not r.cached:
                    cache.put(ref_keys[(i, j)], Reference.of(r), {
                        "content": contents[i].name, "style": styles[j].name, "size": str(args.size),
                        "computed": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                        "device": device_description(st), "torch": torch.__version__})  # fmt: skip
    except KeyboardInterrupt:
        print(f"\ninterrupted after {len(results)} of {len(pairs)} pairs; nothing written", file=sys.stderr)
        if results:
            print(format_table(summarise(results, keys)))
        return 130
    elapsed = time.perf_counter() - t_start
    rows = summarise(results, keys)
    settings = {
        "date": started.isoformat(timespec="seconds"),
        "machine / device": f"{device_description(st)}; {platform.platform()}; torch {torch.__version__}",
        "corpus": f"`{args.corpus}`, split heldout, files sorted by path",
        "pairs": f"{len(results)} = first {len(contents)} contents × first {len(styles)} styles",
        "image size": f"{args.size} × {args.size} (shorter side resized to {args.size}, Lanczos, centre crop)",
        "decoder": f"`{args.decoder}` ({meta.get('name', 'unnamed')}), trained iterations: {meta.get('iterations', 'unknown')}",
        "encoder": st.encoder_name,
        "style weight λ": f"{STYLE_WEIGHT:g}",
        "L-BFGS iterations reported": ", ".join(str(k) for k in args.iters),
        "L-BFGS": f"lr 1, history 100, line search {args.line_search or 'none'}, clamp to [0, 1] after each iteration",
        "optimisation results": _reference_note(results, args.reference_cache),
        "precision": "fp32",
        "total time": f"{elapsed / 60:.1f} min",
    }
    table = format_table(rows)
    print(table)
    for g in goals(rows):
        print("-", g.text.replace("**", ""))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.md").write_text(render_markdown(rows, settings, args.line_search), encoding="utf-8")
    sheet = contact_sheet([c.image for c in contents], [s.image for s in styles], cells, args.thumb)
    sheet.save(args.out / "contact_sheet.png")
    print(f"wrote {args.out / 'quality.md'} and {args.out / 'contact_sheet.png'}")
    return 0


def _reference_note(results: Sequence[PairResult], cache: Path | None) -> str:
    reused = sum(r.cached for r in results)
    if cache is None:
        return f"computed in this run for all {len(results)} pairs"
    return (f"{reused} of {len(results)} pairs reused from `{cache}` (computed earlier for the same pixels, encoder "
            f"weights and settings; see the file for when and where), {len(results) - reused} computed in this run")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except AdainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
