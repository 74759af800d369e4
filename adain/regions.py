"""Styles and regions as ``StyleTransfer`` takes them, and the plain functions that turn them into AdaIN targets.

A style is encoded once into ``StyleStats`` (relu4_1 channel statistics). A ``Region`` mixes styles (eq. 15) with its
own alpha (eq. 14); a frame has one region, or several selected by masks at image resolution (a label map or soft
weights), which ``prepare_masks`` and ``pad_masks`` bring to the encoder's grid. ``StylizeResult`` is what
``StyleTransfer.stylize_passes`` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from adain import functional as AF
from adain.errors import InputError


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
    """``combined``: (N, 3, H, W); ``passes``: one (N, 3, H, W) per region (its style over the whole frame).

    For a (3, H, W) content image each of them is (3, H, W)."""

    combined: torch.Tensor
    passes: list[torch.Tensor]


def as_regions(
    style: StyleStats | torch.Tensor | Sequence[StyleStats | torch.Tensor] | None,
    alpha: float,
    weights: Sequence[float] | None,
    regions: Sequence[Region] | None,
    masks: torch.Tensor | None,
) -> tuple[Sequence[Region], torch.Tensor | None]:
    """``stylize``'s two ways of naming styles -> (regions, masks): ``style`` (with ``alpha`` and ``weights``) is one
    region over the whole frame (masks None); else ``regions`` with their ``masks``. Checks every alpha is in [0, 1]."""
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
    return regions, masks


def region_stats(
    region: Region, content: torch.Tensor, color: str, encode: Callable[[torch.Tensor], StyleStats]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One region's blended style statistics.

    Args:
        region: its styles (``StyleStats``, or images (3, H, W) that ``encode`` encodes) and their weights.
        content: (3, H, W), the image the styles are recoloured to when ``color`` is "coral" or "luminance".
        color: a colour mode (``adain_wire.options.COLOR_MODES``).
        encode: encodes a style image (3, H, W) into ``StyleStats`` (``StyleTransfer.encode_style``).

    Returns:
        (mean, std), each (512,) float32 on the CPU, blended with the normalised weights (eq. 15).
    """
    if not region.styles:
        raise InputError("a region needs at least one style")
    stats = [s if isinstance(s, StyleStats) else encode(s) for s in region.styles]
    if color != "none":
        recoloured = []
        for s in stats:
            if s.image is None:
                raise InputError(f"preserve_color={color!r} needs the style image; encode it with encode_style()")
            img = AF.coral(s.image, content.cpu()) if color == "coral" else AF.match_luminance(s.image, content.cpu())
            recoloured.append(encode(img))
        stats = recoloured
    weights = region.weights if region.weights is not None else [1.0] * len(stats)
    return AF.blend_stats([s.mean for s in stats], [s.std for s in stats], weights)


def prepare_masks(masks: torch.Tensor, n: int, r: int, size: tuple[int, int]) -> torch.Tensor:
    """Region masks at image resolution -> (N, R, H, W) float weights.

    Args:
        masks: an integer label map (N, H, W) or (H, W) where value k selects region k (other values keep the content),
            or soft masks (N, R, H, W) or (R, H, W), non-negative floats; N may be 1 for a whole batch.
        n: the batch size N.
        r: the number of regions R.
        size: (H, W) of the content.
    """
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


def pad_masks(m: torch.Tensor) -> torch.Tensor:
    """(N, R, H, W) -> (N, R, H + pad, W + pad), replicate-padded to a multiple of 8 as the encoder pads the image, so
    the cells of the relu4_1 grid (1/8 of the image) align with the masks."""
    h, w = m.shape[-2:]
    ph, pw = -h % 8, -w % 8
    if not (ph or pw):
        return m
    return torch.nn.functional.pad(m, (0, pw, 0, ph), mode="replicate")
