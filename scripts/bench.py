"""Frames per second and peak memory of stylization, against the paper's way of running it, in one process.

    python scripts/bench.py                          # CPU (and CUDA when present): 256², 512², 1080p, 4K tiled
    python scripts/bench.py --sizes 512 --repeats 5 --json out/bench.json
    python scripts/bench.py --device cuda --sizes 1920x1080,3840x2160
    python scripts/bench.py --quick                  # a tiny run (64², one repeat): checks that everything runs

Every ratio is against the **baseline** measured in the same run, at the same size and on the same device:
fp32 eager, NCHW, the style image (512²) encoded again for every frame: encode style + encode content +
AdaIN + decode per frame, as the paper's reference code runs. Rows:

- ``ours``: ``StyleTransfer.stylize`` with the style's cached ``StyleStats`` at the default precision (bf16
  on CPUs with AVX512-BF16/AMX and on CUDA) — one content encode, one decode;
- ``N regions``: the same with an (H, W) label map of N vertical bands, each its own style;
- ``e2e tcp float32|float16``: a real backend (``python -m backend``) in a subprocess over TCP loopback,
  through ``adain_wire.client.Client``, RGBA frames of that dtype both ways; the overhead column is the client's
  wall time minus the backend's own compute time (``timing.compute_ms`` of the reply), over the latter;
- ``ours + compile MODE`` (with ``--compile``): the same through ``torch.compile`` (``reduce-overhead`` adds CUDA
  graphs); these rows warm up at least 3 frames so that compiling and graph recording stay out of the timings;
  ``--backend-compile MODE`` starts the e2e backend with ``--compile MODE``;
- with ``--ablation``: the paths this work replaced (autocast bf16 on NCHW, the per-region loop), so each
  change's gain is a ratio measured in one process.

Frames of 4K (3840x2160) run with ``tile=1024`` (every path, the baseline included: untiled fp32 needs
~10 GB). Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` during the frame (weights included); on
the CPU the peak resident set size (RSS, sampled every 2 ms from ``/proc/<pid>/statm`` on a thread) minus
the RSS just before the frame — the extra memory the frame needed beyond what the process already held,
a lower bound where the allocator reuses memory kept from earlier frames; for e2e rows it is the backend
process's RSS. Ctrl-C stops at once and prints the rows measured so far.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file from anywhere
    sys.path.insert(0, str(ROOT))

from adain import Region, StyleTransfer  # noqa: E402
from adain import functional as AF  # noqa: E402
from adain.images import load_image  # noqa: E402
from adain_wire.options import COMPILE_MODES  # noqa: E402

if TYPE_CHECKING:
    from adain_wire.manager import BackendManager

SAMPLES = ROOT / "adain" / "data" / "samples"
STYLE_FILES = ("style_wesnoth_httt_wizards.jpg", "style_wesnoth_painted_mountains.jpg", "style_wesnoth_trow_great_tree.jpg",
               "style_freecol_portrait_hudson.jpg")  # fmt: skip
CONTENT_FILE = "content_coffee.jpg"
STYLE_SIDE = 512
DEFAULT_SIZES = ("256", "512", "1920x1080")
SIZE_4K = (3840, 2160)
TILE_4K = 1024
REGION_COUNTS = (1, 4, 8)
BIG = 1_000_000  # pixels: above this a CPU frame takes seconds, so fewer repeats by default
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class Row:
    """One measured path at one size on one device."""

    device: str
    width: int
    height: int
    path: str
    seconds: float  # median wall time per frame
    times: list[float]
    peak_mem_bytes: int
    mem_kind: str  # "cuda allocated" | "rss increase" | "backend rss increase"
    tile: int | None = None
    ratio: float = math.nan  # baseline seconds / these seconds (speed-up), same device and size
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return 1.0 / self.seconds if self.seconds > 0 else math.inf


# ----------------------------------------------------------------------------------- measuring
class RssSampler:
    """Peak RSS of a process, sampled on a thread (``/proc/<pid>/statm``; VmHWM cannot be reset)."""

    def __init__(self, pid: int | None = None, interval: float = 0.002) -> None:
        self.path = f"/proc/{pid or os.getpid()}/statm"
        self.interval = interval
        self.start_rss = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def rss(self) -> int:
        try:
            with open(self.path) as f:
                return int(f.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            return 0

    def __enter__(self) -> RssSampler:
        self.start_rss = self.peak = self.rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def increase(self) -> int:
        return max(0, self.peak - self.start_rss)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int, pid: int | None = None
) -> tuple[list[float], int, str]:
    """Wall times of ``repeats`` calls after ``warmup`` calls, and the peak memory over the timed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    if device.type == "cuda" and pid is None:
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        return times, int(torch.cuda.max_memory_allocated(device)), "cuda allocated"
    sampler = RssSampler(pid)
    with sampler:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return times, sampler.increase, "backend rss increase" if pid else "rss increase"


# ------------------------------------------------------------------------------------- inputs
def parse_size(text: str) -> tuple[int, int]:
    """ "512" -> (512, 512); "1920x1080" -> (1920, 1080); "1080p" and "4k" as usual."""
    t = text.strip().lower()
    aliases = {"1080p": (1920, 1080), "4k": SIZE_4K, "2160p": SIZE_4K, "720p": (1280, 720)}
    if t in aliases:
        return aliases[t]
    w, sep, h = t.partition("x")
    try:
        size = (int(w), int(h)) if sep else (int(w), int(w))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: use N, WxH, 1080p or 4k") from None
    if min(size) < 16:
        raise argparse.ArgumentTypeError(f"size {text!r}: at least 16 pixels a side")
    return size


def content_frame(width: int, height: int) -> torch.Tensor:
    """The sample photo resized to cover (width, height) and centre-cropped: (3, H, W) in [0, 1]."""
    img = load_image(SAMPLES / CONTENT_FILE, 0)
    scale = max(width / img.shape[-1], height / img.shape[-2])
    size = (max(height, math.ceil(img.shape[-2] * scale)), max(width, math.ceil(img.shape[-1] * scale)))
    img = torch.nn.functional.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    y0, x0 = (img.shape[-2] - height) // 2, (img.shape[-1] - width) // 2
    return img[:, y0 : y0 + height, x0 : x0 + width].clamp(0, 1).contiguous()


def style_images() -> list[torch.Tensor]:
    out = []
    for name in STYLE_FILES:
        img = load_image(SAMPLES / name, STYLE_SIDE)
        y0, x0 = (img.shape[-2] - STYLE_SIDE) // 2, (img.shape[-1] - STYLE_SIDE) // 2
        out.append(img[:, y0 : y0 + STYLE_SIDE, x0 : x0 + STYLE_SIDE].contiguous())
    return out


def band_labels(width: int, height: int, regions: int) -> torch.Tensor:
    """(H, W) int64 label map of ``regions`` vertical bands."""
    return (torch.arange(width) * regions // width).view(1, -1).expand(height, -1).contiguous()


# ---------------------------------------------------------------------------------- the paths
def baseline_fn(st: StyleTransfer, content: torch.Tensor, style: torch.Tensor, tile: int | None) -> Callable[[], Any]:
    """The reference way: fp32 eager, NCHW, the style encoded again every frame."""

    @torch.inference_mode()
    def run() -> torch.Tensor:
        s = st._encode4(style[None], tile)
        c = st._encode4(content[None], tile)
        t = AF.adain(c, s)
        return st._decode(t, tuple(content.shape[-2:]), tile)  # type: ignore[arg-type]

    return run


def _regional_loop(content_feat: torch.Tensor, masks: torch.Tensor, style_means: torch.Tensor, style_stds: torch.Tensor,
                   alphas: Sequence[float] | torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:  # fmt: skip
    """``regional_adain`` as it was before this benchmark: one masked-statistics pass per region (ablation)."""
    n, c, h, w = content_feat.shape
    r = masks.shape[1]
    a = torch.ones(r) if alphas is None else torch.as_tensor(alphas, dtype=torch.float32).flatten()
    x, m = content_feat.float(), masks.to(content_feat.device, torch.float32)
    out, total = torch.zeros_like(x), torch.zeros(n, 1, h, w, device=x.device)
    for i in range(r):
        mi = m[:, i : i + 1]
        if float(mi.sum()) <= 0:
            continue
        c_mean, c_std = AF.calc_mean_std(x, mi.expand(n, 1, h, w), eps)
        t = (x - c_mean) / c_std * style_stds[i].view(1, c, 1, 1).to(x) + style_means[i].view(1, c, 1, 1).to(x)
        out += mi * ((1 - float(a[i])) * x + float(a[i]) * t)
        total += mi
    return torch.where(total > 0, out / total.clamp_min(1e-8), x)


@contextlib.contextmanager
def previous_adain_ops() -> Iterator[None]:
    """Swap in the per-region loop and the five-pass global AdaIN this work replaced (ablation only)."""
    saved = AF.regional_adain, AF.adain_blend
    AF.regional_adain = _regional_loop
    AF.adain_blend = lambda x, m, s, a=1.0, eps=1e-5: AF.alpha_blend(x, AF.adain_with_stats(x, m, s, eps), a)  # type: ignore[assignment]
    try:
        yield
    finally:
        AF.regional_adain, AF.adain_blend = saved


def start_backend(device: str, compile: str = "off", startup_s: float = 180.0) -> BackendManager:
    """``python -m backend`` on a free TCP loopback port, started (and later stopped) by the same manager the
    add-on uses (``adain_wire.manager.BackendManager``); ``.client()`` is the connected ``adain_wire.client.Client``."""
    from adain_wire.manager import BackendManager, BackendSettings, default_command

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log_file = Path(tempfile.gettempdir()) / f"adain-bench-backend-{port}.log"
    options = ["--device", device, "--max-queue", "4", "--compile", compile]
    settings = BackendSettings(endpoint=f"tcp://127.0.0.1:{port}", command=default_command(sys.executable, options),
                               connect_timeout=30.0, start_timeout=startup_s, give_up=3600.0, log_file=log_file)  # fmt: skip
    manager = BackendManager(settings)
    manager.client()  # starts it and waits for its hello (BackendUnavailableError, with the log's tail, when it cannot)
    return manager


# ------------------------------------------------------------------------------------- the run
@dataclass
class Plan:
    devices: list[str]
    sizes: list[tuple[int, int]]
    repeats: int | None
    warmup: int | None
    e2e: bool
    ablation: bool
    regions: tuple[int, ...] = REGION_COUNTS
    compile: tuple[str, ...] = ()  # torch.compile modes to time as extra rows
    backend_compile: str = "off"  # --compile of the backend for the e2e rows


def _counts(plan: Plan, device: torch.device, w: int, h: int) -> tuple[int, int]:
    big = device.type == "cpu" and w * h > BIG
    repeats = plan.repeats if plan.repeats is not None else (1 if big else 3)
    warmup = plan.warmup if plan.warmup is not None else (0 if big else 1)
    return repeats, warmup


def _median(times: list[float]) -> float:
    s = sorted(times)
    k = len(s) // 2
    return s[k] if len(s) % 2 else (s[k - 1] + s[k]) / 2


def run_plan(plan: Plan, rows: list[Row], progress: Callable[[str], None]) -> None:
    """Measure everything in ``plan``, appending to ``rows`` as each row finishes (so Ctrl-C keeps them)."""
    styles = style_images()
    for dev_name in plan.devices:
        with DeviceRun(plan, dev_name, styles, rows, progress) as run:
            for w, h in plan.sizes:
                run.size(w, h)


class DeviceRun:
    """The models, cached styles and backend of one device; ``size(w, h)`` measures every row at one size."""

    def __init__(self, plan: Plan, dev_name: str, styles: list[torch.Tensor], rows: list[Row],
                 progress: Callable[[str], None]) -> None:  # fmt: skip
        self.plan, self.dev_name, self.device = plan, dev_name, torch.device(dev_name)
        self.styles, self.rows, self.progress = styles, rows, progress
        fp32 = StyleTransfer.load_default(device=dev_name, precision="fp32")
        self.baseline = StyleTransfer(fp32.encoder, fp32.decoder, dev_name, "fp32", channels_last=False)
        self.ours = StyleTransfer.load_default(device=dev_name)
        self.stats = [self.ours.encode_style(s) for s in styles]
        self.compiled = [(mode, StyleTransfer(self.ours.encoder, self.ours.decoder, dev_name, self.ours.precision,
                                              compile=mode))
                         for mode in plan.compile if mode != "reduce-overhead" or self.device.type == "cuda"]  # fmt: skip
        self.ablations: list[tuple[str, StyleTransfer]] = []
        if plan.ablation:
            prec = self.ours.precision
            variants: list[tuple[str, str, dict[str, bool]]] = [("fp32, NHWC", "fp32", {})]
            if prec != "fp32":
                variants += [(f"{prec} autocast, NCHW (previous default)", prec, {"autocast": True, "channels_last": False}),
                             (f"{prec} autocast, NHWC", prec, {"autocast": True}),
                             (f"{prec} weights, NCHW", prec, {"channels_last": False})]  # fmt: skip
            for label, p, kw in variants:
                m = StyleTransfer.load_default(device=dev_name, precision="fp32")
                st = StyleTransfer(m.encoder, m.decoder, dev_name, p, autocast=kw.get("autocast", False),
                                   channels_last=kw.get("channels_last", True))  # fmt: skip
                self.ablations.append((label, st))
        self.backend: BackendManager | None = None

    def __enter__(self) -> DeviceRun:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.backend is not None:
            self.backend.close()
            log = self.backend.settings.log_file
            if exc_type is None and log is not None:
                log.unlink(missing_ok=True)  # kept when the run failed: its tail says why

    def add(self, w: int, h: int, tile: int | None, path: str, fn: Callable[[], Any], pid: int | None = None,
            min_warmup: int = 0) -> Row:  # fmt: skip
        """Measure ``fn`` as one row."""
        tag = f"{self.dev_name} {w}x{h} {path}"
        self.progress(f"{tag} ...")
        repeats, warmup = _counts(self.plan, self.device, w, h)
        warmup = max(warmup, min_warmup)
        times, mem, kind = measure(fn, self.device, repeats, warmup, pid)
        row = Row(self.dev_name, w, h, path, _median(times), times, mem, kind, tile)
        self.rows.append(row)
        self.progress(f"{tag}: {row.seconds * 1000:.0f} ms/frame, {row.fps:.2f} fps")
        return row

    def size(self, w: int, h: int) -> None:
        tile = TILE_4K if w * h >= SIZE_4K[0] * SIZE_4K[1] else None
        huge = tile is not None  # 4K: the headline rows only (a CPU frame takes a minute)
        content, ours, stats = content_frame(w, h), self.ours, self.stats
        first = len(self.rows)
        base = self.add(w, h, tile, "baseline: fp32, style re-encoded", baseline_fn(self.baseline, content, self.styles[0], tile))
        self.add(w, h, tile, f"ours: cached style, {ours.precision}", lambda: ours.stylize(content, stats[0], tile=tile))
        for mode, m in self.compiled:
            self.add(w, h, tile, f"ours + compile {mode}", partial(m.stylize, content, stats[0], tile=tile), min_warmup=3)
        for label, m in self.ablations:
            self.add(w, h, tile, f"ablation: {label}", partial(m.stylize, content, m.encode_style(self.styles[0]), tile=tile))
        one_region: Row | None = None
        for n in () if huge else self.plan.regions:
            regions = [Region([stats[i % len(stats)]]) for i in range(n)]
            run = partial(ours.stylize, content, regions=regions, masks=band_labels(w, h, n), tile=tile)
            rows = [self.add(w, h, tile, f"{n} region{'s' if n > 1 else ''} (label map)", run)]
            if self.plan.ablation and n == max(self.plan.regions):
                with previous_adain_ops():
                    rows.append(self.add(w, h, tile, f"ablation: {n} regions, per-region loop", run))
            one_region = one_region or rows[0]
            for r in rows:
                r.extra["vs_1_region"] = r.seconds / one_region.seconds
                r.note = f"{r.extra['vs_1_region']:.2f}x one region"
        if self.plan.ablation:
            with previous_adain_ops():
                self.add(w, h, tile, "ablation: five-pass global AdaIN", lambda: ours.stylize(content, stats[0], tile=tile))
        if self.plan.e2e:
            self.end_to_end(w, h, tile, content, ("float16",) if huge else ("float32", "float16"))
        for r in self.rows[first:]:
            r.ratio = base.seconds / r.seconds

    def end_to_end(self, w: int, h: int, tile: int | None, content: torch.Tensor, dtypes: Sequence[str]) -> None:
        if self.backend is None:
            self.progress(f"{self.dev_name}: starting the backend ...")
            self.backend = start_backend(self.dev_name, compile=self.plan.backend_compile)
        be = self.backend
        client = be.client()
        assert be.process is not None
        style = (self.styles[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        sid = client.put_style(style, size=STYLE_SIDE)
        rgba = np.concatenate([content.permute(1, 2, 0).numpy(), np.ones((h, w, 1), np.float32)], axis=2)
        for dtype in dtypes:
            frame = np.ascontiguousarray(rgba.astype(dtype))
            compute: list[float] = []

            def call(frame: np.ndarray = frame, compute: list[float] = compute) -> None:
                reply = client.stylize(frame, sid, tile=tile)
                compute.append(reply.timing.compute_ms / 1000)

            label = f"e2e tcp {dtype} RGBA" + (f", backend --compile {self.plan.backend_compile}"
                                               if self.plan.backend_compile != "off" else "")  # fmt: skip
            r = self.add(w, h, tile, label, call, pid=be.process.pid, min_warmup=3 if self.plan.backend_compile != "off" else 0)
            served = _median(compute[-len(r.times) :])
            r.extra["backend_compute_s"] = served
            r.extra["overhead"] = (r.seconds - served) / served if served > 0 else math.nan
            r.note = f"socket+pixels {100 * r.extra['overhead']:.1f}% of compute"


# ------------------------------------------------------------------------------------- report
def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def format_table(rows: Sequence[Row]) -> str:
    """A markdown table of the rows."""
    head = "| device | size | path | ms/frame | fps | × baseline | peak memory | note |\n|---|---|---|---:|---:|---:|---:|---|"
    lines = [head]
    for r in rows:
        size = f"{r.width}×{r.height}" + (f" (tile {r.tile})" if r.tile else "")
        ratio = "—" if math.isnan(r.ratio) else f"{r.ratio:.2f}×"
        mem = f"{_mib(r.peak_mem_bytes)} ({r.mem_kind})"
        lines.append(f"| {r.device} | {size} | {r.path} | {r.seconds * 1000:,.0f} | {r.fps:.2f} | {ratio} | {mem} | {r.note} |")
    return "\n".join(lines)


def check_targets(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The issue's targets that these rows can speak to: what was asked, what was measured, met or not."""
    out: list[dict[str, Any]] = []

    def find(dev: str, pred: Callable[[Row], bool]) -> list[Row]:
        return [r for r in rows if r.device.startswith(dev) and pred(r)]

    for r in find("cpu", lambda r: (r.width, r.height) == (512, 512) and r.path.startswith("ours")):
        out.append({"target": f"CPU 512x512: {r.path} >= 3x baseline", "measured": r.ratio, "met": r.ratio >= 3.0})
    for r in find("", lambda r: r.path.startswith("8 regions")):
        v = r.extra.get("vs_1_region", math.nan)
        out.append({"target": f"{r.device} {r.width}x{r.height}: 8 regions <= 1.2x one region", "measured": v, "met": v <= 1.2})
    for r in find("", lambda r: (r.width, r.height) == (1920, 1080) and r.path.startswith("e2e")):
        v = r.extra.get("overhead", math.nan)
        out.append({"target": f"{r.device} 1080p {r.path}: socket overhead <= 10% of compute", "measured": v, "met": v <= 0.10})
    for r in find("cuda", lambda r: r.path.startswith("e2e tcp float16")):
        if (r.width, r.height) == (1920, 1080):
            out.append({"target": "CUDA 1080p end to end >= 60 fps", "measured": r.fps, "met": r.fps >= 60})
        if (r.width, r.height) == SIZE_4K:
            out.append({"target": "CUDA 4K end to end >= 15 fps", "measured": r.fps, "met": r.fps >= 15})
    for r in find("cuda", lambda r: r.path.startswith("ours")):
        if (r.width, r.height) == (1920, 1080):
            out.append({"target": f"CUDA 1080p: {r.path} >= 10x baseline", "measured": r.ratio, "met": r.ratio >= 10})
        if (r.width, r.height) == SIZE_4K:
            gib = r.peak_mem_bytes / 2**30
            out.append({"target": f"CUDA 4K within 4 GB ({r.path})", "measured": gib, "met": gib <= 4.0})
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from adain.model import cpu_supports_bf16

    info: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "torch": torch.__version__, "python": platform.python_version(),
                            "cpu_bf16": cpu_supports_bf16()}  # fmt: skip
    if torch.cuda.is_available():
        info["cuda"] = torch.cuda.get_device_name(0)
    return info


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [parse_size(x) for x in s.split(",") if x.strip()],
                   help=f"comma-separated N, WxH, 1080p or 4k (default {','.join(DEFAULT_SIZES)}, and 4K tiled)")  # fmt: skip
    p.add_argument("--repeats", type=int, help="timed frames per row (default 3; 1 for CPU frames over 1 MP)")
    p.add_argument("--warmup", type=int, help="untimed frames per row first (default 1; 0 for CPU frames over 1 MP)")
    p.add_argument("--device", default="auto", help="auto (cpu, plus cuda when present), cpu, cuda or cuda:N")
    p.add_argument("--skip-4k", action="store_true", help="leave out 3840x2160 (tiled)")
    p.add_argument("--no-e2e", action="store_true", help="leave out the end-to-end rows through the backend")
    p.add_argument("--ablation", action="store_true", help="also time the paths this work replaced")
    p.add_argument("--compile", default="", metavar="MODES",
                   help="comma-separated torch.compile modes to time as extra rows: default, max-autotune, "
                        "reduce-overhead (CUDA graphs; CUDA devices only)")  # fmt: skip
    p.add_argument(
        "--backend-compile",
        default="off",
        choices=COMPILE_MODES,
        help="--compile of the backend that the e2e rows go through (default off)",
    )
    p.add_argument("--quick", action="store_true", help="tiny run for tests: 64x64, 1 repeat, no warm-up, no 4K")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the rows, targets and machine as JSON")
    args = p.parse_args(argv)
    args.compile = tuple(m.strip() for m in args.compile.split(",") if m.strip())
    modes = [m for m in COMPILE_MODES if m != "off"]
    bad = [m for m in args.compile if m not in modes]
    if bad:
        p.error(f"--compile {','.join(bad)}: use {', '.join(modes[:-1])} or {modes[-1]}")
    if (args.repeats is not None and args.repeats < 1) or (args.warmup is not None and args.warmup < 0):
        p.error("--repeats must be >= 1 and --warmup >= 0")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    if args.quick:
        sizes = args.sizes or [(64, 64)]
        warmup = args.warmup if args.warmup is not None else 0
        return Plan(devices, sizes, args.repeats or 1, warmup, not args.no_e2e, args.ablation,
                    compile=args.compile, backend_compile=args.backend_compile)  # fmt: skip
    sizes = args.sizes or [parse_size(s) for s in DEFAULT_SIZES] + ([] if args.skip_4k else [SIZE_4K])
    if args.skip_4k:
        sizes = [s for s in sizes if s != SIZE_4K]
    return Plan(devices, sizes, args.repeats, args.warmup, not args.no_e2e, args.ablation,
                compile=args.compile, backend_compile=args.backend_compile)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    plan = make_plan(args)
    rows: list[Row] = []
    started = time.monotonic()

    def progress(msg: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {msg}", file=sys.stderr, flush=True)

    info = machine()
    progress(f"{info['cpu']}, {info['torch_threads']} torch threads, torch {info['torch']}; sizes "
             + ", ".join(f"{w}x{h}" for w, h in plan.sizes) + f"; devices {', '.join(plan.devices)}")  # fmt: skip
    interrupted = False
    try:
        run_plan(plan, rows, progress)
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: the rows measured so far follow")
    print(format_table(rows))
    targets = check_targets(rows)
    if targets:
        print()
        for t in targets:
            print(f"{'met   ' if t['met'] else 'MISSED'} {t['target']}: measured {t['measured']:.3g}")
    print("\nPeak memory: CUDA allocator peak (weights included), or on the CPU the peak RSS increase over the "
          "frame (sampled every 2 ms; the backend's RSS for e2e rows).")  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"machine": info, "interrupted": interrupted, "rows": [asdict(r) | {"fps": r.fps} for r in rows],
               "targets": targets, "wall_s": time.monotonic() - started}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=2, allow_nan=True) + "\n")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
