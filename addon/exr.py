"""A reader for the uncompressed multilayer OpenEXR files the add-on writes itself (no bpy).

The engine-independent hook (``engine_hook``) saves Blender's Render Result as an OpenEXR multilayer file, with
compression NONE, and reads every pass back from it: this is how Python sees the passes of an engine whose
RenderEngine class is C (EEVEE, Workbench), because the Render Result image has no readable pixels.

Only what that file holds is supported: scan lines (one part, or one per layer as Blender 5.0
writes), no compression, HALF or FLOAT channels named
``<layer>.<pass>.<channel>`` (the composited image is layer "Composite", pass "Combined"). Anything else raises
``ExrError``. Arrays come back in Blender's row order (bottom row first), float32, channels in their pass's order
(RGBA, XYZW..., case aside: Cryptomatte's are "rgba").

``read_metadata`` gives the header attributes that are not the image's layout (Cryptomatte's
``cryptomatte/<hash>/name|hash|conversion|manifest``, the render stamp, ``BlenderMultiChannel``...), of a file in
any compression, and ``write_layers`` writes them back, so a rewritten output keeps what Blender put there.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 20000630
_TILED, _NON_IMAGE, _MULTIPART = 0x200, 0x800, 0x1000
_DTYPES: dict[int, np.dtype] = {1: np.dtype("<f2"), 2: np.dtype("<f4")}  # HALF, FLOAT (UINT is not written for passes)
_ORDER = "RGBAXYZWUVIDE"  # channel letters in the order Blender's passes use them
# Attributes that describe a part's pixels and layout: ``write_layers`` writes its own; the rest is metadata.
LAYOUT_ATTRIBUTES = frozenset({
    "channels", "compression", "dataWindow", "displayWindow", "lineOrder", "pixelAspectRatio", "screenWindowCenter",
    "screenWindowWidth", "tiles", "name", "type", "version", "chunkCount", "maxSamplesPerPixel",
})  # fmt: skip


class ExrError(Exception):
    """The file is not an EXR this reader handles; the message says why."""


@dataclass(frozen=True)
class _Channel:
    name: str
    dtype: np.dtype


def _cstring(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\0", pos)
    return data[pos:end].decode("utf-8"), end + 1


def _channels(value: bytes) -> list[_Channel]:
    out, pos = [], 0
    while pos < len(value) and value[pos] != 0:
        name, pos = _cstring(value, pos)
        ptype, _linear, xs, ys = struct.unpack_from("<iB3xii", value, pos)
        pos += 16
        if ptype not in _DTYPES:
            raise ExrError(f"channel {name!r} has pixel type {ptype}: only HALF and FLOAT are read")
        if (xs, ys) != (1, 1):
            raise ExrError(f"channel {name!r} is subsampled")
        out.append(_Channel(name, _DTYPES[ptype]))
    return out


def _one_header(data: bytes, pos: int) -> tuple[dict[str, tuple[str, bytes]], int]:
    attrs: dict[str, tuple[str, bytes]] = {}
    while data[pos] != 0:
        name, pos = _cstring(data, pos)
        kind, pos = _cstring(data, pos)
        (size,) = struct.unpack_from("<i", data, pos)
        pos += 4
        attrs[name] = (kind, data[pos : pos + size])
        pos += size
    return attrs, pos + 1


def _headers(data: bytes) -> tuple[list[dict[str, tuple[str, bytes]]], int, bool]:
    """The parts' headers (one unless multi-part: Blender 5.0 writes a part per layer), the offset tables' start."""
    if len(data) < 8:
        raise ExrError("not an OpenEXR file (too short)")
    magic, version = struct.unpack_from("<ii", data, 0)
    if magic != MAGIC:
        raise ExrError("not an OpenEXR file")
    if version & (_TILED | _NON_IMAGE):
        raise ExrError("tiled or deep OpenEXR files are not read")
    multipart = bool(version & _MULTIPART)
    headers, pos = [], 8
    while True:
        attrs, pos = _one_header(data, pos)
        headers.append(attrs)
        if not multipart:
            break
        if data[pos] == 0:
            pos += 1
            break
    return headers, pos, multipart


def read_metadata(path: str | Path) -> dict[str, tuple[str, bytes]]:
    """The header attributes other than the layout (``LAYOUT_ATTRIBUTES``): ``{name: (type, raw value)}``, in the
    file's order. Of a multi-part file, every part's; where parts disagree (Blender 5.0's per-part
    ``colorInteropID``), the first part's value. Any compression: only the headers are read, 64 KiB at first, more
    while they go on (Cryptomatte manifests of big scenes)."""
    data, size = b"", 1 << 16
    try:
        with open(path, "rb") as fh:
            while True:
                more = fh.read(size - len(data))
                data += more
                try:
                    headers = _headers(data)[0]
                    break
                except (ValueError, IndexError, struct.error) as e:  # (the headers go on past what was read)
                    if len(data) < size:  # the whole file was read: a header cut short
                        raise ExrError(f"not a readable OpenEXR header ({e})") from e
                    size *= 2
    except OSError as e:
        raise ExrError(f"cannot read {path}: {e}") from e
    out: dict[str, tuple[str, bytes]] = {}
    for attrs in headers:
        for name, value in attrs.items():
            if name not in LAYOUT_ATTRIBUTES:
                out.setdefault(name, value)
    return out


def read_layers(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Every pass of every layer: ``{layer: {pass: (H, W, C) float32}}``, Blender's row order."""
    data = Path(path).read_bytes()
    headers, pos, multipart = _headers(data)
    tables = []
    for attrs in headers:
        if attrs.get("compression", ("", b"\1"))[1][:1] != b"\0":
            raise ExrError("compressed OpenEXR: only files written with compression NONE are read")
        _, ymin, _, ymax = struct.unpack("<iiii", attrs["dataWindow"][1])
        h = ymax - ymin + 1
        tables.append(np.frombuffer(data, "<u8", h, pos))
        pos += 8 * h
    planes: dict[str, np.ndarray] = {}
    for attrs, offsets in zip(headers, tables, strict=True):
        prefix = attrs["name"][1].rstrip(b"\0").decode("utf-8") if multipart and "name" in attrs else ""
        planes.update(_part(data, attrs, offsets, 4 if multipart else 0, prefix))
    return _group(planes)


def _part(data: bytes, attrs: dict[str, tuple[str, bytes]], offsets: np.ndarray, skip: int, prefix: str) -> dict[str, np.ndarray]:
    xmin, ymin, xmax, ymax = struct.unpack("<iiii", attrs["dataWindow"][1])
    w, h = xmax - xmin + 1, ymax - ymin + 1
    channels = _channels(attrs["channels"][1])
    chunk = skip + 8 + sum(c.dtype.itemsize for c in channels) * w
    if h > 1 and not np.all(np.diff(offsets.astype(np.int64)) == chunk):
        raise ExrError("scan lines are not stored in order")
    start = int(offsets[0])
    if start + h * chunk > len(data):
        raise ExrError("the file is truncated")
    rows = np.frombuffer(data, np.uint8, h * chunk, start).reshape(h, chunk)[:, skip:]
    ys = rows[:, :4].copy().view("<i4")[:, 0]
    order = np.argsort(ys)[::-1]  # EXR's y runs down the image; Blender's rows run up
    planes: dict[str, np.ndarray] = {}
    col = 8
    for c in channels:
        n = c.dtype.itemsize * w
        name = c.name if "." in c.name or not prefix else f"{prefix}.{c.name}"
        planes[name] = rows[order, col : col + n].copy().view(c.dtype).astype(np.float32)
        col += n
    return planes


def _group(planes: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    grouped: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = {}
    for name, plane in planes.items():
        parts = name.rsplit(".", 2)
        if len(parts) == 3:
            layer, pas, ch = parts
        elif len(parts) == 2:
            layer, (pas, ch) = "", parts
        else:
            layer, pas, ch = "", "Combined", parts[0]
        grouped.setdefault((layer, pas), []).append((ch, plane))
    out: dict[str, dict[str, np.ndarray]] = {}
    for (layer, pas), chans in grouped.items():
        chans.sort(key=lambda c: _ORDER.index(c[0].upper()) if len(c[0]) == 1 and c[0].upper() in _ORDER else len(_ORDER))
        out.setdefault(layer, {})[pas] = np.stack([p for _, p in chans], axis=-1)
    return out


def _attr(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def write_layers(
    path: str | Path,
    layers: dict[str, dict[str, tuple[str, np.ndarray]]],
    metadata: dict[str, tuple[str, bytes]] | None = None,
) -> None:
    """Write ``{layer: {pass: (channel letters, (H, W, C) array in Blender's row order)}}`` as an uncompressed
    FLOAT multilayer OpenEXR, channels named ``<layer>.<pass>.<letter>`` as Blender names them, with the header
    attributes ``metadata`` (``read_metadata``'s form) after the layout's."""
    metadata = metadata or {}
    for name, (kind, value) in metadata.items():
        if name in LAYOUT_ATTRIBUTES:
            raise ExrError(f"header attribute {name!r} is the image's layout, which write_layers writes itself")
        if not name or not kind or "\0" in name + kind or not isinstance(value, bytes):
            raise ExrError(f"header attribute {name!r} of type {kind!r} is not a name, a type and bytes")
    planes: dict[str, np.ndarray] = {}
    for layer, passes in layers.items():
        for pas, (letters, arr) in passes.items():
            if arr.ndim != 3 or arr.shape[2] != len(letters):
                raise ExrError(f"pass {layer}.{pas}: {arr.shape} does not match channels {letters!r}")
            for i, ch in enumerate(letters):
                planes[f"{layer}.{pas}.{ch}" if layer else f"{pas}.{ch}"] = arr[..., i]
    if not planes:
        raise ExrError("nothing to write")
    names = sorted(planes)
    h, w = planes[names[0]].shape
    chlist = b"".join(n.encode() + b"\0" + struct.pack("<iB3xii", 2, 0, 1, 1) for n in names) + b"\0"
    box = struct.pack("<iiii", 0, 0, w - 1, h - 1)
    header = b"".join((
        _attr("channels", "chlist", chlist),
        _attr("compression", "compression", b"\0"),
        _attr("dataWindow", "box2i", box),
        _attr("displayWindow", "box2i", box),
        _attr("lineOrder", "lineOrder", b"\0"),
        _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        _attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
        _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
        *(_attr(name, kind, value) for name, (kind, value) in metadata.items()),
    )) + b"\0"  # fmt: skip
    longest = max(len(n.encode()) for n in (*names, *metadata, *(kind for kind, _ in metadata.values())))
    long_names = 0x400 if longest > 31 else 0
    head = struct.pack("<ii", MAGIC, 2 | long_names) + header
    chunk = 8 + 4 * w * len(names)
    first = len(head) + 8 * h
    offsets = np.arange(h, dtype="<u8") * chunk + first
    body = np.empty((h, chunk), np.uint8)
    body[:, :4] = np.arange(h, dtype="<i4").view(np.uint8).reshape(h, 4)
    body[:, 4:8] = np.frombuffer(struct.pack("<i", chunk - 8), np.uint8)
    for i, n in enumerate(names):  # file row y is Blender's row h - 1 - y
        body[:, 8 + 4 * w * i : 8 + 4 * w * (i + 1)] = planes[n][::-1].astype("<f4").view(np.uint8).reshape(h, 4 * w)
    Path(path).write_bytes(head + offsets.tobytes() + body.tobytes())
