"""Typed, checked access to a decoded message header and its frames (``Reader``), for ``codec``'s decoders.

Every failure is a ``ProtocolError`` naming the field and what it should have been, with the error code the
protocol prescribes (``bad_request`` for fields, ``bad_array`` for array descriptors and frames).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .messages import PROTOCOL_VERSION, ErrorCode, ProtocolError

MISSING: Any = object()


def type_name(value: object) -> str:
    return "nil" if value is None else type(value).__name__


class Reader:
    """Typed access to one header map; records what was read so leftovers can be reported."""

    def __init__(self, header: dict[str, Any], frames: Sequence[Any], where: str, strict: bool, code: ErrorCode) -> None:
        self.h, self.frames, self.where, self.strict, self.code = header, frames, where, strict, code
        self.seen: set[str] = {"v", "op", "id", "ok"}
        self.used_frames: set[int] = set()
        self.request_id: str | None = None
        self.op: str | None = None

    def fail(self, message: str, code: ErrorCode | None = None) -> ProtocolError:
        return ProtocolError(code or self.code, f"{self.where}: {message}", request_id=self.request_id, op=self.op)

    def get(self, name: str, kinds: type | tuple[type, ...], default: Any = MISSING, what: str = "") -> Any:
        self.seen.add(name)
        if name not in self.h or (self.h[name] is None and default is not MISSING):
            if default is MISSING:
                raise self.fail(f"missing field {name!r}" + (f" ({what})" if what else ""))
            return default
        value = self.h[name]
        if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
            raise self.fail(f"field {name!r} must be {what or _kinds(kinds)}, got bool")
        if not isinstance(value, kinds):
            raise self.fail(f"field {name!r} must be {what or _kinds(kinds)}, got {type_name(value)}")
        return value

    def string(self, name: str, default: Any = MISSING, choices: Sequence[str] | None = None) -> Any:
        value = self.get(name, str, default)
        if choices is not None and value is not None and value not in choices:
            raise self.fail(f"field {name!r} is {value!r}; use one of {', '.join(repr(c) for c in choices)}")
        return value

    def number(self, name: str, default: Any = MISSING, low: float = -math.inf, high: float = math.inf) -> float:
        return number(self, name, self.get(name, (int, float), default, "a number"), low, high)

    def array(self, name: str, dtypes: Sequence[str], ndims: Sequence[int], default: Any = MISSING) -> Any:
        desc = self.get(name, dict, default, "an array descriptor {dtype, shape, frame}")
        return None if desc is None else self.array_from(desc, name, dtypes, ndims)

    def array_from(self, desc: Any, name: str, dtypes: Sequence[str], ndims: Sequence[int]) -> np.ndarray:
        if not isinstance(desc, dict):
            raise self.fail(
                f"{name} must be an array descriptor {{dtype, shape, frame}}, got {type_name(desc)}", ErrorCode.BAD_ARRAY
            )
        extra = sorted(set(map(str, desc)) - {"dtype", "shape", "frame"})
        if extra and self.strict:
            raise self.fail(f"{name} descriptor has unknown key(s) {extra}", ErrorCode.BAD_ARRAY)
        dtype = desc.get("dtype")
        if dtype not in dtypes:
            raise self.fail(f"{name} has dtype {dtype!r}; use one of {', '.join(dtypes)}", ErrorCode.BAD_ARRAY)
        shape = desc.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise self.fail(f"{name} shape must be a list of non-negative integers, got {shape!r}", ErrorCode.BAD_ARRAY)
        if len(shape) not in ndims:
            dims = " or ".join(str(n) for n in ndims)
            raise self.fail(f"{name} must have {dims} dimensions, got shape {shape}", ErrorCode.BAD_ARRAY)
        buf = self.frame(desc, name)
        dt = np.dtype(dtype).newbyteorder("<")
        expected = math.prod(shape) * dt.itemsize
        if buf.nbytes != expected:
            raise self.fail(
                f"{name} is {dtype} {shape} = {expected} bytes but frame {desc['frame']} holds {buf.nbytes} bytes",
                ErrorCode.BAD_ARRAY,
            )
        return np.frombuffer(buf, dtype=dt).reshape(shape)

    def blob(self, name: str, default: Any = MISSING) -> bytes | None:
        desc = self.get(name, dict, default, "a frame descriptor {frame}")
        if desc is None:
            return None
        extra = sorted(set(map(str, desc)) - {"frame"})
        if extra and self.strict:
            raise self.fail(f"{name} descriptor has unknown key(s) {extra}", ErrorCode.BAD_ARRAY)
        return bytes(self.frame(desc, name))

    def frame(self, desc: dict[Any, Any], name: str) -> memoryview:
        index = desc.get("frame")
        count = len(self.frames)
        if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index < count:
            have = f"frames 1..{count - 1}" if count > 1 else "no frames after the header"
            raise self.fail(f"{name} refers to frame {index!r} but the message has {have}", ErrorCode.BAD_ARRAY)
        if index in self.used_frames:
            raise self.fail(f"{name} refers to frame {index}, which another descriptor already uses", ErrorCode.BAD_ARRAY)
        self.used_frames.add(index)
        return memoryview(self.frames[index]).cast("B")

    def finish(self) -> None:
        if not self.strict:
            return
        extra = sorted(str(k) for k in self.h if k not in self.seen)
        if extra:
            raise self.fail(f"unknown field(s) {extra}; this backend speaks protocol {PROTOCOL_VERSION}")
        unused = sorted(set(range(1, len(self.frames))) - self.used_frames)
        if unused:
            raise self.fail(f"frame(s) {unused} are not referenced by any descriptor", ErrorCode.BAD_ARRAY)


def _kinds(kinds: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list", dict: "a map"}
    seq = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names.get(k, k.__name__) for k in seq)


def number(r: Reader, name: str, value: Any, low: float, high: float) -> float:
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise r.fail(f"{name} must be a finite number in [{low:g}, {high:g}], got {value}")
    return value
