"""Read and write tensor files in the safetensors format, through the ``safetensors`` library.

A thin layer over ``safetensors``: it adds what this project relies on around the library's own reader and writer:
``WeightsError`` with the file's path for anything unreadable, string metadata returned with the tensors, tensors
that own their memory (no file stays mapped), and writes that replace the file at once (a temporary file renamed).
The add-on never imports this module: it needs no torch and no safetensors.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save_file

from adain.errors import WeightsError


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (name -> tensor, any dtype safetensors stores) and string ``metadata`` to ``path``."""
    # a copy of each: safetensors refuses tensors that share memory (views of one another), and needs them on the CPU
    own = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
    meta = {str(k): str(v) for k, v in metadata.items()} if metadata else None
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        save_file(own, tmp, metadata=meta)
    except (SafetensorError, ValueError, TypeError) as e:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"cannot write {path}: {e}") from e
    tmp.replace(path)


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file; returns ``(tensors, metadata)``, the tensors on the CPU. Raises WeightsError on a bad
    file, saying why."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path}: {e.strerror or e}") from e
    try:
        tensors = load(data)  # (into memory of their own: the file is not kept open or mapped)
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except SafetensorError as e:
        why = str(e).removeprefix("Error while deserializing: ")
        if "JSON" in why:
            why = f"header is not JSON: {why}"
        raise WeightsError(f"{path} is not a safetensors file ({why})") from e
    except (ValueError, TypeError, KeyError) as e:  # a dtype torch has no type for, a shape that does not fit
        raise WeightsError(f"{path}: cannot read its tensors: {e}") from e
    return tensors, {str(k): str(v) for k, v in metadata.items()}
