"""What the add-on remembers between renders in one Blender session, in one object (no bpy).

``SESSION`` is the one ``RenderSession``: the render hook, *Restyle Last Render*, the panel and the engine watch
all read and write it, and unregistering the add-on resets it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import temporal
from .frames import FrameCancelledError, StyleIds

if TYPE_CHECKING:
    from .colour import View


@dataclass
class RenderStatus:
    """What the last frames did, for the panel and for tests."""

    frame: int | None = None
    ok: bool = True
    message: str = ""
    failed_frames: set[int] = field(default_factory=set)
    stylized_frames: list[int] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class RenderedLayer:
    """One view layer of the last render AdaIN saw, kept so that "Restyle Last Render" can stylize it again
    without rendering. Arrays are in Blender's row order (bottom row first)."""

    scene: str
    frame: int
    layer: str
    view: View
    combined: np.ndarray  # (H, W, 4) scene-linear, as rendered
    display: np.ndarray  # (H, W, 4) display-referred, what the network is given
    crypto: dict[str, list[np.ndarray]]  # "Object" / "Material" -> Cryptomatte passes (ranks that cover nothing dropped)

    @property
    def size(self) -> tuple[int, int]:
        return self.combined.shape[1], self.combined.shape[0]


class RenderSession:
    """The session's render state: the status of the last frames, the layers of the last render, the previous
    frame for temporal smoothing, and the backend connection's lock with the style ids that connection holds."""

    def __init__(self) -> None:
        self.status = RenderStatus()
        self.last_render: list[RenderedLayer] = []  # the layers of the last frame rendered with AdaIN on
        self.smoother = temporal.Smoother()  # the previous frame of an animation render
        self._ids = StyleIds()
        self._ids_client: object | None = None
        self._client_lock = threading.Lock()  # one user of the backend connection at a time: a render or a restyle
        self.seeding = False  # frames rendered before an animation's first one, only to seed temporal smoothing
        self.render_break = threading.Event()  # Esc during a render job of an engine without test_break (escape_watch)

    def ids_for(self, client: object) -> StyleIds:
        """The style ids known to ``client`` (forgotten when the connection is a new one). Hold ``client_lock``."""
        if client is not self._ids_client:
            self._ids.clear()
            self._ids_client = client
        return self._ids

    @contextmanager
    def client_lock(self, cancelled: Callable[[], bool] = lambda: False) -> Iterator[None]:
        """Hold the backend connection (ZeroMQ sockets are not thread-safe); waiting for it can be cancelled."""
        while not self._client_lock.acquire(timeout=0.1):
            if cancelled():
                raise FrameCancelledError("stylization cancelled while another request used the backend")
        try:
            yield
        finally:
            self._client_lock.release()

    def new_render(self) -> None:
        """A render job starts: forget which frames failed or were stylized, and the previous frame."""
        self.status.failed_frames.clear()
        self.status.stylized_frames.clear()
        self.smoother.reset()
        self.render_break.clear()

    def reset(self) -> None:
        """The add-on is unregistered: forget everything, the connection's style ids too."""
        self.status = RenderStatus()
        self.last_render.clear()
        self.smoother.reset()
        self._ids.clear()
        self._ids_client = None


SESSION = RenderSession()
