"""Where and how the networks run: the device, the precision and the ``torch.compile`` mode, checked once."""

from __future__ import annotations

import torch

from adain.errors import InputError
from adain_wire.options import COMPILE_MODES, PRECISIONS


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" | "cpu" | "cuda" | "cuda:N" -> a usable torch.device, or InputError saying why not."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise InputError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from e
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} asked for, but this machine has no CUDA GPU usable by torch; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) present")
    return dev


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto" -> bf16 on CPUs that have it and on CUDA GPUs that support it, fp16 on other GPUs, else fp32."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        if device.type == "cpu" and precision == "fp16":
            raise InputError("fp16 is not supported on the CPU; use bf16 or fp32")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def check_compile_mode(mode: str, device: torch.device) -> str:
    """A ``COMPILE_MODES`` entry usable on ``device``, or InputError saying what to use instead."""
    if mode not in COMPILE_MODES:
        raise InputError(f"unknown compile mode {mode!r}: use one of {', '.join(COMPILE_MODES)}")
    if mode == "reduce-overhead" and device.type != "cuda":
        raise InputError("compile mode 'reduce-overhead' records CUDA graphs and needs a CUDA device; "
                         "on the CPU use 'default' or 'off'")  # fmt: skip
    return mode
