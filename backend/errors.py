"""The backend's one exception family: every message says what was wrong and what to do about it."""

from __future__ import annotations

from adain_wire.protocol import ErrorCode


class BackendError(Exception):
    """A request the backend cannot serve; ``code`` is the wire error code its reply carries.

    ``style`` names the style for ``unknown_style`` so a client can put it again.
    """

    def __init__(self, code: ErrorCode, message: str, *, style: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.style = style


class ConfigError(BackendError):
    """The backend cannot start with this configuration (bad option, missing keys, port in use...)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INTERNAL, message)
