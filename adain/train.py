"""Decoder training (paper §6.2), resumable exactly across sessions, with a measured recipe.

    adain train --corpus /data/corpus --checkpoint runs/decoder.ckpt --iterations 20000 --crop 128

Adam, lr 1e-4 with inverse decay lr / (1 + 5e-5 * iter), batch 8, content loss at relu4_1 against the
AdaIN target, style loss on mean/std at relu1_1..relu4_1 (mean-reduced MSE) with weight λ and optional
per-layer weights. The recipe (``TrainConfig``, ``docs/training.md``) adds reconstruction samples (style =
content, the α = 0 case) to every batch or to a warm-up, with optional extra content layers and a pixel
term on them. Content images: shorter side 512, random crops; styles: shorter side drawn from 256..768,
random crops, flips (``adain.train_data``).

Every batch is drawn from a generator seeded by (seed, iteration), so a resumed run sees exactly the
batches an uninterrupted one would. The checkpoint (safetensors) holds the decoder, Adam's state, the
iteration and the RNG state; a CSV log beside it has one row per iteration for plotting, and with
``--eval-every N`` a second CSV (``<name>.eval.csv``) holds the held-out evaluation every N iterations
(``adain.train_eval``). ``--init-from FILE`` starts a new run from a checkpoint's or an exported decoder's
weights with a fresh Adam, continuing their iteration count.
Ctrl-C (or SIGTERM) saves a checkpoint and exits. ``--snapshot-every N`` also exports the decoder every N
iterations, since the last iteration is not necessarily the best decoder on images it never saw.
Checkpoints hold optimizer state: keep them out of git (``runs/`` and ``checkpoints/*.ckpt`` are ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import torch
import torch.nn.functional as F

from adain.errors import InputError
from adain.functional import adain
from adain.losses import TORCH_STYLE_LAYER_WEIGHTS, UNIFORM_STYLE_LAYER_WEIGHTS, content_loss, style_loss_per_layer
from adain.networks import TAPS, Decoder, Encoder
from adain.progress import Progress
from adain.train_data import BatchSource, Sampling, corpus_pools, folder_pool
from adain.train_eval import EvaluationStoppedError, append_eval_log, evaluate_decoder, load_heldout
from adain.train_state import export_decoder, save_checkpoint, start_run
from adain.weights import build_encoder
from adain_wire.options import PRECISIONS

STYLE_LAYER_PRESETS = {"uniform": UNIFORM_STYLE_LAYER_WEIGHTS, "torch": TORCH_STYLE_LAYER_WEIGHTS}


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe. Defaults: the recipe of the shipped decoder (docs/training.md, session 10): λ = 15 on
    uniform layers for the stylization samples, and a quarter of every batch reconstruction samples with content
    also at relu1_1..relu3_1 (base_recon25_deep of the ablations, whose λ was 10; 15 is about 10 / 0.75, for the
    six stylization samples left in a batch of 8). The recipe of the decoders before session 8 is
    ``--style-weight 10 --recon-share 0 --recon-layers``."""

    lr: float = 1e-4
    lr_decay: float = 5e-5  # lr / (1 + lr_decay * iteration)
    batch: int = 8
    style_weight: float = 15.0  # λ (eq. 11)
    style_layer_weights: tuple[float, ...] = UNIFORM_STYLE_LAYER_WEIGHTS  # per tap, relu1_1 -> relu4_1
    recon_share: float = 0.25  # share of every batch that is reconstruction samples (style = content)
    warmup: int = 0  # iterations 1..warmup train on reconstruction samples only
    recon_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1")  # extra content taps (f(c)) on those samples
    recon_layer_weight: float = 1.0  # the weight of each of those taps
    pixel_weight: float = 0.0  # weight of a pixel MSE on reconstruction samples
    sampling: Sampling = field(default_factory=Sampling)
    seed: int = 0

    def recon_count(self, iteration: int) -> int:
        """Reconstruction samples in the batch of 0-based ``iteration``."""
        return self.batch if iteration < self.warmup else round(self.recon_share * self.batch)


def _layer_weights(text: str) -> tuple[float, ...]:
    if text in STYLE_LAYER_PRESETS:
        return STYLE_LAYER_PRESETS[text]
    try:
        w = tuple(float(x) for x in text.split(","))
    except ValueError:
        w = ()
    if len(w) != len(TAPS) or any(x < 0 for x in w):
        raise argparse.ArgumentTypeError(
            f"expected {' or '.join(STYLE_LAYER_PRESETS)}, or {len(TAPS)} non-negative comma-separated weights "
            f"for {', '.join(TAPS)}; got {text!r}"
        )
    return w


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--corpus", type=Path, help="corpus folder with manifest.csv (train split is used)")
    p.add_argument("--content", type=Path, help="folder of content images (instead of --corpus)")
    p.add_argument("--style", type=Path, help="folder of style images (instead of --corpus)")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint file; resumed if it exists")
    p.add_argument("--init-from", type=Path,
                   help="a new run starts from these weights (a checkpoint or an exported decoder), with a fresh Adam, "
                        "at their iteration count")  # fmt: skip
    p.add_argument("--iterations", type=int, required=True, help="train until this total iteration count")
    p.add_argument("--crop", type=int, default=256, help="square crop size in pixels (paper: 256)")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    r = p.add_argument_group("recipe (docs/training.md)")
    r.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate at iteration 0")
    r.add_argument("--lr-decay", type=float, default=d.lr_decay, help="lr / (1 + decay * iteration); 0: constant")
    r.add_argument("--style-weight", type=float, default=d.style_weight, help="λ, the style loss weight")
    r.add_argument("--style-layer-weights", type=_layer_weights, default=d.style_layer_weights,
                   help="per-layer style weights relu1_1..relu4_1: 'uniform' (1 each), 'torch' (train.lua's "
                        "styleWeight 1e-2 scale: 0.64,1.28,2.56,5.12) or four numbers w1,w2,w3,w4")  # fmt: skip
    r.add_argument("--recon-share", type=float, default=d.recon_share,
                   help="share of every batch whose style image is its content image (alpha = 0 samples)")  # fmt: skip
    r.add_argument("--warmup", type=int, default=d.warmup,
                   help="iterations up to N of the count train on reconstruction only (the count is absolute: "
                        "after --init-from, add its iteration count)")  # fmt: skip
    r.add_argument("--recon-layers", nargs="*", choices=TAPS, default=list(d.recon_layers),
                   help="extra content-loss taps on reconstruction samples (target f(c))")  # fmt: skip
    r.add_argument("--recon-layer-weight", type=float, default=d.recon_layer_weight,
                   help="weight of each --recon-layers tap (1: as much as the relu4_1 content term)")  # fmt: skip
    r.add_argument("--pixel-weight", type=float, default=d.pixel_weight, help="pixel MSE weight on reconstruction samples")
    r.add_argument("--painting-weight", type=float, default=d.sampling.painting_weight,
                   help="how much more often real paintings are drawn than other styles")  # fmt: skip
    r.add_argument("--texture-share", type=float, default=d.sampling.texture_share,
                   help="share of content draws that are photographic textures")  # fmt: skip
    p.add_argument("--save-every", type=int, default=200, help="checkpoint every N iterations")
    p.add_argument("--max-minutes", type=float, default=0, help="stop (with a checkpoint) after this long")
    p.add_argument("--export", type=Path, help="write the decoder as fp16 safetensors when done")
    p.add_argument("--snapshot-every", type=int, default=0,
                   help="also export the decoder (fp16) every N iterations, to pick the best on held-out images "
                        "(scripts/compare_decoders.py)")  # fmt: skip
    p.add_argument("--snapshots", type=Path,
                   help="folder for those snapshots (default: beside the checkpoint, <name>.snapshots/)")  # fmt: skip
    e = p.add_argument_group("held-out evaluation (adain.train_eval; needs --corpus)")
    e.add_argument("--eval-every", type=int, default=0,
                   help="evaluate every N iterations (and at the start): alpha=0 PSNR, content, style; 0: off")  # fmt: skip
    e.add_argument("--eval-contents", type=int, default=6, help="held-out photos in the evaluation")
    e.add_argument("--eval-styles", type=int, default=6, help="held-out paintings in the evaluation")
    e.add_argument("--eval-size", type=int, default=256, help="evaluation image size (square)")
    p.add_argument("--seed", type=int, default=0)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if not 0.0 <= args.recon_share <= 1.0:
        raise InputError(f"--recon-share must be in [0, 1], got {args.recon_share}")
    for name in ("style_weight", "pixel_weight", "recon_layer_weight", "lr_decay", "warmup"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if args.lr <= 0:
        raise InputError(f"--lr must be positive, got {args.lr}")
    return TrainConfig(
        lr=args.lr, lr_decay=args.lr_decay, batch=args.batch, style_weight=args.style_weight,
        style_layer_weights=tuple(args.style_layer_weights), recon_share=args.recon_share, warmup=args.warmup,
        recon_layers=tuple(args.recon_layers), recon_layer_weight=args.recon_layer_weight, pixel_weight=args.pixel_weight,
        sampling=Sampling(painting_weight=args.painting_weight, texture_share=args.texture_share), seed=args.seed,
    )  # fmt: skip


# -------------------------------------------------------------------------------------- training
def lr_at(cfg: TrainConfig, iteration: int) -> float:
    return cfg.lr / (1.0 + cfg.lr_decay * iteration)


@dataclass(frozen=True)
class StepLosses:
    """One batch's losses (scalars with gradients to the decoder)."""

    content: torch.Tensor  # relu4_1 against the AdaIN target, every sample
    style_layers: tuple[torch.Tensor, ...]  # unweighted per tap, relu1_1 -> relu4_1
    recon: torch.Tensor  # extra layers + pixel term on the reconstruction samples (0 without them)

    def style(self, cfg: TrainConfig) -> torch.Tensor:
        zero = torch.zeros((), device=self.content.device)
        return sum((w * s for w, s in zip(cfg.style_layer_weights, self.style_layers, strict=True)), zero)

    def total(self, cfg: TrainConfig) -> torch.Tensor:
        return self.content + cfg.style_weight * self.style(cfg) + self.recon


def train_step(
    encoder: Encoder, decoder: Decoder, content: torch.Tensor, style: torch.Tensor, cfg: TrainConfig, recon: int,
    autocast: torch.autocast | None,
) -> StepLosses:  # fmt: skip
    """One forward pass; the first ``recon`` samples are reconstruction samples (style = content)."""
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    extra = recon > 0 and (cfg.recon_layers or cfg.pixel_weight > 0)
    with ctx:
        with torch.no_grad():
            s_feats = encoder(style)
            c_feats = encoder(content) if extra else {"relu4_1": encoder(content, last="relu4_1")["relu4_1"]}
            t = adain(c_feats["relu4_1"], s_feats["relu4_1"])
        out = decoder(t)
        o_feats = encoder(out)
    rec = torch.zeros((), device=out.device)
    if extra:
        for tap in cfg.recon_layers:
            rec = rec + cfg.recon_layer_weight * content_loss(o_feats[tap][:recon], c_feats[tap][:recon])
        if cfg.pixel_weight > 0:
            rec = rec + cfg.pixel_weight * F.mse_loss(out[:recon].float(), content[:recon].float())
    return StepLosses(content_loss(o_feats["relu4_1"], t), tuple(style_loss_per_layer(o_feats, s_feats)), rec)


LOG_COLUMNS = ("iteration", "lr", "crop", "content_loss", "style_loss", "total", "sec_per_iter",
               *(f"style_{t}" for t in TAPS), "recon_loss", "recon_samples")  # fmt: skip


def _open_log(path: Path) -> IO[str]:
    """The per-iteration CSV; a log with another header (an older format) is kept aside as ``*.old.csv``."""
    if path.exists():
        with path.open() as f:
            header = f.readline().strip()
        if header != ",".join(LOG_COLUMNS):
            path.rename(path.with_suffix(".old.csv"))
    new = not path.exists()
    f = path.open("a", newline="")
    if new:
        csv.writer(f).writerow(LOG_COLUMNS)
    return f


def _last_eval_iteration(path: Path) -> int | None:
    """The iteration of the last row of an evaluation log (None without one): a resume does not repeat it."""
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    return int(rows[-1]["iteration"]) if rows else None


def run_training(args: argparse.Namespace) -> int:
    from adain.model import resolve_device, resolve_precision

    cfg = config_from_args(args)
    if args.corpus:
        content_pool, style_pool = corpus_pools(args.corpus, cfg.sampling)
    elif args.content and args.style:
        content_pool, style_pool = folder_pool(args.content), folder_pool(args.style)
    else:
        raise InputError("give --corpus DIR, or both --content DIR and --style DIR")
    if args.crop < 32 or args.crop % 8:
        raise InputError(f"--crop must be a multiple of 8 and at least 32, got {args.crop}")
    if args.snapshot_every < 0:
        raise InputError(f"--snapshot-every must be 0 (off) or a positive iteration count, got {args.snapshot_every}")
    if args.eval_every < 0:
        raise InputError(f"--eval-every must be 0 (off) or a positive iteration count, got {args.eval_every}")
    if args.eval_every and not args.corpus:
        raise InputError("--eval-every needs --corpus: the evaluation uses the corpus's held-out split")
    heldout = load_heldout(args.corpus, args.eval_contents, args.eval_styles, args.eval_size) if args.eval_every else None
    snapshots = args.snapshots or args.checkpoint.with_suffix(".snapshots")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(cfg.seed)
    # NHWC activations: oneDNN and CUDA tensor cores run these convolutions faster (1.1-1.2x per CPU iteration)
    encoder = build_encoder().to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    decoder = Decoder().to(device).to(memory_format=torch.channels_last).train()  # type: ignore[call-overload]
    opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)
    start, meta = start_run(args, decoder, opt)
    if "config" in meta and meta["config"] != json.loads(json.dumps(asdict(cfg))):
        print(f"note: the recipe differs from the checkpoint's: now {asdict(cfg)}")
    autocast = None
    if precision != "fp32":
        autocast = torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    source = BatchSource(content_pool, style_pool, cfg.sampling, cfg.batch, args.crop, cfg.seed)
    args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    eval_path = args.checkpoint.with_suffix(".eval.csv")
    stop = {"flag": False}
    old_handler = signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else math.inf
    avg_c = avg_s = None
    it = start
    last_eval = ""

    def evaluate() -> None:
        nonlocal last_eval
        assert heldout is not None
        try:
            res = evaluate_decoder(encoder, decoder, heldout, lambda: stop["flag"])
        except EvaluationStoppedError:  # SIGTERM during the evaluation: no partial row; the loop below stops
            print(f"\niteration {it}: evaluation stopped", flush=True)
            return
        append_eval_log(eval_path, it, res)
        last_eval = f" | PSNR0 {res.psnr_alpha0:.2f} c {res.content:.2f} s {res.style:.2f}"
        print(f"\niteration {it}: {res.line()} ({res.seconds:.0f} s)", flush=True)

    pool = ThreadPoolExecutor(1)
    pending: Future | None = pool.submit(source.batch, it, cfg.recon_count(it)) if it < args.iterations else None
    try:
        with _open_log(args.checkpoint.with_suffix(".log.csv")) as logf, Progress(args.iterations - start, "train") as bar:
            log = csv.writer(logf)
            if heldout is not None and it < args.iterations and _last_eval_iteration(eval_path) != it:
                evaluate()
            while it < args.iterations and not stop["flag"] and time.monotonic() < deadline:
                t0 = time.monotonic()
                assert pending is not None
                content, style = pending.result()
                recon = cfg.recon_count(it)
                nxt = it + 1
                pending = pool.submit(source.batch, nxt, cfg.recon_count(nxt)) if nxt < args.iterations else None
                for g in opt.param_groups:
                    g["lr"] = lr_at(cfg, it)
                content = content.to(device).contiguous(memory_format=torch.channels_last)
                style = style.to(device).contiguous(memory_format=torch.channels_last)
                losses = train_step(encoder, decoder, content, style, cfg, recon, autocast)
                loss = losses.total(cfg)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                it += 1
                c = float(losses.content.detach())
                parts = [float(x.detach()) for x in losses.style_layers]
                s = math.fsum(parts)  # the unweighted style loss: the same measure whatever the recipe
                avg_c = c if avg_c is None else 0.98 * avg_c + 0.02 * c
                avg_s = s if avg_s is None else 0.98 * avg_s + 0.02 * s
                log.writerow([it, f"{lr_at(cfg, it - 1):.3g}", args.crop, f"{c:.5f}", f"{s:.5f}", f"{float(loss.detach()):.5f}",
                              f"{time.monotonic() - t0:.3f}", *(f"{x:.5f}" for x in parts),
                              f"{float(losses.recon.detach()):.5f}", recon])  # fmt: skip
                meta["crops"][str(args.crop)] = meta["crops"].get(str(args.crop), 0) + 1
                bar.update(1, f"it {it} content {avg_c:.3f} style {avg_s:.3f}{last_eval}")
                if it % args.save_every == 0:
                    logf.flush()
                    meta.update(iteration=it, content_loss=avg_c, style_loss=avg_s, config=asdict(cfg))
                    save_checkpoint(args.checkpoint, decoder, opt, it, meta)
                if args.snapshot_every and it % args.snapshot_every == 0:
                    snapshots.mkdir(parents=True, exist_ok=True)
                    meta.update(iteration=it, content_loss=avg_c, style_loss=avg_s)
                    export_decoder(decoder, snapshots / f"decoder-{it:06d}.safetensors", meta)
                if heldout is not None and it % args.eval_every == 0:
                    logf.flush()
                    evaluate()
    except KeyboardInterrupt:
        print("\ninterrupted: saving the checkpoint")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        signal.signal(signal.SIGTERM, old_handler)
    if it > start:
        if avg_c is not None:
            meta.update(content_loss=avg_c, style_loss=avg_s)
        meta.update(iteration=it, config=asdict(cfg))
        save_checkpoint(args.checkpoint, decoder, opt, it, meta)
        print(f"checkpoint {args.checkpoint} at iteration {it}")
    if args.export:
        export_decoder(decoder.cpu(), args.export, meta)
        print(f"exported the decoder to {args.export}")
    return 0
