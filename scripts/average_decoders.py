"""Average the weights of decoder snapshots from one training run (stochastic weight averaging, post hoc).

    python scripts/average_decoders.py SNAP1.safetensors SNAP2.safetensors [...] --out averaged.safetensors
    python scripts/average_decoders.py A.safetensors B.safetensors --weights 0.7,0.3 --out blend.safetensors
    python scripts/average_decoders.py SNAP*.safetensors --out mean.safetensors --heldout /work/data/corpus

Late in a run, Adam's steps make a decoder swing between a little more content and a little more style
from one snapshot to the next (compare them with scripts/compare_decoders.py). The mean of the weights of
snapshots a few hundred iterations apart sits between those swings, and usually scores better than any one
of them. This is not in the paper (§6.2 trains and uses the last weights): the model card says when the
shipped decoder is such an average, and of which iterations.

Only snapshots of one run make sense (the same initialisation and data, close in iterations); averaging
unrelated decoders gives noise. Weights are averaged in float32 and written as float16, like ``--export``.
``--weights`` gives a weighted mean instead (normalised to sum 1): for example a point on the line between a
decoder and its fine-tuned descendant, which trades what one gained for what the other kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from adain.errors import AdainError, InputError
from adain.tensorfile import load_tensors, save_tensors
from adain.train_eval import EvalResult, evaluate_decoder, load_heldout
from adain.weights import build_encoder, load_decoder


def average(paths: Sequence[Path], weights: Sequence[float] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The (weighted) mean of the decoders' tensors (float16) and metadata naming the averaged iterations."""
    if len(paths) < 2:
        raise InputError(f"give at least two snapshots to average, got {len(paths)}")
    if weights is None:
        weights = [1.0] * len(paths)
    if len(weights) != len(paths) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise InputError(f"give one non-negative weight per decoder, not all 0; got {list(weights)} for {len(paths)}")
    share = [w / sum(weights) for w in weights]
    total: dict[str, torch.Tensor] = {}
    iterations = []
    meta: dict[str, str] = {}
    for path, w in zip(paths, share, strict=True):
        tensors, meta = load_tensors(path)
        if meta.get("kind") != "decoder":
            raise InputError(f"{path} holds {meta.get('kind', 'no known network')!r} weights, expected a decoder")
        if total and set(tensors) != set(total):
            raise InputError(f"{path} has other tensors than {paths[0]}: not a snapshot of the same decoder")
        for k, v in tensors.items():
            if k in total and total[k].shape != v.shape:
                raise InputError(f"{path}: {k} is {tuple(v.shape)}, {paths[0]} has {tuple(total[k].shape)}")
            total[k] = total.get(k, torch.zeros(v.shape)) + w * v.float()
        iterations.append(int(meta.get("iterations", "0")))
    mean = {k: v.half() for k, v in total.items()}
    last = max(iterations)
    meta = meta | {
        "name": f"adain-decoder-{last}it-avg{len(paths)}",
        "iterations": str(last),
        "averaged_iterations": json.dumps(sorted(iterations)),
    }
    if len(set(share)) > 1:
        meta["averaged_weights"] = json.dumps({str(p): round(s, 6) for p, s in zip(paths, share, strict=True)})
    return mean, meta


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("snapshots", nargs="+", type=Path, help="decoder .safetensors files of one training run")
    p.add_argument("--out", type=Path, required=True, help="where to write the averaged decoder")
    p.add_argument("--weights", default=None, help="comma-separated weights, one per decoder (default: equal)")
    p.add_argument("--heldout", type=Path, metavar="CORPUS",
                   help="then score the result on this corpus's held-out set, as `adain train --eval-every` does")  # fmt: skip
    args = p.parse_args(argv)
    try:
        weights = None if args.weights is None else [float(w) for w in args.weights.split(",")]
    except ValueError:
        print(f"error: --weights must be comma-separated numbers, got {args.weights!r}", file=sys.stderr)
        return 2
    try:
        tensors, meta = average(args.snapshots, weights)
    except AdainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_tensors(args.out, tensors, meta)
    print(f"{args.out}: mean of {len(args.snapshots)} decoders, iterations {meta['averaged_iterations']}")
    if args.heldout is not None:
        try:
            print(f"{args.out}: {score(args.out, args.heldout).line()}")
        except AdainError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


def score(decoder: Path, corpus: Path) -> EvalResult:
    """The training evaluation's held-out measures (``adain.train_eval``: α = 0 PSNR, content, style) of a decoder."""
    dec, _ = load_decoder(decoder)
    return evaluate_decoder(build_encoder(), dec, load_heldout(corpus))


if __name__ == "__main__":
    raise SystemExit(main())
