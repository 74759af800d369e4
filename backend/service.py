"""The model service: the only place in the backend that uses torch (LitServe style, no ZeroMQ here).

``setup()`` loads the model once (on the worker thread); ``predict(task)`` serves one typed task at a
time and returns a typed result in numpy. Style statistics are cached by style id, LRU-bounded.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import overload

import numpy as np
import torch

from adain import AdainError, CancelledError, InputError, Region, StyleStats, StyleTransfer
from adain_wire.protocol import ErrorCode, ModelInfo, Passes, RegionSpec
from backend import temporal
from backend.config import Config
from backend.device_pixels import as_tensor, download_frame, quantise, upload_frame, upload_labels
from backend.errors import BackendError, ConfigError

log = logging.getLogger("backend.service")


@dataclass(frozen=True, eq=False)
class EncodeStyleTask:
    """A style image, float32 (H, W, 3) in [0, 1], to encode under ``style_id``."""

    style_id: str
    image: np.ndarray


@dataclass(frozen=True, eq=False)
class StylizeTask:
    """``image``: the wire frame as received, (H, W, 3|4) uint8, uint16, float16 or float32 display-referred
    RGB(A); ``masks``: an integer label map (H, W), float32 soft masks (R, H, W) or None; ``output_dtype``:
    the dtype of the frames in the reply."""

    image: np.ndarray
    regions: tuple[RegionSpec, ...]
    masks: np.ndarray | None
    preserve_color: str
    passes: Passes
    tile: int | None
    output_dtype: str
    should_stop: Callable[[], bool] | None = field(default=None, compare=False)  # polled between network layers


@dataclass(frozen=True, eq=False)
class SmoothTask:
    """A ``smooth`` request's arrays as received (float16 or float32; see ``backend.temporal.smooth_step`` for their
    shapes), its strength and the dtype of the smoothed frame in the reply."""

    stylized: np.ndarray
    content: np.ndarray
    history: np.ndarray
    flow: np.ndarray
    strength: float
    output_dtype: str


@dataclass(frozen=True)
class StyleEncoded:
    style_id: str
    width: int
    height: int
    cached: bool


@dataclass(frozen=True, eq=False)
class StylizeOutput:
    """(H, W, 3|4) arrays in the task's ``output_dtype``, the input's alpha carried over: the combined frame
    (if asked) and one pass per region (if asked)."""

    combined: np.ndarray | None
    passes: list[np.ndarray]


@dataclass(frozen=True)
class Released:
    styles_dropped: int
    device_allocated: int
    device_reserved: int


@dataclass(frozen=True)
class ModelDescription:
    device: str
    precision: str
    model: ModelInfo


class StyleCache:
    """Thread-safe LRU of style statistics by style id."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, StyleStats] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> StyleStats | None:
        with self._lock:
            stats = self._items.get(key)
            if stats is not None:
                self._items.move_to_end(key)
            return stats

    def put(self, key: str, stats: StyleStats) -> None:
        with self._lock:
            self._items[key] = stats
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                evicted, _ = self._items.popitem(last=False)
                log.debug("style %s evicted from the cache", evicted[:12])

    def clear(self) -> int:
        with self._lock:
            n = len(self._items)
            self._items.clear()
            return n

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class ModelService:
    """Owns the StyleTransfer model and the style cache. ``model`` may be passed in already loaded."""

    def __init__(self, config: Config, model: StyleTransfer | None = None) -> None:
        self.config = config
        self.model = model
        self.styles = StyleCache(config.cache_size)
        self._description: ModelDescription | None = None

    # ------------------------------------------------------------------------------ lifecycle
    def setup(self) -> None:
        """Load the weights onto the device (once). Raises ConfigError with what to fix."""
        if self.model is not None:
            return
        c = self.config
        try:
            if c.decoder is None:
                self.model = StyleTransfer.load_default(device=c.device, precision=c.precision, compile=c.compile)
            else:
                self.model = StyleTransfer.load(c.decoder, c.encoder, device=c.device, precision=c.precision,
                                                compile=c.compile)  # fmt: skip
        except AdainError as e:
            raise ConfigError(f"cannot load the model: {e}") from e
        log.info("model ready: %s", self.model.info())

    def describe(self) -> ModelDescription:
        """Device, precision and weights (for hello; computed once)."""
        if self._description is None:
            info = self._model().info()
            model = ModelInfo(info["encoder"], info["decoder"], info["decoder_iterations"])
            self._description = ModelDescription(device=info["device"], precision=info["precision"], model=model)
        return self._description

    def _model(self) -> StyleTransfer:
        if self.model is None:
            raise BackendError(ErrorCode.INTERNAL, "the model is not loaded yet (setup() was not called)")
        return self.model

    # -------------------------------------------------------------------------------- predict
    @overload
    def predict(self, task: EncodeStyleTask) -> StyleEncoded: ...

    @overload
    def predict(self, task: StylizeTask) -> StylizeOutput: ...

    @overload
    def predict(self, task: SmoothTask) -> np.ndarray: ...

    def predict(self, task: EncodeStyleTask | StylizeTask | SmoothTask) -> StyleEncoded | StylizeOutput | np.ndarray:
        """Serve one task; model input errors become BackendError(bad_request), device OOM out_of_memory."""
        try:
            if isinstance(task, EncodeStyleTask):
                return self._encode_style(task)
            if isinstance(task, SmoothTask):
                return self._smooth(task)
            return self._stylize(task)
        except torch.OutOfMemoryError as e:
            self._empty_device_cache()
            raise BackendError(
                ErrorCode.OUT_OF_MEMORY,
                f"the device ran out of memory ({str(e).splitlines()[0]}): set tile (e.g. 1024), send smaller frames, "
                "or stop other programs using the GPU",
            ) from e
        except CancelledError as e:
            raise BackendError(ErrorCode.CANCELLED, "cancelled at the client's request") from e
        except InputError as e:
            raise BackendError(ErrorCode.BAD_REQUEST, str(e)) from e
        except AdainError as e:
            raise BackendError(ErrorCode.INTERNAL, f"the model failed: {e}") from e

    def lookup_style(self, style_id: str) -> StyleEncoded | None:
        """The cached style's size if this id is known (and mark it recently used)."""
        stats = self.styles.get(style_id)
        if stats is None:
            return None
        h, w = stats.image.shape[-2:] if stats.image is not None else (0, 0)
        return StyleEncoded(style_id, int(w), int(h), cached=True)

    def _encode_style(self, task: EncodeStyleTask) -> StyleEncoded:
        h, w = task.image.shape[:2]
        image = torch.from_numpy(np.ascontiguousarray(task.image, dtype=np.float32)).permute(2, 0, 1)
        stats = self._model().encode_style(image)
        self.styles.put(task.style_id, stats)
        return StyleEncoded(task.style_id, w, h, cached=False)

    def _regions(self, task: StylizeTask) -> list[Region]:
        """The request's regions with their cached style statistics (unknown_style when one is not cached)."""
        return [Region(styles=[self._style(s.id) for s in r.styles], weights=[s.weight for s in r.styles], alpha=r.alpha)
                for r in task.regions]  # fmt: skip

    def _stylize(self, task: StylizeTask) -> StylizeOutput:
        regions = self._regions(task)
        model = self._model()
        device = model.device
        rgb, alpha = upload_frame(task.image, device)  # converted on the model's device (see device_pixels)
        if task.masks is None:
            masks = None
        elif task.masks.ndim == 2:
            masks = upload_labels(task.masks, device)
        else:
            masks = as_tensor(task.masks).to(device)
        if masks is None:  # one region over the whole frame: its styles as the style mix
            styles, weights, r_alpha, by_mask = list(regions[0].styles), regions[0].weights, regions[0].alpha, None
        else:
            styles, weights, r_alpha, by_mask = None, None, 1.0, regions
        if task.passes.regions:
            result = model.stylize_passes(rgb, styles, r_alpha, weights=weights, regions=by_mask, masks=masks,
                                          preserve_color=task.preserve_color, tile=task.tile, on_device=True,
                                          should_stop=task.should_stop)  # fmt: skip
            return _output(task, result.combined, result.passes, alpha)
        out = model.stylize(rgb, styles, r_alpha, weights=weights, regions=by_mask, masks=masks,
                            preserve_color=task.preserve_color, tile=task.tile, on_device=True,
                            should_stop=task.should_stop)  # fmt: skip
        return _output(task, out, [], alpha)

    @property
    def device(self) -> torch.device:
        """Where the model (and the smoothing) runs."""
        return self._model().device

    def _smooth(self, task: SmoothTask) -> np.ndarray:
        dev = self.device
        named = (("stylized", task.stylized), ("content", task.content), ("history", task.history), ("flow", task.flow))
        stylized, content, history, flow = (temporal.upload(as_tensor(a), name, dev) for name, a in named)
        out = temporal.smooth_step(stylized, content, history, flow, task.strength)
        return quantise(out, task.output_dtype).cpu().numpy()

    def _style(self, style_id: str) -> StyleStats:
        stats = self.styles.get(style_id)
        if stats is None:
            raise BackendError(
                ErrorCode.UNKNOWN_STYLE,
                f"style {style_id[:16]}... is not known to this backend (it restarted or evicted it): put it again",
                style=style_id,
            )
        return stats

    # -------------------------------------------------------------------------------- release
    def release(self, drop_styles: bool) -> Released:
        """Return cached device memory to the driver (torch.cuda.empty_cache); optionally forget every style."""
        dropped = self.styles.clear() if drop_styles else 0
        self._empty_device_cache()
        allocated = reserved = 0
        model = self.model
        if model is not None and model.device.type == "cuda":
            allocated = int(torch.cuda.memory_allocated(model.device))
            reserved = int(torch.cuda.memory_reserved(model.device))
        return Released(dropped, allocated, reserved)

    def _empty_device_cache(self) -> None:
        if self.model is not None and self.model.device.type == "cuda":
            torch.cuda.empty_cache()


class IdentityService(ModelService):
    """The pass-through backend (``--identity``), for tests of colour round trips and transport: it loads no model,
    remembers styles by id only, and sends every frame back unchanged through the same conversions as the model's
    (unknown styles are still refused, so a client's recovery can be tested against it)."""

    DESCRIPTION = ModelDescription(device="cpu", precision="fp32", model=ModelInfo("identity", "identity", "0"))

    def __init__(self, config: Config) -> None:
        super().__init__(config, None)

    def setup(self) -> None:
        pass

    def describe(self) -> ModelDescription:
        return self.DESCRIPTION

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _encode_style(self, task: EncodeStyleTask) -> StyleEncoded:
        h, w = task.image.shape[:2]
        self.styles.put(task.style_id, StyleStats(torch.zeros(0), torch.zeros(0), task.style_id))
        return StyleEncoded(task.style_id, w, h, cached=False)

    def _stylize(self, task: StylizeTask) -> StylizeOutput:
        regions = self._regions(task)
        rgb, alpha = upload_frame(task.image, torch.device("cpu"))
        return _output(task, rgb, [rgb] * len(regions) if task.passes.regions else [], alpha)


def make_service(config: Config, model: StyleTransfer | None = None) -> ModelService:
    """The service ``config`` asks for: the pass-through one with ``identity``, else the model (``model`` if loaded)."""
    return IdentityService(config) if config.identity else ModelService(config, model)


def _output(task: StylizeTask, combined: torch.Tensor, passes: list[torch.Tensor], alpha: torch.Tensor | None) -> StylizeOutput:
    """The frames the reply carries, in the request's output dtype with its alpha."""
    dtype = task.output_dtype
    return StylizeOutput(
        combined=download_frame(combined, alpha, dtype) if task.passes.combined else None,
        passes=[download_frame(p, alpha, dtype) for p in passes],
    )
