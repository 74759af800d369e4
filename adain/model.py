"""``StyleTransfer``: the AdaIN model with every runtime control of the paper (§7.3).

    st = StyleTransfer.load_default(device="auto")
    stats = st.encode_style(style_image)             # encode a style once, reuse it for every frame
    out = st.stylize(content, stats, alpha=0.8)       # (N, 3, H, W) or (3, H, W) floats in [0, 1]

One content encoding and one decode serve any number of regions, each with its own style mix and
alpha (``regions=`` with ``masks=``). ``stylize`` returns the stylized image; ``stylize_passes`` also returns
per-region passes (each region's style over the whole frame), which cost one extra decode each.
The value types and the region maths are in ``adain.regions``; the device and precision choices in ``adain.devices``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, TypeAlias

import torch

from adain import functional as AF
from adain.devices import check_compile_mode, cpu_supports_bf16, resolve_device, resolve_precision
from adain.errors import CancelledError, InputError, WeightsError
from adain.networks import Decoder, Encoder, check_image
from adain.regions import Region, StyleStats, StylizeResult, as_regions, pad_masks, prepare_masks, region_stats
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

__all__ = [  # (the devices, regions and options names are re-exported: they were here before)
    "COLOR_MODES", "COMPILE_MODES", "PRECISIONS", "ColorMode", "Region", "StyleStats", "StyleTransfer", "StylizeResult",
    "check_compile_mode", "cpu_supports_bf16", "resolve_device", "resolve_precision",
]  # fmt: skip

ColorMode = Literal["none", "coral", "luminance"]  # adain_wire.options.COLOR_MODES, for type checkers

StyleArg: TypeAlias = StyleStats | torch.Tensor | Sequence[StyleStats | torch.Tensor] | None  # stylize's ``style``


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

    @torch.inference_mode()
    def stylize(
        self,
        content: torch.Tensor,
        style: StyleArg = None,
        alpha: float = 1.0,
        *,
        weights: Sequence[float] | None = None,
        regions: Sequence[Region] | None = None,
        masks: torch.Tensor | None = None,
        preserve_color: str = "none",
        tile: int | None = None,
        on_device: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> torch.Tensor:
        """Stylize content (N, 3, H, W) or (3, H, W) floats in [0, 1]; returns the same shape, on the CPU
        (on the model's device with ``on_device=True``, e.g. to convert pixels there before one copy back).

        Args:
            style: a style image (3, H, W), its ``StyleStats``, or a list of them (interpolated with ``weights``).
            alpha: content-style trade-off in [0, 1] (eq. 14); per region with ``regions``.
            regions: instead of ``style``: one ``Region`` per mask region.
            masks: with ``regions``: an integer label map (N, H, W) or (H, W) where value k selects
                region k (other values keep the content), or soft masks (N, R, H, W) in [0, 1].
            preserve_color: "none", "coral" (style recoloured to the content, §7.3) or "luminance"
                (Gatys et al. 2016: transfer on luminance only, content's chroma kept).
            tile: process in tiles of this many pixels (statistics still over the whole image).
            should_stop: polled before every convolution (eager networks; per tile and stage when compiled);
                once it returns True the call raises ``adain.errors.CancelledError`` within one layer's time.

        ``stylize_passes`` also returns each region's style over the whole frame.
        """
        with self._stop_check(should_stop):
            return self._stylize(content, style, alpha, weights, regions, masks, preserve_color, tile, False, on_device).combined

    @torch.inference_mode()
    def stylize_passes(
        self,
        content: torch.Tensor,
        style: StyleArg = None,
        alpha: float = 1.0,
        *,
        weights: Sequence[float] | None = None,
        regions: Sequence[Region] | None = None,
        masks: torch.Tensor | None = None,
        preserve_color: str = "none",
        tile: int | None = None,
        on_device: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> StylizeResult:
        """``stylize``, plus one full-frame pass per region: that region's style mix and alpha over the whole frame.

        The arguments are ``stylize``'s. Returns ``StylizeResult(combined, passes)``: ``combined`` is what ``stylize``
        returns, ``passes`` one image of the same shape per region, in ``regions`` order (one for ``style``).
        Each pass costs one more decode; the content is still encoded once.
        """
        with self._stop_check(should_stop):
            return self._stylize(content, style, alpha, weights, regions, masks, preserve_color, tile, True, on_device)

    @contextlib.contextmanager
    def _stop_check(self, should_stop: Callable[[], bool] | None) -> Iterator[None]:
        """``should_stop`` is this thread's stop check for the duration of the block."""
        previous = getattr(self._stop, "fn", None)
        self._stop.fn = should_stop
        try:
            yield
        finally:
            self._stop.fn = previous

    def _stylize(
        self,
        content: torch.Tensor,
        style: StyleArg,
        alpha: float,
        weights: Sequence[float] | None,
        regions: Sequence[Region] | None,
        masks: torch.Tensor | None,
        preserve_color: str,
        tile: int | None,
        passes: bool,
        on_device: bool,
    ) -> StylizeResult:
        """``passes`` False: the result's ``passes`` is empty (no extra decode)."""
        single = isinstance(content, torch.Tensor) and content.dim() == 3
        x = check_image(content, "content")
        if preserve_color not in COLOR_MODES:
            raise InputError(f"unknown preserve_color {preserve_color!r}: use one of {', '.join(COLOR_MODES)}")
        regions, masks = as_regions(style, alpha, weights, regions, masks)
        n, _, h, w = x.shape
        soft = None if masks is None else prepare_masks(masks, n, len(regions), (h, w))

        def encode(img: torch.Tensor) -> StyleStats:
            return self.encode_style(img, tile)

        results, region_passes = [], []
        # Colour modes recolour the styles to each content image, so those work image by image.
        groups = [x[i : i + 1] for i in range(n)] if preserve_color != "none" else [x]
        for gi, xg in enumerate(groups):
            ref = xg[0]
            net_in = AF.luminance_image(xg) if preserve_color == "luminance" else xg
            stats = [region_stats(r, ref, preserve_color, encode) for r in regions]
            means = torch.stack([m.flatten() for m, _ in stats])
            stds = torch.stack([s.flatten() for _, s in stats])
            alphas = [float(r.alpha) for r in regions]
            feat = self._encode4(net_in, tile).float()
            dev_means, dev_stds = means.to(feat.device), stds.to(feat.device)
            if soft is None:
                t = AF.adain_blend(feat, dev_means[0].view(1, -1, 1, 1), dev_stds[0].view(1, -1, 1, 1), alphas[0])
            else:
                mg = soft if preserve_color == "none" else soft[gi : gi + 1]
                mf = AF.downsample_masks(pad_masks(mg), (feat.shape[-2], feat.shape[-1])).to(feat.device)
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
            return StylizeResult(combined, [])
        per_region = [torch.cat([rp[i] for rp in region_passes]) for i in range(len(regions))]
        return StylizeResult(combined, [p[0] for p in per_region] if single else per_region)

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
