"""CurveZMQ encryption and client authentication (ZAP through ``zmq.auth``) for the backend's socket.

A non-loopback bind is refused by ``Config`` unless a server secret key and a folder of allowed client
public keys are given; here those keys are loaded and a ZAP authenticator thread admits exactly the
clients whose public key is in that folder (others fail the CURVE handshake and never reach the server).
"""

from __future__ import annotations

import logging
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from backend.config import CurveConfig
from backend.errors import ConfigError

log = logging.getLogger("backend.security")
ZAP_DOMAIN = "adain"


def load_server_keys(secret_file: Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``*.key_secret`` certificate file, or ConfigError saying what is wrong."""
    try:
        public, secret = zmq.auth.load_certificate(secret_file)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the server key {secret_file}: {e}") from e
    if not secret:
        raise ConfigError(
            f"{secret_file} holds only a public key; pass the secret one (the .key_secret file from --generate-keys)"
        )
    return public, secret


def generate_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (public, give it to the other side) and NAME.key_secret (keep it) into ``directory``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        public, secret = zmq.auth.create_certificates(directory, name)
    except OSError as e:
        raise ConfigError(f"cannot write keys into {directory}: {e}") from e
    return Path(public), Path(secret)


class CurveGuard:
    """Runs the ZAP authenticator and makes sockets CURVE servers. Use as a context manager."""

    def __init__(self, context: zmq.Context, curve: CurveConfig) -> None:
        self.context = context
        self.curve = curve
        self.public, self.secret = load_server_keys(curve.secret_file)
        allowed = sorted(curve.clients_dir.glob("*.key"))
        if not allowed:
            raise ConfigError(
                f"--curve-clients {curve.clients_dir} holds no client public keys (*.key): no client could connect; "
                "copy each client's .key file there"
            )
        self.allowed = allowed
        self._auth: ThreadAuthenticator | None = None

    def __enter__(self) -> CurveGuard:
        self._auth = ThreadAuthenticator(self.context, log=logging.getLogger("backend.zap"))
        self._auth.start()
        self._auth.configure_curve(domain=ZAP_DOMAIN, location=str(self.curve.clients_dir))
        log.info("CURVE on: %d allowed client key(s) from %s", len(self.allowed), self.curve.clients_dir)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def secure(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a CURVE server in our ZAP domain (before it binds)."""
        socket.zap_domain = ZAP_DOMAIN.encode()
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_server = True
