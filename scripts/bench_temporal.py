"""Seconds per frame of temporal smoothing (``addon.temporal``) against the previous implementation, in one process.

    python scripts/bench_temporal.py                  # 1920x1080, 5 repeats, median
    python scripts/bench_temporal.py --size 3840x2160 --repeats 3
    python scripts/bench_temporal.py --backend-device cuda   # also the step on a backend's device (the smooth op)

The baseline is the implementation this one replaced (2-D fancy indexing for the four bilinear neighbours, a new
pixel grid and fresh temporaries at every step, the previous frame and render concatenated anew each frame); it is
kept here, only as the baseline. Both run on the same random frames with a fractional flow of up to ±3 pixels, and
their outputs are compared (they must agree within 1e-5). ``Smoother.apply`` is what the render hook calls per frame;
the last row adds the check of the motion's round trip (the previous frame's motion toward the next one), as the
render hook does when the Vector pass is there. With ``--backend-device``, a real backend is started on that device
(tcp loopback, the shipped model loaded) and the same step runs there through ``addon.smooth_backend``, as the render
hook sends it: float16 frames, float32 motion, the transfer both ways included.
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adain_wire.manager import BackendManager, BackendSettings
from addon import smooth_backend, temporal


def baseline_smooth(
    stylized: np.ndarray, content: np.ndarray, prev_out: np.ndarray, prev_content: np.ndarray, flow: np.ndarray, strength: float
) -> np.ndarray:
    """The replaced implementation (warp, blend weight and blend), for the ratio."""
    image = np.concatenate([prev_out, prev_content[..., :3]], axis=-1)
    h, w = image.shape[:2]
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    sx, sy = cols + flow[..., 0], rows + flow[..., 1]
    inside = (sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)
    sx, sy = np.clip(sx, 0.0, w - 1.0), np.clip(sy, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(sx).astype(np.intp), max(w - 2, 0))
    y0 = np.minimum(np.floor(sy).astype(np.intp), max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    both = (top * (1 - fy) + bottom * fy).astype(np.float32)
    lo, hi = temporal.TOLERANCE
    err = np.abs(content[..., :3] - both[..., 3:]).mean(axis=-1)
    wt = (np.float32(strength) * np.clip((hi - err) / (hi - lo), 0.0, 1.0) * inside)[..., None]
    return (stylized * (1 - wt) + both[..., :3] * wt).astype(np.float32)


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], np.empty(0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def on_backend(device: str, smoother: temporal.Smoother, ours: Any, local: np.ndarray, repeats: int) -> tuple[float, float]:
    """Seconds per step through ``smooth_backend`` on a backend started on ``device``, and the largest difference
    from the step in numpy (``local``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = (sys.executable, "-m", "backend", "--device", device)
    log_file = Path(tempfile.gettempdir()) / "adain-bench-temporal-backend.log"  # (as the add-on: its log, 5 s timeouts)
    settings = BackendSettings(endpoint=f"tcp://127.0.0.1:{port}", command=command, start_timeout=300, log_file=log_file)
    manager = BackendManager(settings)
    os.environ[smooth_backend.SMOOTH_ON_ENV] = "backend"
    try:
        step = smooth_backend.remote(manager)
        if step is None:
            raise SystemExit(f"the backend on {device} does not serve the smooth op")
        real_apply = smoother.apply
        smoother.apply = functools.partial(real_apply, remote=step)  # type: ignore[method-assign]
        ours.seconds = []
        ours()  # (the first step on a GPU initialises its kernels)
        ours.seconds = []
        timed(ours, repeats)
        out = ours()
        smoother.apply = real_apply  # type: ignore[method-assign]
        result = statistics.median(ours.seconds), float(np.abs(out - local).max())
    finally:
        manager.stop()
    log_file.unlink(missing_ok=True)  # kept when the run failed: its tail says why
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="1920x1080", help="WxH")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--strength", type=float, default=0.5)
    p.add_argument("--backend-device", default=None, help="also time the step on a backend on this device (cpu, cuda)")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    frames = [rng.random((h, w, 3), dtype=np.float32) for _ in range(4)]
    stylized, content, prev_out, prev_content = frames
    prev_content = content + rng.normal(0, 0.03, content.shape).astype(np.float32)  # mostly the same surface
    flow = ((rng.random((h, w, 2), dtype=np.float32) - 0.5) * 6).astype(np.float32)
    smoother = temporal.Smoother()
    smoother.apply("bench", 0, prev_out, prev_content, None, args.strength)

    ahead = -flow  # the previous frame's motion to the next one: consistent, as for steady motion
    check = [False]  # whether the motion round trip is checked too (what the render hook does)

    def ours() -> np.ndarray:
        # (the previous frame, kept packed; with its motion to the next frame when the round trip is checked)
        smoother.apply("bench", 0, prev_out, prev_content, None, args.strength, ahead if check[0] else None)
        t0 = time.perf_counter()
        out, smoothed = smoother.apply("bench", 1, stylized, content, flow, args.strength)
        ours.seconds.append(time.perf_counter() - t0)  # type: ignore[attr-defined]
        assert smoothed
        return out

    rows = []
    base_s, base_out = timed(
        lambda: baseline_smooth(stylized, content, prev_out, prev_content, flow, args.strength), args.repeats
    )
    for workers in sorted({1, temporal.WORKERS}):
        temporal.WORKERS = workers
        ours.seconds = []  # type: ignore[attr-defined]
        timed(ours, args.repeats)
        rows.append((f"{workers} thread(s)", statistics.median(ours.seconds)))  # type: ignore[attr-defined]
    out = ours()
    diff = float(np.abs(out - base_out).max())
    check[0] = True  # the same with the motion round-trip check (8 channels warped instead of 6)
    ours.seconds = []  # type: ignore[attr-defined]
    timed(ours, args.repeats)
    rows.append((f"{temporal.WORKERS} thread(s), + round trip", statistics.median(ours.seconds)))  # type: ignore[attr-defined]
    ours.seconds = []  # type: ignore[attr-defined]
    local = ours()
    if args.backend_device:
        remote_s, remote_err = on_backend(args.backend_device, smoother, ours, local, args.repeats)
        rows.append((f"on the backend ({args.backend_device}), + round trip", remote_s))
    print(f"temporal smoothing at {w}x{h}, strength {args.strength}, median of {args.repeats}, {os.cpu_count()} CPUs:")
    print(f"  baseline (replaced)                 {base_s:7.3f} s/frame   1.00x")
    for name, sec in rows:
        print(f"  ours, Smoother.apply, {name:<25} {sec:7.3f} s/frame   {base_s / sec:.2f}x faster")
    print(f"  max |ours (colour check only) - baseline| {diff:.1e}")
    if args.backend_device:
        print(f"  max |on the backend - ours| {remote_err:.1e} (float16 frames on the wire)")
    if diff > 1e-5:
        print("outputs differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
