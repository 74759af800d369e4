"""Declared message fields: how one header key of a message is written and read. ``schema`` declares every message's
fields with these; ``codec`` encodes and decodes any message by running over its declaration.

A field is named like the message's attribute and its header key. Decoding reads it through ``Reader`` (which checks
its type and reports any error with the code the protocol prescribes), then its ``check`` turns the wire value into
the attribute's value, seeing the fields read before it for checks across fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from .messages import Frames, wire_array
from .reader import MISSING, Reader

Check = Callable[[Reader, Any, dict[str, Any]], Any]  # (reader, wire value, fields read so far) -> the attribute's value


class Writer:
    """Collects a message's frames: the arrays and blobs its header describes, then the header itself in front."""

    def __init__(self) -> None:
        self.buffers: Frames = []

    def array(self, arr: np.ndarray) -> dict[str, Any]:
        a = wire_array(arr)
        self.buffers.append(a.reshape(-1).view(np.uint8).data)
        return {"dtype": a.dtype.name, "shape": list(a.shape), "frame": len(self.buffers)}

    def blob(self, data: bytes) -> dict[str, Any]:
        self.buffers.append(data)
        return {"frame": len(self.buffers)}

    def frames(self, header: dict[str, Any]) -> Frames:
        packed: bytes = msgpack.packb(header, use_bin_type=True)
        return [packed, *self.buffers]


@dataclass(frozen=True)
class Field:
    """One header key holding a plain msgpack value (string, integer, boolean, list or map).

    Args:
        name: the header key and the message's attribute.
        kinds: the Python types the decoded value may have (bool only where listed).
        default: what an absent key (or nil, where a default is given) decodes to; MISSING: the key is required.
        what: how an error describes the expected value ("" : from ``kinds``).
        choices: the strings allowed (None: any).
        to_wire: the attribute's value -> the msgpack value (None: as it is).
        check: the decoded value -> the attribute's value, raising ``reader.fail`` when it is not allowed.
        write_none: a None attribute is written as nil (False: the key is left out).
        only_if: the key is written only for messages where this holds.
    """

    name: str
    kinds: type | tuple[type, ...] = object
    default: Any = MISSING
    what: str = ""
    choices: Sequence[str] | None = None
    to_wire: Callable[[Any], Any] | None = None
    check: Check | None = None
    write_none: bool = True
    only_if: Callable[[Any], bool] | None = None

    def encode(self, w: Writer, value: Any) -> Any:
        return value if self.to_wire is None else self.to_wire(value)

    def read(self, r: Reader) -> Any:
        value = r.get(self.name, self.kinds, self.default, self.what)
        if self.choices is not None and value is not None and value not in self.choices:
            raise r.fail(f"field {self.name!r} is {value!r}; use one of {', '.join(repr(c) for c in self.choices)}")
        return value

    def decode(self, r: Reader, before: dict[str, Any]) -> Any:
        value = self.read(r)
        return value if self.check is None else self.check(r, value, before)


@dataclass(frozen=True)
class ArrayField(Field):
    """An array, sent as a frame of its own and described in the header by ``{dtype, shape, frame}``."""

    dtypes: Sequence[str] = ()
    ndims: Sequence[int] = ()

    def encode(self, w: Writer, value: Any) -> Any:
        return w.array(value)

    def read(self, r: Reader) -> Any:
        return r.array(self.name, self.dtypes, self.ndims, self.default)


@dataclass(frozen=True)
class ArrayListField(ArrayField):
    """A list of arrays (a tuple on the message), each a frame of its own."""

    def encode(self, w: Writer, value: Any) -> Any:
        return [w.array(a) for a in value]

    def read(self, r: Reader) -> Any:
        descs = r.get(self.name, list, self.default)
        return tuple(r.array_from(d, f"{self.name}[{i}]", self.dtypes, self.ndims) for i, d in enumerate(descs))


@dataclass(frozen=True)
class BlobField(Field):
    """Opaque bytes (an encoded image), sent as a frame of its own and described in the header by ``{frame}``."""

    def encode(self, w: Writer, value: Any) -> Any:
        return w.blob(value)

    def read(self, r: Reader) -> Any:
        return r.blob(self.name, self.default)


@dataclass(frozen=True)
class MessageSpec:
    """A message's declared fields, in header order, and what must hold of a message before it is encoded."""

    fields: tuple[Field, ...]
    encodable: Callable[[Any], None] | None = None  # raises ProtocolError for a message that cannot be sent

    def encode(self, msg: Any, w: Writer, header: dict[str, Any]) -> dict[str, Any]:
        """Add the message's fields to ``header`` (their arrays and blobs to ``w``)."""
        if self.encodable is not None:
            self.encodable(msg)
        for f in self.fields:
            if f.only_if is not None and not f.only_if(msg):
                continue
            value = getattr(msg, f.name)
            if value is None:
                if f.write_none:
                    header[f.name] = None
                continue
            header[f.name] = f.encode(w, value)
        return header

    def decode(self, r: Reader) -> dict[str, Any]:
        """The message's attributes (but its id) read from the header, in declaration order."""
        values: dict[str, Any] = {}
        for f in self.fields:
            values[f.name] = f.decode(r, values)
        return values
