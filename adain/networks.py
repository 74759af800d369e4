"""The AdaIN networks (paper §6.1): a fixed VGG-19 encoder up to relu4_1 and its mirrored decoder.

Encoder ``f``: RGB in [0, 1] -> a leading 1x1 conv that folds RGB->BGR, x255 and the ImageNet mean
subtraction (as the published ``vgg_normalised`` does) -> VGG-19 conv1_1 ... conv4_1 with reflection
padding, ReLU, and 2x2 max pooling with ceil mode. Taps: relu1_1, relu2_1, relu3_1, relu4_1.

Decoder ``g``: the encoder mirrored, pooling replaced by nearest 2x upsampling, reflection padding,
no normalisation layers, ReLU after every conv but the last.

Shapes (N images of H x W; the input is reflect-padded to a multiple of 8 and features cropped back):
    relu1_1: (N, 64, H, W)        relu2_1: (N, 128, ceil(H/2), ceil(W/2))
    relu3_1: (N, 256, ceil(H/4), ...)   relu4_1: (N, 512, ceil(H/8), ceil(W/8))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adain.errors import InputError
from adain_wire.options import MIN_SIDE

TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
_STRIDE = 8  # relu4_1 is at 1/8 resolution

# (name, in_channels, out_channels); "pool" marks a 2x2 max pooling.
ENCODER_LAYERS: tuple[tuple[str, int, int] | str, ...] = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64), "pool",
    ("conv2_1", 64, 128), ("conv2_2", 128, 128), "pool",
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256), "pool",
    ("conv4_1", 256, 512),
)  # fmt: skip
ENCODER_CONVS: tuple[str, ...] = tuple(layer[0] for layer in ENCODER_LAYERS if isinstance(layer, tuple))

# "up" marks a nearest 2x upsampling; the last conv has no ReLU.
DECODER_LAYERS: tuple[tuple[str, int, int] | str, ...] = (
    ("dec4_1", 512, 256), "up",
    ("dec3_4", 256, 256), ("dec3_3", 256, 256), ("dec3_2", 256, 256), ("dec3_1", 256, 128), "up",
    ("dec2_2", 128, 128), ("dec2_1", 128, 64), "up",
    ("dec1_2", 64, 64), ("dec1_1", 64, 3),
)  # fmt: skip
DECODER_CONVS: tuple[str, ...] = tuple(layer[0] for layer in DECODER_LAYERS if isinstance(layer, tuple))


def check_image(x: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Return ``x`` as (N, 3, H, W) floating point; accepts (3, H, W). Raises InputError otherwise."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise InputError(f"{name} must have shape (N, 3, H, W) or (3, H, W) (RGB), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a float tensor with values in [0, 1], got dtype {x.dtype}")
    if min(x.shape[-2:]) < MIN_SIDE:
        raise InputError(f"{name} must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got {x.shape[-1]}x{x.shape[-2]}")
    return x


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    return F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x


class Encoder(nn.Module):
    """VGG-19 up to relu4_1. ``forward(x)`` returns ``{tap: features}`` for the taps in ``TAPS``.

    Args:
        x: (N, 3, H, W) RGB in [0, 1], H, W >= 16.
        last: the deepest tap to compute (stops early, e.g. "relu4_1" for everything).
    """

    def __init__(self) -> None:
        super().__init__()
        self.prep = nn.Conv2d(3, 3, 1)  # RGB [0,1] -> BGR 0..255 minus the ImageNet mean
        self.convs = nn.ModuleDict({name: nn.Conv2d(cin, cout, 3) for name, cin, cout in _convs(ENCODER_LAYERS)})

    def forward(self, x: torch.Tensor, last: str = "relu4_1") -> dict[str, torch.Tensor]:
        if last not in TAPS:
            raise InputError(f"last must be one of {TAPS}, got {last!r}")
        h, w = x.shape[-2:]
        y = self.prep(_pad_to_multiple(x, _STRIDE))
        feats: dict[str, torch.Tensor] = {}
        scale = 1
        for layer in ENCODER_LAYERS:
            if layer == "pool":
                y = F.max_pool2d(y, 2, 2, ceil_mode=True)
                scale *= 2
                continue
            name = layer[0]
            y = F.relu(self.convs[name](F.pad(y, (1, 1, 1, 1), mode="reflect")))
            tap = "relu" + name[4:]
            if tap in TAPS and name.endswith("_1"):
                feats[tap] = y[..., : math.ceil(h / scale), : math.ceil(w / scale)]
                if tap == last:
                    break
        return feats


class Decoder(nn.Module):
    """Inverts relu4_1 features to an image: (N, 512, h, w) -> (N, 3, 8h, 8w), not clamped.

    ``size`` (H, W) crops the output to an image size (H <= 8h, W <= 8w).
    """

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleDict({name: nn.Conv2d(cin, cout, 3) for name, cin, cout in _convs(DECODER_LAYERS)})

    def forward(self, t: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        y = t
        for layer in DECODER_LAYERS:
            if layer == "up":
                y = F.interpolate(y, scale_factor=2.0, mode="nearest")
                continue
            name = layer[0]
            y = self.convs[name](F.pad(y, (1, 1, 1, 1), mode="reflect"))
            if name != DECODER_CONVS[-1]:
                y = F.relu(y)
        if size is not None:
            y = y[..., : size[0], : size[1]]
        return y


def _convs(layers: tuple[tuple[str, int, int] | str, ...]) -> list[tuple[str, int, int]]:
    return [layer for layer in layers if isinstance(layer, tuple)]


@dataclass(frozen=True)
class NetworkInfo:
    """What a loaded pair of networks is, for ``adain info`` and model cards."""

    encoder: str
    decoder: str
    decoder_metadata: dict[str, str]
