"""The client's one exception, ``ClientError``, and its codes beyond the protocol's ``ErrorCode`` values."""

from __future__ import annotations

# ClientError codes beyond the protocol's ErrorCode values
TIMEOUT = "timeout"  # the backend did not answer
AUTH = "auth"  # the CURVE handshake failed
VERSION = "version"  # the backend speaks another protocol version
CLOSED = "closed"  # the client was closed with the request outstanding
BROKEN = "broken"  # the client's I/O thread died: this client is unusable, make a new one


class ClientError(Exception):
    """Anything that went wrong talking to the backend. ``code``: a protocol ErrorCode value (the backend's
    answer) or one of TIMEOUT, AUTH, VERSION, CLOSED, BROKEN; the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
