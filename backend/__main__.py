"""``python -m backend`` / ``adain-backend``: run the stylization server until SIGINT, SIGTERM, ``shutdown``, or (with
``--owner-pid``) until the process that started it is gone."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from backend import owner as owner_watch
from backend.config import KeygenRequest, parse_args
from backend.errors import ConfigError

if TYPE_CHECKING:
    from backend.server import Server


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_args(argv)
        if isinstance(config, KeygenRequest):
            from backend.security import generate_keys

            public, secret = generate_keys(config.directory, config.name)
            print(f"wrote {public} (public: give it to the other side) and {secret} (secret: keep it private)")
            return 0
        owner = owner_watch.identify(config.owner_pid) if config.owner_pid is not None else None
    except ConfigError as e:
        print(f"adain-backend: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level_number, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Watched from before torch loads: an owner that dies while we start up is noticed too.
    owner_gone = threading.Event()
    servers: list[Server] = []

    def on_owner_gone() -> None:
        owner_gone.set()
        for s in list(servers):
            s.stop()

    if owner is not None:
        owner_watch.watch(owner, on_owner_gone)

    from backend.server import Server  # torch loads here, after the command line is known to be good
    from backend.service import make_service

    server = Server(config, make_service(config))
    servers.append(server)
    if owner_gone.is_set():  # it went while torch loaded
        server.stop()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("backend").info("%s received: shutting down", signal.Signals(signum).name)
        server.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server.run()
    except ConfigError as e:
        print(f"adain-backend: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
