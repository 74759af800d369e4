"""Bounded-memory encode/decode of large frames in overlapping tiles.

Only the per-tile work is tiled: the relu4_1 feature map of the whole frame (1/8 resolution, 512
channels) is assembled in full, so AdaIN statistics are taken over the whole image and every tile is
normalised identically. Each tile is processed with a margin of real context around it (larger than
the networks' receptive fields) and only its centre is kept, so seams are invisible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

STRIDE = 8  # image pixels per relu4_1 cell
ENCODE_MARGIN = 64  # image pixels of context per side (encoder receptive field radius is ~30 px)
DECODE_MARGIN = 8  # relu4_1 cells of context per side (decoder receptive field radius is ~4 cells)


def _spans(length: int, tile: int) -> Iterator[tuple[int, int]]:
    start = 0
    while start < length:
        yield start, min(start + tile, length)
        start += tile


def encode_tiled(
    encode: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tile: int, margin: int = ENCODE_MARGIN
) -> torch.Tensor:
    """relu4_1 features of ``image`` (N, 3, H, W) computed tile by tile -> (N, 512, ceil(H/8), ceil(W/8)).

    ``encode`` maps an image (N, 3, h, w) to its relu4_1 features; ``tile`` is in image pixels (rounded
    down to a multiple of 8, at least 64).
    """
    n, _, h, w = image.shape
    tile = max(64, tile - tile % STRIDE)
    margin = margin - margin % STRIDE
    out: torch.Tensor | None = None
    for y0, y1 in _spans(h, tile):
        for x0, x1 in _spans(w, tile):
            wy0, wx0 = max(0, y0 - margin), max(0, x0 - margin)
            wy1, wx1 = min(h, y1 + margin), min(w, x1 + margin)
            f = encode(image[..., wy0:wy1, wx0:wx1])
            if out is None:
                out = f.new_empty(n, f.shape[1], -(-h // STRIDE), -(-w // STRIDE))
            fy0, fx0 = (y0 - wy0) // STRIDE, (x0 - wx0) // STRIDE
            cy, cx = -(-(y1 - y0) // STRIDE), -(-(x1 - x0) // STRIDE)
            out[..., y0 // STRIDE : y0 // STRIDE + cy, x0 // STRIDE : x0 // STRIDE + cx] = f[..., fy0 : fy0 + cy, fx0 : fx0 + cx]
    assert out is not None
    return out


def decode_tiled(
    decode: Callable[[torch.Tensor], torch.Tensor],
    feats: torch.Tensor,
    size: tuple[int, int],
    tile: int,
    margin: int = DECODE_MARGIN,
) -> torch.Tensor:
    """Decode relu4_1 features (N, 512, h, w) tile by tile into an image (N, 3, H, W) of ``size``.

    ``decode`` maps features (N, 512, a, b) to an image (N, 3, 8a, 8b); ``tile`` is in image pixels.
    """
    n, _, fh, fw = feats.shape
    ft = max(8, tile // STRIDE)
    out = feats.new_empty(n, 3, fh * STRIDE, fw * STRIDE, dtype=torch.float32)
    for y0, y1 in _spans(fh, ft):
        for x0, x1 in _spans(fw, ft):
            wy0, wx0 = max(0, y0 - margin), max(0, x0 - margin)
            wy1, wx1 = min(fh, y1 + margin), min(fw, x1 + margin)
            img = decode(feats[..., wy0:wy1, wx0:wx1]).float()
            oy, ox = (y0 - wy0) * STRIDE, (x0 - wx0) * STRIDE
            out[..., y0 * STRIDE : y1 * STRIDE, x0 * STRIDE : x1 * STRIDE] = img[
                ..., oy : oy + (y1 - y0) * STRIDE, ox : ox + (x1 - x0) * STRIDE
            ]
    return out[..., : size[0], : size[1]]
