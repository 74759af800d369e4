"""The declared message fields (adain_wire.schema) cover every message exactly: a field added to a message class
without its declaration, or declared twice, fails here before any round trip does."""

from __future__ import annotations

import dataclasses
import typing

import msgpack
import numpy as np
import pytest

from adain_wire import messages
from adain_wire.fields import ArrayField, Field, MessageSpec, Writer
from adain_wire.reader import Reader
from adain_wire.schema import REPLY_SPECS, REPLY_TYPES, REQUEST_SPECS

REPLY_CLASSES = [c for c in typing.get_args(messages.Reply) if c is not messages.ErrorReply]


def test_every_request_and_reply_has_a_declaration():
    assert set(REQUEST_SPECS) == set(messages.REQUEST_TYPES.values())
    assert set(REPLY_SPECS) == set(REPLY_CLASSES)
    assert {op: cls.OP for op, cls in REPLY_TYPES.items()} == {op: op for op in messages.OPS}


@pytest.mark.parametrize("cls", [*REQUEST_SPECS, *REPLY_SPECS], ids=lambda c: c.__name__)
def test_each_attribute_is_declared_once(cls):
    """(The declarations are in header order, which need not be the attributes' order.)"""
    declared = [f.name for f in {**REQUEST_SPECS, **REPLY_SPECS}[cls].fields]
    assert sorted(declared) == sorted(f.name for f in dataclasses.fields(cls) if f.name != "id")


@dataclasses.dataclass(frozen=True)
class Probe:
    OP: typing.ClassVar[str] = "probe"
    id: str
    gain: float = 1.0
    mask: np.ndarray | None = None


def test_a_declared_field_is_encoded_and_decoded_from_its_declaration_alone():
    """What adding a field takes: its attribute and one declaration; the codec needs no code of its own for it."""
    spec = MessageSpec(
        (Field("gain", (int, float), default=1.0), ArrayField("mask", default=None, dtypes=("uint8",), ndims=(2,)))
    )
    w = Writer()
    frames = w.frames(spec.encode(Probe("p", 0.5, np.eye(3, dtype=np.uint8)), w, {"v": 1, "op": "probe", "id": "p"}))
    header = msgpack.unpackb(frames[0])
    assert header["gain"] == 0.5 and header["mask"] == {"dtype": "uint8", "shape": [3, 3], "frame": 1}
    r = Reader(header, [bytes(f) for f in frames], "probe", strict=True, code=messages.ErrorCode.BAD_REQUEST)
    back = Probe("p", **spec.decode(r))
    r.finish()
    assert back.gain == 0.5 and back.mask is not None and (back.mask == np.eye(3, dtype=np.uint8)).all()
