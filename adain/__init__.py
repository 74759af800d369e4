"""AdaIN arbitrary style transfer (Huang & Belongie 2017): networks, runtime controls, weights.

This package knows nothing of ZeroMQ or Blender. ``import adain`` loads no torch: the exceptions are plain, and the
names below that need torch (the model, the networks, the pure functions) load it when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from adain.errors import AdainError, CancelledError, InputError, WeightsError

if TYPE_CHECKING:
    from adain.functional import adain, calc_mean_std, coral
    from adain.model import Region, StyleStats, StyleTransfer, StylizeResult
    from adain.networks import Decoder, Encoder

__version__ = "0.1.0"

_LAZY = {
    "adain": "adain.functional",
    "calc_mean_std": "adain.functional",
    "coral": "adain.functional",
    "Region": "adain.model",
    "StyleStats": "adain.model",
    "StyleTransfer": "adain.model",
    "StylizeResult": "adain.model",
    "Decoder": "adain.networks",
    "Encoder": "adain.networks",
}

__all__ = [
    "AdainError",
    "CancelledError",
    "Decoder",
    "Encoder",
    "InputError",
    "Region",
    "StyleStats",
    "StyleTransfer",
    "StylizeResult",
    "WeightsError",
    "__version__",
    "adain",
    "calc_mean_std",
    "coral",
]


def __getattr__(name: str) -> Any:
    """The torch-backed names, imported on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'adain' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
