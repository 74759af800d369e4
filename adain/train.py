"""Decoder training (paper §6.2), resumable exactly across sessions.

    adain train --corpus /data/corpus --checkpoint checkpoints/decoder.ckpt --iterations 20000 --crop 128

Adam, lr 1e-4 with inverse decay lr / (1 + 5e-5 * iter), batch 8, content loss at relu4_1 against the
AdaIN target, style loss on mean/std at relu1_1..relu4_1 with weight 10 (mean-reduced MSE). Content
images: shorter side 512, random crops; styles: shorter side drawn from 256..768, random crops, flips.

Every batch is drawn from a generator seeded by (seed, iteration), so a resumed run sees exactly the
batches an uninterrupted one would. The checkpoint (safetensors) holds the decoder, Adam's state, the
iteration and the RNG state; a CSV log beside it has one row per logged iteration for plotting.
Ctrl-C (or SIGTERM) saves a checkpoint and exits. ``--snapshot-every N`` also exports the decoder every N
iterations, since the last iteration is not necessarily the best decoder on images it never saw.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image

from adain.errors import InputError
from adain.functional import adain
from adain.images import resize_shorter
from adain.losses import content_loss, style_loss
from adain.networks import Decoder, Encoder
from adain.progress import Progress
from adain.tensorfile import load_tensors, save_tensors
from adain.weights import ENCODER_NORMALISED, build_encoder, save_network

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-4
    lr_decay: float = 5e-5
    batch: int = 8
    style_weight: float = 10.0
    content_side: int = 512
    style_side_min: int = 256
    style_side_max: int = 768
    seed: int = 0


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", type=Path, help="corpus folder with manifest.csv (train split is used)")
    p.add_argument("--content", type=Path, help="folder of content images (instead of --corpus)")
    p.add_argument("--style", type=Path, help="folder of style images (instead of --corpus)")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint file; resumed if it exists")
    p.add_argument("--iterations", type=int, required=True, help="train until this total iteration count")
    p.add_argument("--crop", type=int, default=256, help="square crop size in pixels (paper: 256)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    p.add_argument("--save-every", type=int, default=200, help="checkpoint every N iterations")
    p.add_argument("--max-minutes", type=float, default=0, help="stop (with a checkpoint) after this long")
    p.add_argument("--export", type=Path, help="write the decoder as fp16 safetensors when done")
    p.add_argument("--snapshot-every", type=int, default=0,
                   help="also export the decoder (fp16) every N iterations, to pick the best on held-out images "
                        "(scripts/compare_decoders.py)")  # fmt: skip
    p.add_argument("--snapshots", type=Path,
                   help="folder for those snapshots (default: beside the checkpoint, <name>.snapshots/)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)


# ------------------------------------------------------------------------------------------ data
@dataclass(frozen=True)
class Pool:
    """Image files of one kind with sampling weights (normalised)."""

    files: list[Path]
    weights: np.ndarray


def _folder_pool(folder: Path) -> Pool:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images in {folder}")
    return Pool(files, np.full(len(files), 1.0 / len(files)))


# Content batches are ~55% photos and ~45% photographic textures; real paintings are oversampled 3x.
_CATEGORY_WEIGHT = {"painting": 3.0}


def _corpus_pools(corpus: Path) -> tuple[Pool, Pool]:
    manifest = corpus / "manifest.csv"
    if not manifest.is_file():
        raise InputError(f"{manifest} not found: build the corpus with scripts/build_corpus.py")
    rows = [r for r in csv.DictReader(manifest.open()) if r["split"] == "train"]
    pools = []
    for kind in ("content", "style"):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            raise InputError(f"{manifest} has no training {kind} images")
        missing = [r["file"] for r in sel if not (corpus / r["file"]).is_file()]
        if missing:
            raise InputError(
                f"{manifest} lists {len(missing)} {kind} file(s) that are not in {corpus} (first: {missing[0]}): "
                "the manifest and the images come from different builds; rebuild with scripts/build_corpus.py"
            )
        w = np.array([_CATEGORY_WEIGHT.get(r["category"], 1.0) for r in sel])
        if kind == "content":
            tex = np.array([r["category"] == "texture" for r in sel])
            if tex.any() and (~tex).any():
                w = np.where(tex, 0.45 / tex.sum(), 0.55 / (~tex).sum())
        pools.append(Pool([corpus / r["file"] for r in sel], w / w.sum()))
    return pools[0], pools[1]


class ImageCache:
    """Decoded images, resized once so their shorter side is ``side``, kept in memory as uint8."""

    def __init__(self, side: int) -> None:
        self.side = side
        self._cache: dict[Path, np.ndarray] = {}

    def get(self, path: Path) -> np.ndarray:
        arr = self._cache.get(path)
        if arr is None:
            with Image.open(path) as im:
                arr = np.asarray(resize_shorter(im.convert("RGB"), self.side))
            self._cache[path] = arr
        return arr


def _crop(arr: np.ndarray, window: int, out: int, rng: random.Random) -> torch.Tensor:
    h, w = arr.shape[:2]
    window = min(window, h, w)
    y, x = rng.randint(0, h - window), rng.randint(0, w - window)
    patch = arr[y : y + window, x : x + window]
    if window != out:
        patch = np.asarray(Image.fromarray(patch).resize((out, out), Image.Resampling.BILINEAR))
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return torch.from_numpy(np.array(patch)).permute(2, 0, 1).float() / 255.0


class BatchSource:
    """Deterministic batches: batch ``i`` depends only on (seed, i), never on what ran before."""

    def __init__(self, content: Pool, style: Pool, cfg: TrainConfig, crop: int) -> None:
        self.content, self.style, self.cfg, self.crop = content, style, cfg, crop
        self.content_cache = ImageCache(cfg.content_side)
        self.style_cache = ImageCache(cfg.style_side_max)

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = random.Random(f"{self.cfg.seed}:{iteration}")
        nprng = np.random.default_rng([self.cfg.seed, iteration])
        ci = nprng.choice(len(self.content.files), self.cfg.batch, p=self.content.weights)
        si = nprng.choice(len(self.style.files), self.cfg.batch, p=self.style.weights)
        contents = [_crop(self.content_cache.get(self.content.files[i]), self.crop, self.crop, rng) for i in ci]
        styles = []
        for i in si:
            # Style statistics depend on scale: view the style as if its shorter side were s in [256, 768].
            s = rng.randint(max(self.cfg.style_side_min, self.crop), self.cfg.style_side_max)
            window = round(self.crop * self.cfg.style_side_max / s)
            styles.append(_crop(self.style_cache.get(self.style.files[i]), window, self.crop, rng))
        return torch.stack(contents), torch.stack(styles)


# -------------------------------------------------------------------------------------- training
def lr_at(cfg: TrainConfig, iteration: int) -> float:
    return cfg.lr / (1.0 + cfg.lr_decay * iteration)


def train_step(
    encoder: Encoder, decoder: Decoder, content: torch.Tensor, style: torch.Tensor, cfg: TrainConfig,
    autocast: torch.autocast | None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """One forward pass; returns (content loss, style loss) with gradients to the decoder."""
    import contextlib

    ctx = autocast if autocast is not None else contextlib.nullcontext()
    with ctx:
        with torch.no_grad():
            s_feats = encoder(style)
            c_feat = encoder(content, last="relu4_1")["relu4_1"]
            t = adain(c_feat, s_feats["relu4_1"])
        out = decoder(t)
        o_feats = encoder(out)
    return content_loss(o_feats["relu4_1"], t), style_loss(o_feats, s_feats)


def save_checkpoint(path: Path, decoder: Decoder, opt: torch.optim.Adam, iteration: int, meta: dict) -> None:
    tensors = {f"decoder.{k}": v for k, v in decoder.state_dict().items()}
    for i, p in enumerate(decoder.parameters()):
        st = opt.state.get(p)
        if st:
            tensors[f"adam.{i}.exp_avg"] = st["exp_avg"]
            tensors[f"adam.{i}.exp_avg_sq"] = st["exp_avg_sq"]
            tensors[f"adam.{i}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
    tensors["rng.torch"] = torch.get_rng_state()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, tensors, {"iteration": str(iteration), "meta": json.dumps(meta)})


def load_checkpoint(path: Path, decoder: Decoder, opt: torch.optim.Adam) -> tuple[int, dict]:
    tensors, md = load_tensors(path)
    decoder.load_state_dict({k[len("decoder.") :]: v for k, v in tensors.items() if k.startswith("decoder.")})
    for i, p in enumerate(decoder.parameters()):
        if f"adam.{i}.exp_avg" in tensors:
            opt.state[p] = {
                "step": tensors[f"adam.{i}.step"].reshape(()).clone(),
                "exp_avg": torch.empty_like(p).copy_(tensors[f"adam.{i}.exp_avg"]),  # in the parameter's layout
                "exp_avg_sq": torch.empty_like(p).copy_(tensors[f"adam.{i}.exp_avg_sq"]),
            }
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return int(md["iteration"]), json.loads(md.get("meta", "{}"))


def export_decoder(decoder: Decoder, path: Path, meta: dict) -> None:
    info = {
        "name": f"adain-decoder-{meta.get('iteration', 0)}it",
        "encoder": ENCODER_NORMALISED,
        "iterations": str(meta.get("iteration", 0)),
        "crops": json.dumps(meta.get("crops", {})),
        "final_content_loss": f"{meta.get('content_loss', float('nan')):.4f}",
        "final_style_loss": f"{meta.get('style_loss', float('nan')):.4f}",
    }
    save_network(path, decoder, info, dtype=torch.float16)


def run_training(args: argparse.Namespace) -> int:
    from adain.model import resolve_device, resolve_precision

    cfg = TrainConfig(batch=args.batch, seed=args.seed)
    if args.corpus:
        content_pool, style_pool = _corpus_pools(args.corpus)
    elif args.content and args.style:
        content_pool, style_pool = _folder_pool(args.content), _folder_pool(args.style)
    else:
        raise InputError("give --corpus DIR, or both --content DIR and --style DIR")
    if args.crop < 32 or args.crop % 8:
        raise InputError(f"--crop must be a multiple of 8 and at least 32, got {args.crop}")
    if args.snapshot_every < 0:
        raise InputError(f"--snapshot-every must be 0 (off) or a positive iteration count, got {args.snapshot_every}")
    snapshots = args.snapshots or args.checkpoint.with_suffix(".snapshots")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(cfg.seed)
    # NHWC activations: oneDNN and CUDA tensor cores run these convolutions faster (1.1-1.2x per CPU iteration)
    encoder = build_encoder().to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    decoder = Decoder().to(device).to(memory_format=torch.channels_last).train()  # type: ignore[call-overload]
    opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)
    start, meta = 0, cast(dict[str, Any], {"crops": {}})
    if args.checkpoint.is_file():
        start, meta = load_checkpoint(args.checkpoint, decoder, opt)
        print(f"resumed {args.checkpoint} at iteration {start}")
    autocast = None
    if precision != "fp32":
        autocast = torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    source = BatchSource(content_pool, style_pool, cfg, args.crop)
    args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.checkpoint.with_suffix(".log.csv")
    new_log = not log_path.exists()
    stop = {"flag": False}
    old_handler = signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else math.inf
    avg_c = avg_s = None
    it = start
    pool = ThreadPoolExecutor(1)
    pending: Future | None = pool.submit(source.batch, it) if it < args.iterations else None
    try:
        with log_path.open("a", newline="") as logf, Progress(args.iterations - start, "train") as bar:
            log = csv.writer(logf)
            if new_log:
                log.writerow(["iteration", "lr", "crop", "content_loss", "style_loss", "total", "sec_per_iter"])
            while it < args.iterations and not stop["flag"] and time.monotonic() < deadline:
                t0 = time.monotonic()
                assert pending is not None
                content, style = pending.result()
                pending = pool.submit(source.batch, it + 1) if it + 1 < args.iterations else None
                for g in opt.param_groups:
                    g["lr"] = lr_at(cfg, it)
                content = content.to(device).contiguous(memory_format=torch.channels_last)
                style = style.to(device).contiguous(memory_format=torch.channels_last)
                lc, ls = train_step(encoder, decoder, content, style, cfg, autocast)
                loss = lc + cfg.style_weight * ls
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                it += 1
                c, s = float(lc.detach()), float(ls.detach())
                avg_c = c if avg_c is None else 0.98 * avg_c + 0.02 * c
                avg_s = s if avg_s is None else 0.98 * avg_s + 0.02 * s
                dt = time.monotonic() - t0
                log.writerow([it, f"{lr_at(cfg, it - 1):.3g}", args.crop, f"{c:.5f}", f"{s:.5f}",
                              f"{c + cfg.style_weight * s:.5f}", f"{dt:.3f}"])  # fmt: skip
                meta["crops"][str(args.crop)] = meta["crops"].get(str(args.crop), 0) + 1
                bar.update(1, f"it {it} content {avg_c:.3f} style {avg_s:.3f}")
                if it % args.save_every == 0:
                    logf.flush()
                    meta.update(iteration=it, content_loss=avg_c, style_loss=avg_s, config=asdict(cfg))
                    save_checkpoint(args.checkpoint, decoder, opt, it, meta)
                if args.snapshot_every and it % args.snapshot_every == 0:
                    snapshots.mkdir(parents=True, exist_ok=True)
                    meta.update(iteration=it, content_loss=avg_c, style_loss=avg_s)
                    export_decoder(decoder, snapshots / f"decoder-{it:06d}.safetensors", meta)
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
