"""Cryptomatte decoding (no bpy): anti-aliased per-object and per-material coverage masks from a render.

Blender writes Cryptomatte as passes ``CryptoObject00``, ``CryptoObject01``... (and ``CryptoMaterial..``), each
RGBA holding two ranks: (id, coverage, id, coverage). An id is the MurmurHash3 (x86, 32-bit, seed 0) of the
object's or material's name, with its bits reinterpreted as a float32 whose exponent is kept away from 0 and 255
(so it is never a denormal, infinity or NaN). Summing the coverage of every rank whose id belongs to a set of
names gives that set's soft mask in [0, 1].
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np

_C1, _C2, _M32 = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def murmurhash3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of ``data`` (the hash Cryptomatte names ids with)."""
    h = seed & _M32
    n = len(data) // 4 * 4
    for (k,) in struct.iter_unpack("<I", data[:n]):
        k = _rotl((k * _C1) & _M32, 15) * _C2 & _M32
        h = (_rotl(h ^ k, 13) * 5 + 0xE6546B64) & _M32
    tail = data[n:]
    if tail:
        k = int.from_bytes(tail, "little")
        h ^= _rotl((k * _C1) & _M32, 15) * _C2 & _M32
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def name_id(name: str) -> int:
    """The float32 bit pattern (as an unsigned int) that Cryptomatte stores for ``name``."""
    h = murmurhash3_32(name.encode("utf-8"))
    exponent = min(max((h >> 23) & 0xFF, 1), 254)
    return (h & 0x807FFFFF) | (exponent << 23)


def coverage(layers: Sequence[np.ndarray], names: Iterable[str]) -> np.ndarray:
    """Soft mask (H, W) float32 of the objects or materials called ``names``.

    Args:
        layers: the Cryptomatte passes of one kind, each (H, W, 4) float32 (id, coverage, id, coverage).
        names: object or material names (exact, as Blender shows them).
    """
    if isinstance(names, str):
        raise TypeError(f"names must be a collection of names, not the string {names!r}")
    if not layers:
        raise ValueError("no Cryptomatte passes: enable Cryptomatte (Object/Material) in the view layer's passes")
    ids = np.array(sorted({name_id(n) for n in names}), dtype=np.uint32)
    h, w = layers[0].shape[:2]
    out = np.zeros((h, w), np.float32)
    if ids.size == 0:
        return out
    for layer in layers:
        if layer.shape != (h, w, 4) or layer.dtype != np.float32:
            raise ValueError(f"a Cryptomatte pass must be ({h}, {w}, 4) float32, got {layer.shape} {layer.dtype}")
        bits = np.ascontiguousarray(layer).view(np.uint32)
        for rank in (0, 2):
            hit = np.isin(bits[..., rank], ids)
            out += np.where(hit, layer[..., rank + 1], 0.0)
    return np.clip(out, 0.0, 1.0)
