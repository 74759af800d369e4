"""The backend's per-frame pixel work, without the network: wire frame in -> model input; model output -> reply.

    python scripts/bench_pixels.py                       # 1920x1080 and 3840x2160, CPU (and CUDA when present)
    python scripts/bench_pixels.py --sizes 1080p --repeats 50 --device cuda

Two paths, timed in the same run on the same frames (RGBA, float16 and uint8 on the wire):

- ``numpy (previous)``: what the backend did before: convert to float32 (H, W, 3) with numpy on the CPU,
  copy it to the device, copy the float32 result back, convert and append alpha with numpy;
- ``device (now)``: ``backend.device_pixels``: upload the frame as sent, convert on the device, assemble the
  reply (alpha included) there in the wire dtype, one copy back.

Both paths must give the same pixels (checked before timing; on the CPU bit for bit).

The model itself is replaced by a clamp, so the rows time only what surrounds it. Ratios: previous / now.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adain_wire.options import INTEGER_SCALE as _SCALE  # noqa: E402
from backend.device_pixels import download_frame, upload_frame  # noqa: E402

SIZES = {"1080p": (1920, 1080), "4k": (3840, 2160), "512": (512, 512)}


def numpy_path(frame: np.ndarray, device: torch.device) -> np.ndarray:
    """The previous conversion: numpy float32 on the CPU both ways, float32 over the bus both ways."""
    name = frame.dtype.name
    rgb = frame[..., :3].astype(np.float32)
    rgb = rgb / np.float32(_SCALE[name]) if name in _SCALE else np.clip(rgb, 0.0, 1.0, out=rgb)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).to(device)
    y = x.clamp(0, 1).cpu()  # stands in for the model (which returned CPU float32)
    out = y.permute(1, 2, 0).contiguous().numpy()
    out = np.rint(np.clip(out, 0, 1) * _SCALE[name]).astype(name) if name in _SCALE else out.astype(name)
    return np.concatenate([out, frame[..., 3:4]], axis=2)


def device_path(frame: np.ndarray, device: torch.device) -> np.ndarray:
    rgb, alpha = upload_frame(frame, device)
    return download_frame(rgb.clamp_(0, 1), alpha, frame.dtype.name)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1080p,4k", help="comma-separated: 512, 1080p, 4k")
    p.add_argument("--device", default="auto", help="auto (cpu, plus cuda when present), cpu or cuda")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    if bad := [s for s in sizes if s not in SIZES]:
        p.error(f"--sizes {','.join(bad)}: use {', '.join(SIZES)}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "auto" else [args.device]
    rng = np.random.default_rng(0)
    print("| device | size | wire dtype | numpy (previous) ms | device (now) ms | previous / now |\n|---|---|---|---:|---:|---:|")
    for dev_name in devices:
        device = torch.device(dev_name)
        for size in sizes:
            w, h = SIZES[size]
            for dtype in ("float16", "uint8"):
                if dtype == "uint8":
                    frame = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
                else:
                    frame = rng.random((h, w, 4), dtype=np.float32).astype(dtype)
                a, b = numpy_path(frame, device), device_path(frame, device)
                worst = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
                if worst > (1.0 if dtype == "uint8" else 1e-3):  # same pixels (a GPU may round a few differently)
                    raise SystemExit(f"the two paths disagree by {worst} on {dev_name} {size} {dtype}")
                before = timed(partial(numpy_path, frame, device), device, args.repeats)
                now = timed(partial(device_path, frame, device), device, args.repeats)
                print(f"| {dev_name} | {w}×{h} | {dtype} | {before * 1000:.1f} | {now * 1000:.1f} | {before / now:.2f}× |",
                      flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
