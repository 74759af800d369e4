"""CurveZMQ keys of a client: the backend's public key and this client's key pair."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq.auth

from .errors import AUTH, ClientError


@dataclass(frozen=True)
class ClientCurve:
    """CurveZMQ keys (Z85): the backend's public key and this client's key pair."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def from_files(cls, server_public_file: str | Path, client_secret_file: str | Path) -> ClientCurve:
        """From the backend's ``server.key`` and this client's ``*.key_secret`` (``adain-backend --generate-keys``)."""
        try:
            server_public, _ = zmq.auth.load_certificate(server_public_file)
            public, secret = zmq.auth.load_certificate(client_secret_file)
        except (OSError, ValueError) as e:
            raise ClientError(AUTH, f"cannot read the CURVE keys: {e}") from e
        if not secret:
            raise ClientError(AUTH, f"{client_secret_file} holds no secret key: pass the client's .key_secret file")
        return cls(server_public, public, secret)
