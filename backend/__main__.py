"""``python -m backend`` / ``adain-backend``: run the stylization server until SIGINT, SIGTERM or ``shutdown``."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

from backend.config import KeygenRequest, parse_args
from backend.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_args(argv)
        if isinstance(config, KeygenRequest):
            from backend.security import generate_keys

            public, secret = generate_keys(config.directory, config.name)
            print(f"wrote {public} (public: give it to the other side) and {secret} (secret: keep it private)")
            return 0
    except ConfigError as e:
        print(f"adain-backend: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level_number, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from backend.server import Server  # torch loads here, after the command line is known to be good
    from backend.service import make_service

    server = Server(config, make_service(config))

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
