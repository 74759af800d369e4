#!/usr/bin/env python3
"""Training-recipe ablations at a fixed budget: every candidate from the same start, data, seed and budget.

    python scripts/ablate.py --corpus /work/data/corpus --init-from adain/data/decoder.safetensors \
        --iterations 300 --crop 128 --out runs/ablation [--only base torch ...] [--list]

Each candidate is ``adain train`` with its recipe flags (``CANDIDATES`` below), run as a subprocess from
``--init-from`` (fresh Adam, the source's iteration count, so every candidate sees the same batches and lr)
for ``--iterations`` more iterations, with the held-out evaluation every ``--eval-every``. A candidate whose
checkpoint already reached the budget is not run again, so an interrupted ablation resumes. Then every
candidate's final decoder (and the start) is evaluated on a larger held-out set (``--final-contents`` x
``--final-styles``), and OUT/ablation.md (table + loss trajectories) and OUT/contact_sheet.png (rows:
candidates; columns: α = 0 reconstructions, then stylized pairs) are written.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # recon_sheet, beside this file

from recon_sheet import contact_sheet

from adain.networks import Decoder
from adain.train_eval import EVAL_LOG_COLUMNS, EvalResult, evaluate_decoder, load_heldout
from adain.weights import build_encoder, load_decoder

# Every candidate is the recipe that trained the shipped decoder plus its own flags (adain train's defaults
# are now docs/training.md's choice, base_recon25_deep), so the candidates keep their meaning.
PAPER = ("--recon-share", "0", "--recon-layers")
RECON = ("--recon-layers", "relu1_1", "relu2_1", "relu3_1")
TORCH = ("--style-layer-weights", "torch", "--style-weight", "1")
HALF = ("--recon-share", "0.25")


@dataclass(frozen=True)
class Candidate:
    name: str
    what: str
    flags: tuple[str, ...]


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("base", "the recipe so far: λ = 10, uniform layers", ()),
    Candidate("torch", "train.lua's per-layer weights (0.64, 1.28, 2.56, 5.12), λ = 1", TORCH),
    Candidate("torch_recon25", "torch + a quarter of every batch style = content", (*TORCH, *HALF)),
    Candidate("torch_recon25_deep", "torch_recon25 + content at relu1_1..relu3_1 on those samples", (*TORCH, *HALF, *RECON)),
    Candidate("base_recon25_deep", "λ = 10 + a quarter style = content, content also at relu1_1..3_1 on those", (*HALF, *RECON)),
    Candidate("lambda3", "λ = 3, uniform layers", ("--style-weight", "3")),
    Candidate("base_recon25", "λ = 10 + a quarter of every batch style = content", HALF),
    Candidate(
        "torch_warmup",
        "a third of the budget reconstruction only (+ relu1_1..3_1), then torch",
        (*TORCH, "--warmup", "WARMUP", *RECON),
    ),
    Candidate(
        "torch_paintings",
        "torch + paintings drawn 10x, textures 20 % of contents",
        (*TORCH, "--painting-weight", "10", "--texture-share", "0.2"),
    ),
    Candidate("lambda1", "λ = 1, uniform layers", ("--style-weight", "1")),
    Candidate("torch_lr2x", "torch with twice the learning rate", (*TORCH, "--lr", "2e-4")),
    Candidate("torch_crop192", "torch at 192² crops, the same pixels (4/9 of the iterations)", (*TORCH, "CROP192")),
)


def _start_iteration(init_from: Path) -> int:
    from adain.tensorfile import load_tensors

    _, md = load_tensors(init_from)
    return int(md.get("iteration") or md.get("iterations") or 0)


def _flags(c: Candidate, budget: int, crop: int) -> tuple[list[str], int, int]:
    """(flags, iterations, crop) of a candidate, with its placeholders filled."""
    flags, its = list(PAPER), budget
    for f in c.flags:
        if f == "WARMUP":
            flags.append(str(budget // 3))
        elif f == "CROP192":
            crop, its = 192, round(budget * 128**2 / 192**2)
        else:
            flags.append(f)
    return flags, its, crop


def _checkpoint_iteration(ckpt: Path) -> int:
    from adain.tensorfile import load_tensors

    return int(load_tensors(ckpt)[1]["iteration"]) if ckpt.is_file() else -1


def _export(ckpt: Path, out: Path) -> None:
    """The checkpoint's decoder as fp16 safetensors (what ``adain train --export`` writes)."""
    from adain.tensorfile import load_tensors
    from adain.train_state import export_decoder

    tensors, md = load_tensors(ckpt)
    dec = Decoder()
    dec.load_state_dict({k[len("decoder.") :]: v for k, v in tensors.items() if k.startswith("decoder.")})
    export_decoder(dec, out, {**json.loads(md.get("meta", "{}")), "iteration": int(md["iteration"])})


class StoppedError(Exception):
    pass


def run_candidate(c: Candidate, args: argparse.Namespace, start: int, start_eval: list[str] | None) -> Path:
    flags, its, crop = _flags(c, args.iterations, args.crop)
    folder = args.out / c.name
    ckpt, final = folder / "decoder.ckpt", folder / "final.safetensors"
    if final.is_file():
        print(f"[{c.name}] done before: {final}")
        return final
    if "--warmup" in flags:  # the warm-up counts absolute iterations
        idx = flags.index("--warmup")
        flags[idx + 1] = str(start + int(flags[idx + 1]))
    folder.mkdir(parents=True, exist_ok=True)
    eval_log = folder / "decoder.eval.csv"
    if start_eval and not eval_log.exists():  # every candidate starts from the same point: evaluated once
        eval_log.write_text(",".join(EVAL_LOG_COLUMNS) + "\n" + ",".join(start_eval) + "\n")
    # --init-from applies only while the checkpoint does not exist yet, so a rerun resumes exactly
    cmd = [sys.executable, "-m", "adain.cli", "train", "--corpus", str(args.corpus), "--checkpoint", str(ckpt),
           "--init-from", str(args.init_from), "--iterations", str(start + its), "--crop", str(crop),
           "--eval-every", str(args.eval_every), "--eval-size", str(args.eval_size), "--save-every", "25", *flags]  # fmt: skip
    print(f"[{c.name}] {' '.join(cmd[2:])}", flush=True)
    child = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _CHILD[0] = child
    rc = child.wait()
    _CHILD[0] = None
    if rc != 0 or _checkpoint_iteration(ckpt) != start + its:
        raise StoppedError(f"[{c.name}] stopped at iteration {_checkpoint_iteration(ckpt)} (exit {rc}); rerun to resume")
    _export(ckpt, final)
    return final


_CHILD: list[subprocess.Popen | None] = [None]


def _forward(signum: int, _frame: object) -> None:
    """SIGINT/SIGTERM: the running candidate saves its checkpoint and stops (it handles SIGTERM)."""
    if _CHILD[0] is not None:
        _CHILD[0].send_signal(signal.SIGTERM)


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open())) if path.is_file() else []


def _trajectory(log: list[dict[str, str]], key: str, n: int = 50) -> str:
    """Mean of the first, middle and last n rows' ``key``."""
    if not log:
        return "—"
    v = [float(r[key]) for r in log]
    mid = len(v) // 2
    parts = [v[:n], v[max(0, mid - n // 2) : mid + n // 2], v[-n:]]
    return " → ".join(f"{statistics.fmean(p):.2f}" for p in parts if p)


def _from_log(path: Path, iteration: int) -> EvalResult | None:
    """The evaluation logged at ``iteration`` (a run continued past the budget logs more rows after it)."""
    rows = [r for r in _rows(path) if int(r["iteration"]) == iteration]
    if not rows:
        return None
    r = rows[-1]
    return EvalResult(float(r["psnr_alpha0"]), float(r["content"]), float(r["style"]), float(r["seconds"]))


def summarise(args: argparse.Namespace, names: list[str], start: int) -> None:
    """Write the report. With ``--final-contents 0`` the table takes each run's last in-training evaluation."""
    torch.manual_seed(0)
    enc = build_encoder()
    reeval = args.final_contents > 0
    held = load_heldout(args.corpus, args.final_contents if reeval else 6, args.final_styles if reeval else 6, args.eval_size)
    results: dict[str, EvalResult] = {}
    decoders: list[tuple[str, Decoder]] = []
    by_name = {c.name: c for c in CANDIDATES}
    start_dec, _ = load_decoder(args.init_from) if args.init_from.suffix == ".safetensors" else (None, None)
    if start_dec is not None:
        decoders.append(("start", start_dec))
        first = _from_log(args.out / names[0] / "decoder.eval.csv", start) if names and not reeval else None
        results["start"] = first or evaluate_decoder(enc, start_dec, held)
    for name in names:
        final = args.out / name / "final.safetensors"
        if final.is_file():
            dec, _ = load_decoder(final)
            decoders.append((name, dec))
            budget = _flags(by_name[name], args.iterations, args.crop)[1]
            last = None if reeval else _from_log(args.out / name / "decoder.eval.csv", start + budget)
            results[name] = last or evaluate_decoder(enc, dec, held)
            print(f"[{name}] {results[name].line()}", flush=True)
    lines = [
        f"# Recipe ablations from `{args.init_from}` (iteration {start}), {args.iterations} iterations at {args.crop}²",
        "",
        f"Held-out set: {len(held.content_files)} photos × {len(held.style_files)} paintings at {args.eval_size}² "
        "(α = 0 PSNR over the photos; content and style loss over every pair, uniform style layers, as `scripts/evaluate.py`)"
        + ("." if reeval else "; each run's in-training evaluation at the end of its budget (`adain train --eval-every`)."),
        "Training columns: training-loss means over the first, middle and last 50 iterations (content at relu4_1; "
        "style unweighted).",
        "",
        "| candidate | recipe | α=0 PSNR (dB) | content | style | Lc + 10 Ls | train content | train style |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        c = by_name.get(name)
        log = [
            r
            for r in _rows(args.out / name / "decoder.log.csv")
            if c is None or int(r["iteration"]) <= start + _flags(c, args.iterations, args.crop)[1]
        ]
        lines.append(
            f"| {name} | {c.what if c else 'the start point'} | {res.psnr_alpha0:.2f} | {res.content:.3f} | "
            f"{res.style:.3f} | {res.content + 10 * res.style:.2f} | {_trajectory(log, 'content_loss')} | "
            f"{_trajectory(log, 'style_loss')} |"
        )
    lines += ["", "In-training held-out evaluation (iteration: PSNR / content / style):", ""]
    for name in names:
        ev = _rows(args.out / name / "decoder.eval.csv")
        pts = ", ".join(
            f"{int(r['iteration']) - start}: {float(r['psnr_alpha0']):.2f} / {float(r['content']):.2f} / {float(r['style']):.2f}"
            for r in ev
        )  # a run continued past its budget shows its later rows too
        lines.append(f"- **{name}**: {pts}")
    lines += ["", "![contact sheet](contact_sheet.png)", ""]
    (args.out / "ablation.md").write_text("\n".join(lines))
    contact_sheet(enc, decoders, held.contents[:3], held.styles[:2], args.out / "contact_sheet.png", cell=128)
    print(f"wrote {args.out / 'ablation.md'} and {args.out / 'contact_sheet.png'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--init-from", type=Path, default=Path("adain/data/decoder.safetensors"))
    p.add_argument("--iterations", type=int, default=300, help="the budget of every candidate (at 128²)")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-size", type=int, default=256, help="held-out images are centre crops of this size")
    p.add_argument("--final-contents", type=int, default=0,
                   help="evaluate every final decoder again on this many held-out photos (0: use the runs' own last "
                        "evaluation, 6 x 6)")  # fmt: skip
    p.add_argument("--final-styles", type=int, default=12, help="... and this many held-out paintings")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--only", nargs="*", help="run these candidates (default: all, in order)")
    p.add_argument("--summary-only", action="store_true", help="only evaluate and write the report")
    p.add_argument("--list", action="store_true", help="list the candidates and exit")
    args = p.parse_args(argv)
    if args.list:
        for c in CANDIDATES:
            print(f"{c.name:20s} {c.what}")
        return 0
    names = args.only or [c.name for c in CANDIDATES]
    unknown = sorted(set(names) - {c.name for c in CANDIDATES})
    if unknown:
        print(f"unknown candidate(s): {', '.join(unknown)} (see --list)", file=sys.stderr)
        return 2
    start = _start_iteration(args.init_from)
    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)  # also when started in the background, where SIGINT is ignored
    if not args.summary_only:
        start_eval = None
        for c in CANDIDATES:
            if c.name not in names:
                continue
            try:
                run_candidate(c, args, start, start_eval)
            except StoppedError as e:
                print(e, file=sys.stderr)
                return 1
            rows = _rows(args.out / c.name / "decoder.eval.csv")
            start_eval = start_eval or (
                [rows[0][k] for k in EVAL_LOG_COLUMNS] if rows and int(rows[0]["iteration"]) == start else None
            )
    done = [n for n in [c.name for c in CANDIDATES] if (args.out / n / "final.safetensors").is_file()]
    summarise(args, done, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
