"""Average the weights of decoder snapshots from one training run (stochastic weight averaging, post hoc).

    python scripts/average_decoders.py SNAP1.safetensors SNAP2.safetensors [...] --out averaged.safetensors

Late in a run, Adam's steps make a decoder swing between a little more content and a little more style
from one snapshot to the next (compare them with scripts/compare_decoders.py). The mean of the weights of
snapshots a few hundred iterations apart sits between those swings, and usually scores better than any one
of them. This is not in the paper (§6.2 trains and uses the last weights): the model card says when the
shipped decoder is such an average, and of which iterations.

Only snapshots of one run make sense (the same initialisation and data, close in iterations); averaging
unrelated decoders gives noise. Weights are averaged in float32 and written as float16, like ``--export``.
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


def average(paths: Sequence[Path]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The mean of the decoders' tensors (float16) and metadata naming the averaged iterations."""
    if len(paths) < 2:
        raise InputError(f"give at least two snapshots to average, got {len(paths)}")
    total: dict[str, torch.Tensor] = {}
    iterations = []
    meta: dict[str, str] = {}
    for path in paths:
        tensors, meta = load_tensors(path)
        if meta.get("kind") != "decoder":
            raise InputError(f"{path} holds {meta.get('kind', 'no known network')!r} weights, expected a decoder")
        if total and set(tensors) != set(total):
            raise InputError(f"{path} has other tensors than {paths[0]}: not a snapshot of the same decoder")
        for k, v in tensors.items():
            if k in total and total[k].shape != v.shape:
                raise InputError(f"{path}: {k} is {tuple(v.shape)}, {paths[0]} has {tuple(total[k].shape)}")
            total[k] = total.get(k, torch.zeros(v.shape)) + v.float()
        iterations.append(int(meta.get("iterations", "0")))
    mean = {k: (v / len(paths)).half() for k, v in total.items()}
    last = max(iterations)
    meta = meta | {
        "name": f"adain-decoder-{last}it-avg{len(paths)}",
        "iterations": str(last),
        "averaged_iterations": json.dumps(sorted(iterations)),
    }
    return mean, meta


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("snapshots", nargs="+", type=Path, help="decoder .safetensors files of one training run")
    p.add_argument("--out", type=Path, required=True, help="where to write the averaged decoder")
    args = p.parse_args(argv)
    try:
        tensors, meta = average(args.snapshots)
    except AdainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_tensors(args.out, tensors, meta)
    print(f"{args.out}: mean of {len(args.snapshots)} decoders, iterations {meta['averaged_iterations']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
