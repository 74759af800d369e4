"""One request as the client's I/O thread tracks it across resends: ``Call`` and its ``CallState`` (no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .pending import Pending
from .protocol import Request, Smooth, StylePut, Stylize

MAX_STYLE_RETRIES = 3  # ``unknown_style`` answers a call survives (its styles put again each time) before it fails


class CallState(Enum):
    """Where a request is, as the I/O thread sees it."""

    WAITING = "waiting"  # to be sent when the window allows, and not before its retry_at (a busy back-off)
    ON_WIRE = "on_wire"  # sent (sent_seq orders it among the sends), its reply not yet in
    PARKED = "parked"  # refused with shutting_down: sent again once a backend answers a heartbeat


@dataclass(eq=False)
class Call:
    """One request, as the I/O thread tracks it across resends.

    Each send is an attempt with a fresh wire id (``ID``, then ``ID~1``, ``ID~2``, ...), so resent copies never
    collide on the backend; ``wire_ids`` lists them all, and a reply to any of them completes the call."""

    base_id: str
    msg: Request
    pending: Pending[Any] | None  # None: internal (heartbeat, style re-put, cancel)
    styles: tuple[str, ...] = ()  # the style ids a Stylize uses: put again before a resend when the backend lacks them
    attempt: int = -1
    wire_ids: list[str] = field(default_factory=list)
    state: CallState = CallState.WAITING
    sent_seq: int = -1  # the order of its last send (-1: never sent, or its last send failed)
    retry_at: float = 0.0  # while WAITING: not sent before this (monotonic seconds)
    cancelled: bool = False
    style_retries: int = 0
    busy_retries: int = 0

    @property
    def model_work(self) -> bool:
        """A request the backend queues for the model (counted against the window), not one it answers at once."""
        return isinstance(self.msg, (StylePut, Stylize, Smooth))

    @property
    def wire_id(self) -> str:
        """The id of the latest attempt ("" before the first send)."""
        return self.wire_ids[-1] if self.wire_ids else ""

    @property
    def on_wire(self) -> bool:
        return self.state is CallState.ON_WIRE

    def next_wire_id(self) -> str:
        """Start a new attempt and return its wire id."""
        self.attempt += 1
        wire_id = self.base_id if self.attempt == 0 else f"{self.base_id}~{self.attempt}"
        self.wire_ids.append(wire_id)
        return wire_id

    def sent_before(self, other: Call) -> bool:
        """Both are on the wire and this one was sent first."""
        return self.on_wire and other.on_wire and self.sent_seq < other.sent_seq
