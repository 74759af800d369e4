"""``StyleTransfer``: the AdaIN model with every runtime control of the paper (§7.3).

    st = StyleTransfer.load_default(device="auto")
    stats = st.encode_style(style_image)             # encode a style once, reuse it for every frame
    out = st.stylize(content, stats, alpha=0.8)       # (N, 3, H, W) or (3, H, W) floats in [0, 1]

One content encoding and one decode serve any number of regions, each with its own style mix and
alpha (``regions=`` with ``masks=``); per-region passes (each region's style over the whole frame)
cost one extra decode each and are only computed on request.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from adain import functional as AF
from adain.errors import CancelledError, InputError, WeightsError
from adain.networks import Decoder, Encoder, check_image
from adain.tiling import decode_tiled, encode_tiled
from adain.weights import (
    DEFAULT_DECODER_PATH,
    ENCODER_NORMALISED,
    ENCODER_RAW,
    build_encoder,
    load_decoder,
    load_encoder_file,
)
from adain_wire.options import COLOR_MODES, COMPILE_MODES, PRECISIONS

ColorMode = Literal["none", "coral", "luminance"]  # adain_wire.options.COLOR_MODES, for type checkers


@dataclass(frozen=True)
class StyleStats:
    """A style, encoded once: relu4_1 channel mean and std (each (512,), float32, CPU).

    ``image`` keeps the style image as it was encoded ((3, H, W), CPU) because the colour-preserving
    modes must recolour it to each content image and encode it again; ``key`` identifies it (sha256).
    """

    mean: torch.Tensor
    std: torch.Tensor
    key: str
    image: torch.Tensor | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Region:
    """One region's style: a mix of styles (eq. 15; weights are normalised) and its own alpha (eq. 14)."""

    styles: Sequence[StyleStats | torch.Tensor]
    weights: Sequence[float] | None = None
    alpha: float = 1.0


@dataclass(frozen=True)
class StylizeResult:
    """``combined``: (N, 3, H, W); ``passes``: one (N, 3, H, W) per region (its style over the whole frame)."""

    combined: torch.Tensor
    passes: list[torch.Tensor]


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


def _stop_hook(stop: threading.local) -> Callable[..., None]:
    """A forward pre-hook raising ``CancelledError`` once this thread's ``stop.fn()`` is true (a plain closure: modules
    that carry it can still be deep-copied)."""

    def hook(module: torch.nn.Module, args: object) -> None:
        fn = getattr(stop, "fn", None)
        if fn is not None and fn():
            raise CancelledError("stylization stopped: the caller cancelled it")

    return hook


class StyleTransfer:
    """Encoder + decoder on one device with one precision. Thread-compatible (no mutable state in calls)."""

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        encoder_name: str = "custom",
        decoder_metadata: dict[str, str] | None = None,
        *,
        autocast: bool = False,
        channels_last: bool = True,
        compile: str = "off",
    ) -> None:
        """``encoder``/``decoder`` stay float32 (``features()``, training losses and evaluation use them).

        With bf16 or fp16 precision, ``stylize`` and ``encode_style`` run reduced-precision copies of the
        weights; ``autocast=True`` runs ``torch.autocast`` over the float32 weights instead (the same
        arithmetic, but it converts every weight and activation again on every call: about 1.4x slower on a
        CPU, see docs/performance.md; kept for comparison). ``channels_last`` runs the networks on NHWC
        activations: faster on CUDA tensor cores and with oneDNN on CPUs (1.25x in fp32 on a CPU, same results).
        ``compile`` wraps the networks that ``stylize`` runs in ``torch.compile`` with that mode (``COMPILE_MODES``):
        the first frame of each new size compiles (tens of seconds), later ones reuse it; "reduce-overhead"
        also replays CUDA graphs, which removes the per-layer launch cost on a GPU (CUDA only).
        """
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.encoder_name = encoder_name
        self.decoder_metadata = dict(decoder_metadata or {})
        self.autocast = autocast
        self.channels_last = channels_last
        self.encoder = encoder.to(self.device).eval().requires_grad_(False)
        self.decoder = decoder.to(self.device).eval().requires_grad_(False)
        if self.channels_last:
            self.encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self.decoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._net_dtype = torch.float32
        self._run_encoder, self._run_decoder = self.encoder, self.decoder
        if self.precision != "fp32" and not autocast:
            self._net_dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            self._run_encoder = copy.deepcopy(self.encoder).to(self._net_dtype)
            self._run_decoder = copy.deepcopy(self.decoder).to(self._net_dtype)
        self.compile = check_compile_mode(compile, self.device)
        self._cudagraphs = self.compile == "reduce-overhead"
        # stylize(should_stop=...): checked before every convolution of eager networks (a hook would break compiled
        # graphs, which are checked per tile and stage instead); per thread, so calls stay thread-compatible
        self._stop = threading.local()
        if self.compile == "off":
            hook = _stop_hook(self._stop)
            for net in {id(n): n for n in (self._run_encoder, self._run_decoder)}.values():
                for m in net.modules():
                    if isinstance(m, torch.nn.Conv2d):
                        m.register_forward_pre_hook(hook)
        if self.compile != "off":
            mode = None if self.compile == "default" else self.compile
            self._run_encoder = torch.compile(self._run_encoder, mode=mode)  # type: ignore[assignment]
            self._run_decoder = torch.compile(self._run_decoder, mode=mode)  # type: ignore[assignment]

    # ------------------------------------------------------------------------------------ loading
    @classmethod
    def load_default(cls, device: str = "auto", precision: str = "auto", compile: str = "off") -> StyleTransfer:
        """The shipped decoder with our normalised VGG-19 encoder; reads only local files."""
        return cls.load(DEFAULT_DECODER_PATH, device=device, precision=precision, compile=compile)

    @classmethod
    def load(
        cls,
        decoder: str | Path,
        encoder: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        compile: str = "off",
    ) -> StyleTransfer:
        """A decoder file plus its encoder: a file (e.g. imported published weights), else the built-in
        encoder the decoder's metadata names."""
        dec, meta = load_decoder(Path(decoder))
        wanted = meta.get("encoder", ENCODER_NORMALISED)
        if encoder is not None:
            enc, emeta = load_encoder_file(Path(encoder))
            name = emeta.get("name", str(encoder))
            if name != wanted:
                raise WeightsError(
                    f"decoder {decoder} was trained with encoder {wanted!r} but {encoder} holds {name!r}; "
                    "use the encoder that came with the decoder"
                )
        elif wanted in (ENCODER_NORMALISED, ENCODER_RAW):
            enc, name = build_encoder(wanted), wanted
        else:
            sibling = Path(decoder).with_name("encoder.safetensors")
            if not sibling.is_file():
                raise WeightsError(f"decoder {decoder} needs encoder {wanted!r}: pass its file with --encoder")
            return cls.load(decoder, sibling, device, precision, compile)
        return cls(enc, dec, device, precision, encoder_name=name, decoder_metadata=meta, compile=compile)

    # ---------------------------------------------------------------------------------- internals
    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.precision == "fp32":
            yield
            return
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype):
            yield

    def _to_device(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        x = x.to(self.device, dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @contextlib.contextmanager
    def _run_precision(self) -> Iterator[None]:
        """Autocast only where the networks run on float32 weights in reduced precision (``autocast=True``)."""
        if self._net_dtype != torch.float32:
            yield
            return
        with self._autocast():
            yield

    def _encode4(self, x: torch.Tensor, tile: int | None) -> torch.Tensor:
        """relu4_1 of (N, 3, H, W) in [0, 1], tiled when the image is larger than ``tile``; in the networks' dtype."""

        def enc(img: torch.Tensor) -> torch.Tensor:
            self._check_stop()
            with self._run_precision():
                self._graph_step()
                out = self._run_encoder(self._to_device(img, self._net_dtype), last="relu4_1")["relu4_1"]
                return out.clone() if self._cudagraphs else out  # a graph's output is overwritten by its next replay

        if tile and max(x.shape[-2:]) > tile:
            return encode_tiled(enc, x, tile)
        return enc(x)

    def _decode(self, t: torch.Tensor, size: tuple[int, int], tile: int | None) -> torch.Tensor:
        def dec(f: torch.Tensor) -> torch.Tensor:
            self._check_stop()
            with self._run_precision():
                self._graph_step()
                out = self._run_decoder(self._to_device(f, self._net_dtype))
                return out.clone() if self._cudagraphs else out

        if tile and max(size) > tile:
            out = decode_tiled(dec, t, size, tile)
        else:
            out = dec(t)[..., : size[0], : size[1]]
        return out.float().clamp_(0, 1)

    def _check_stop(self) -> None:
        fn = getattr(self._stop, "fn", None)
        if fn is not None and fn():
            raise CancelledError("stylization stopped: the caller cancelled it")

    def _graph_step(self) -> None:
        """Tell CUDA graph trees that a new, independent network call begins (inference, no backward)."""
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()

    @staticmethod
    def _style_key(image: torch.Tensor) -> str:
        return hashlib.sha256(image.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()

    # ------------------------------------------------------------------------------------- public
    @torch.inference_mode()
    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder features {"relu1_1": (N,64,H,W), ..., "relu4_1": (N,512,H/8,W/8)} in float32."""
        x = check_image(image)
        with self._autocast():
            feats = self.encoder(self._to_device(x))
        return {k: v.float() for k, v in feats.items()}

    @torch.inference_mode()
    def encode_style(self, image: torch.Tensor, tile: int | None = None) -> StyleStats:
        """Encode a style image (3, H, W) or (1, 3, H, W) in [0, 1] once; returns its cached statistics."""
        x = check_image(image, "style image")
        if x.shape[0] != 1:
            raise InputError(f"encode_style takes one style image, got a batch of {x.shape[0]}")
        mean, std = AF.calc_mean_std(self._encode4(x, tile))
        return StyleStats(mean.flatten().cpu(), std.flatten().cpu(), self._style_key(x), x[0].detach().cpu().float())

    def _as_stats(self, style: StyleStats | torch.Tensor) -> StyleStats:
        return style if isinstance(style, StyleStats) else self.encode_style(style)

    def _region_stats(
        self, region: Region, content: torch.Tensor, color: str, tile: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Blended (512,) mean and std of one region's styles, recoloured to ``content`` (3, H, W) if asked."""
        if not region.styles:
            raise InputError("a region needs at least one style")
        stats = [self._as_stats(s) for s in region.styles]
        if color != "none":
            recoloured = []
            for s in stats:
                if s.image is None:
                    raise InputError(f"preserve_color={color!r} needs the style image; encode it with encode_style()")
                img = AF.coral(s.image, content.cpu()) if color == "coral" else AF.match_luminance(s.image, content.cpu())
                recoloured.append(self.encode_style(img, tile))
            stats = recoloured
        weights = region.weights if region.weights is not None else [1.0] * len(stats)
        return AF.blend_stats([s.mean for s in stats], [s.std for s in stats], weights)

    @torch.inference_mode()
    def stylize(
        self,
        content: torch.Tensor,
        style: StyleStats | torch.Tensor | Sequence[StyleStats | torch.Tensor] | None = None,
        alpha: float = 1.0,
        *,
        weights: Sequence[float] | None = None,
        regions: Sequence[Region] | None = None,
        masks: torch.Tensor | None = None,
        preserve_color: str = "none",
        tile: int | None = None,
        passes: bool = False,
        on_device: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> torch.Tensor | StylizeResult:
        """Stylize content (N, 3, H, W) or (3, H, W) floats in [0, 1]; returns the same shape, on the CPU
        (on the model's device with ``on_device=True``, e.g. to convert pixels there before one copy back).

        Args:
            style: a style image, its ``StyleStats``, or a list of them (interpolated with ``weights``).
            alpha: content-style trade-off in [0, 1] (eq. 14); per region with ``regions``.
            regions: instead of ``style``: one ``Region`` per mask region.
            masks: with ``regions``: an integer label map (N, H, W) or (H, W) where value k selects
                region k (other values keep the content), or soft masks (N, R, H, W) in [0, 1].
            preserve_color: "none", "coral" (style recoloured to the content, §7.3) or "luminance"
                (Gatys et al. 2016: transfer on luminance only, content's chroma kept).
            tile: process in tiles of this many pixels (statistics still over the whole image).
            passes: also return one full-frame pass per region; then the result is a ``StylizeResult``.
            should_stop: polled before every convolution (eager networks; per tile and stage when compiled);
                once it returns True the call raises ``adain.errors.CancelledError`` within one layer's time.
        """
        previous = getattr(self._stop, "fn", None)
        self._stop.fn = should_stop
        try:
            return self._stylize(content, style, alpha, weights, regions, masks, preserve_color, tile, passes, on_device)
        finally:
            self._stop.fn = previous

    def _stylize(
        self,
        content: torch.Tensor,
        style: StyleStats | torch.Tensor | Sequence[StyleStats | torch.Tensor] | None,
        alpha: float,
        weights: Sequence[float] | None,
        regions: Sequence[Region] | None,
        masks: torch.Tensor | None,
        preserve_color: str,
        tile: int | None,
        passes: bool,
        on_device: bool,
    ) -> torch.Tensor | StylizeResult:
        single = isinstance(content, torch.Tensor) and content.dim() == 3
        x = check_image(content, "content")
        if preserve_color not in COLOR_MODES:
            raise InputError(f"unknown preserve_color {preserve_color!r}: use one of {', '.join(COLOR_MODES)}")
        if regions is None:
            if style is None:
                raise InputError("give a style (image, StyleStats or list of them) or regions with masks")
            styles: list[StyleStats | torch.Tensor] = list(style) if isinstance(style, (list, tuple)) else [style]  # type: ignore[list-item]
            regions = [Region(styles, weights, alpha)]
            masks = None
        elif style is not None or masks is None:
            raise InputError("with regions=, pass masks= and no style=")
        for r in regions:
            if not 0.0 <= float(r.alpha) <= 1.0:
                raise InputError(f"alpha must be in [0, 1], got {r.alpha}")
        n, _, h, w = x.shape
        soft = None if masks is None else self._prepare_masks(masks, n, len(regions), (h, w))

        results, region_passes = [], []
        # Colour modes recolour the styles to each content image, so those work image by image.
        groups = [x[i : i + 1] for i in range(n)] if preserve_color != "none" else [x]
        for gi, xg in enumerate(groups):
            ref = xg[0]
            net_in = AF.luminance_image(xg) if preserve_color == "luminance" else xg
            stats = [self._region_stats(r, ref, preserve_color, tile) for r in regions]
            means = torch.stack([m.flatten() for m, _ in stats])
            stds = torch.stack([s.flatten() for _, s in stats])
            alphas = [float(r.alpha) for r in regions]
            feat = self._encode4(net_in, tile).float()
            dev_means, dev_stds = means.to(feat.device), stds.to(feat.device)
            if soft is None:
                t = AF.adain_blend(feat, dev_means[0].view(1, -1, 1, 1), dev_stds[0].view(1, -1, 1, 1), alphas[0])
            else:
                mg = soft if preserve_color == "none" else soft[gi : gi + 1]
                mf = AF.downsample_masks(self._pad_masks(mg), (feat.shape[-2], feat.shape[-1])).to(feat.device)
                t = AF.regional_adain(feat, mf, dev_means, dev_stds, alphas)
            outs = [self._decode(t, (h, w), tile)]
            if passes:
                for i in range(len(regions)):
                    ti = AF.adain_blend(feat, dev_means[i].view(1, -1, 1, 1), dev_stds[i].view(1, -1, 1, 1), alphas[i])
                    outs.append(self._decode(ti, (h, w), tile))
            if preserve_color == "luminance":
                outs = [AF.combine_luminance(o, self._to_device(xg)) for o in outs]
            home = (lambda o: o) if on_device else (lambda o: o.cpu())
            results.append(home(outs[0]))
            region_passes.append([home(o) for o in outs[1:]])

        combined = results[0] if len(results) == 1 else torch.cat(results)  # (cat would copy a lone frame)
        if single:
            combined = combined[0]
        if not passes:
            return combined
        per_region = [torch.cat([rp[i] for rp in region_passes]) for i in range(len(regions))]
        return StylizeResult(combined, [p[0] for p in per_region] if single else per_region)

    @staticmethod
    def _prepare_masks(masks: torch.Tensor, n: int, r: int, size: tuple[int, int]) -> torch.Tensor:
        """Label map or soft masks -> (N, R, H, W) float weights at image resolution."""
        if not isinstance(masks, torch.Tensor):
            raise InputError(f"masks must be a tensor, got {type(masks).__name__}")
        if masks.is_floating_point():
            m = masks.unsqueeze(0) if masks.dim() == 3 else masks
            if m.dim() != 4 or m.shape[1] != r or m.shape[0] not in (1, n) or tuple(m.shape[-2:]) != size:
                raise InputError(f"soft masks must be (N, {r}, {size[0]}, {size[1]}) for {r} regions, got {tuple(masks.shape)}")
            if (m < 0).any():
                raise InputError("soft masks must be non-negative weights")
            return m.float().expand(n, -1, -1, -1)
        m = AF.labels_to_masks(masks, r)
        if tuple(m.shape[-2:]) != size or m.shape[0] not in (1, n):
            raise InputError(f"label map must be (N, {size[0]}, {size[1]}) like the content, got {tuple(masks.shape)}")
        return m.expand(n, -1, -1, -1)

    @staticmethod
    def _pad_masks(m: torch.Tensor) -> torch.Tensor:
        """Replicate-pad masks to a multiple of 8 as the encoder pads the image, so cells align."""
        h, w = m.shape[-2:]
        ph, pw = -h % 8, -w % 8
        if not (ph or pw):
            return m
        return torch.nn.functional.pad(m, (0, pw, 0, ph), mode="replicate")

    def info(self) -> dict[str, str]:
        """Weights, device and precision, for ``adain info`` and the backend's ``hello``."""
        name = self.device.type if self.device.type == "cpu" else torch.cuda.get_device_name(self.device)
        return {
            "encoder": self.encoder_name,
            "decoder": self.decoder_metadata.get("name", "unnamed decoder"),
            "decoder_iterations": self.decoder_metadata.get("iterations", "unknown"),
            "device": f"{self.device} ({name})",
            "precision": self.precision,
            "compile": self.compile,
        }
