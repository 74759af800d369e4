"""Training state on disk: checkpoints (decoder, Adam, iteration, RNG), exported decoders, and how a run starts.

A checkpoint is a safetensors file that resumes a run exactly; it holds optimizer state, so it stays out of git
(``runs/``, ``checkpoints/*.ckpt``). An exported decoder is the fp16 weights file the library loads. A new run
can start from either with a fresh Adam (``--init-from``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from adain.errors import InputError
from adain.networks import Decoder
from adain.tensorfile import load_tensors, save_tensors
from adain.weights import ENCODER_NORMALISED, load_decoder, save_network


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


def start_run(args: argparse.Namespace, decoder: Decoder, opt: torch.optim.Adam) -> tuple[int, dict[str, Any]]:
    """Resume the checkpoint exactly; or start from ``--init-from`` weights with a fresh Adam; or from scratch.

    ``--init-from`` takes a training checkpoint (its Adam state and RNG are dropped) or an exported decoder.
    Either way the iteration count goes on from the source's (a decoder's ``iterations`` metadata), so the
    batches and the learning-rate schedule continue where they were: a resume with a fresh Adam.
    """
    if args.checkpoint.is_file():
        start, resumed = load_checkpoint(args.checkpoint, decoder, opt)
        print(f"resumed {args.checkpoint} at iteration {start}")
        return start, resumed
    meta: dict[str, Any] = {"crops": {}}
    if not args.init_from:
        return 0, meta
    if not args.init_from.is_file():
        raise InputError(f"--init-from {args.init_from} does not exist")
    tensors, md = load_tensors(args.init_from)
    if any(k.startswith("decoder.") for k in tensors):  # a training checkpoint
        decoder.load_state_dict({k[len("decoder.") :]: v for k, v in tensors.items() if k.startswith("decoder.")})
        start, source = int(md["iteration"]), json.loads(md.get("meta", "{}"))
        meta["crops"] = dict(source.get("crops", {}))
        name = f"checkpoint at iteration {start}"
    else:
        init, init_meta = load_decoder(args.init_from)
        if init_meta.get("encoder", ENCODER_NORMALISED) != ENCODER_NORMALISED:
            raise InputError(f"{args.init_from} was trained for the encoder {init_meta.get('encoder')!r}, not ours")
        decoder.load_state_dict(init.state_dict())
        start, name = int(init_meta.get("iterations", "0") or 0), init_meta.get("name", "?")
        meta["crops"] = json.loads(init_meta.get("crops", "{}") or "{}")
    meta["init_from"] = {"file": str(args.init_from), "name": name, "iteration": start}
    print(f"started from {args.init_from} ({name}) at iteration {start} with a fresh Adam")
    return start, meta
