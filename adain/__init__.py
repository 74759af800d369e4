"""AdaIN arbitrary style transfer (Huang & Belongie 2017): networks, runtime controls, weights.

This package knows nothing of ZeroMQ or Blender.
"""

from adain.errors import AdainError, CancelledError, InputError, WeightsError
from adain.functional import adain, calc_mean_std, coral
from adain.model import Region, StyleStats, StyleTransfer, StylizeResult
from adain.networks import Decoder, Encoder

__version__ = "0.1.0"

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
