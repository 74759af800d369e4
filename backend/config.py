"""The backend's configuration: parsed from the command line and validated once, then read-only."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adain_wire.options import COMPILE_MODES, DEFAULT_ENDPOINT, MIN_SIDE, PRECISIONS
from backend.errors import ConfigError

DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
LOG_LEVELS = ("debug", "info", "warning", "error")
HEADER_ALLOWANCE = 1 << 20  # bytes on top of the largest array frame


@dataclass(frozen=True)
class CurveConfig:
    """CurveZMQ: the server's secret certificate and the folder of client public certificates allowed in.

    Both are files as written by ``zmq.auth.create_certificates`` (``adain-backend --generate-keys``).
    """

    secret_file: Path
    clients_dir: Path


@dataclass(frozen=True)
class Config:
    bind: str = DEFAULT_ENDPOINT
    device: str = "auto"
    precision: str = "auto"
    compile: str = "off"  # torch.compile mode for the networks; "reduce-overhead" adds CUDA graphs
    decoder: Path | None = None  # None: the shipped decoder
    encoder: Path | None = None
    max_pixels: int = 4096 * 4096
    max_message_bytes: int = 0  # 0: derived from max_pixels (an RGBA float32 frame plus 1 MiB)
    max_regions: int = 16
    max_styles_per_region: int = 8
    max_queue: int = 32
    max_inflight: int = 4  # model requests one connection may have queued or running
    cache_size: int = 64
    log_level: str = "info"
    curve: CurveConfig | None = None
    shutdown_grace_s: float = 30.0  # how long a shutdown waits for the running request
    identity: bool = False  # serve frames back unchanged, loading no model (tests of colour and transport)
    owner_pid: int | None = None  # shut down once this process is gone (the Blender that started us); None: never

    def __post_init__(self) -> None:
        check_endpoint(self.bind)
        if not DEVICE_RE.match(self.device):
            raise ConfigError(f"--device {self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"--compile {self.compile!r}: use one of {', '.join(COMPILE_MODES)}")
        if self.compile == "reduce-overhead" and self.device == "cpu":
            raise ConfigError("--compile reduce-overhead records CUDA graphs and needs --device cuda; on the CPU use "
                              "--compile default or off")  # fmt: skip
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level {self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        if self.max_pixels < MIN_SIDE * MIN_SIDE:
            smallest = f"{MIN_SIDE * MIN_SIDE} (a {MIN_SIDE}x{MIN_SIDE} frame)"
            raise ConfigError(f"--max-pixels {self.max_pixels}: must be at least {smallest}")
        if self.max_message_bytes < 0:
            raise ConfigError("--max-message-bytes must be >= 0 (0: derived from --max-pixels)")
        for name in ("max_regions", "max_styles_per_region", "max_queue", "max_inflight", "cache_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for path, flag in ((self.decoder, "--decoder"), (self.encoder, "--encoder")):
            if path is not None and not path.is_file():
                raise ConfigError(f"{flag} {path} does not exist")
        if self.owner_pid is not None and self.owner_pid <= 0:
            raise ConfigError(f"--owner-pid {self.owner_pid}: must be a process id (a positive number)")
        if self.curve is None and not is_loopback_endpoint(self.bind):
            raise ConfigError(
                f"--bind {self.bind} accepts connections from other machines, which needs encryption and client "
                "authentication: pass --curve-secret SERVER.key_secret and --curve-clients DIR (the allowed clients' "
                "public keys; create keys with `adain-backend --generate-keys DIR`), or bind to tcp://127.0.0.1:PORT"
            )
        if self.curve is not None:
            if not self.curve.secret_file.is_file():
                raise ConfigError(f"--curve-secret {self.curve.secret_file} does not exist")
            if not self.curve.clients_dir.is_dir():
                raise ConfigError(f"--curve-clients {self.curve.clients_dir} is not a directory of client public keys")

    @property
    def frame_limit(self) -> int:
        """ZMQ_MAXMSGSIZE: the largest frame a peer may send before it is disconnected."""
        return self.max_message_bytes or self.max_pixels * 16 + HEADER_ALLOWANCE

    @property
    def log_level_number(self) -> int:
        return int(getattr(logging, self.log_level.upper()))


def check_endpoint(endpoint: str) -> None:
    """Accept tcp://HOST:PORT (PORT may be * for any free one), ipc://PATH and inproc://NAME."""
    transport, sep, rest = endpoint.partition("://")
    if not sep or not rest or transport not in ("tcp", "ipc", "inproc"):
        raise ConfigError(f"--bind {endpoint!r}: use tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    if transport == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not host or not (port == "*" or (port.isdigit() and 0 < int(port) < 65536)):
            raise ConfigError(f"--bind {endpoint!r}: a tcp endpoint needs a host and a port, e.g. {DEFAULT_ENDPOINT}")


def is_loopback_endpoint(endpoint: str) -> bool:
    """True when only this machine can connect: ipc, inproc, or tcp on a loopback address."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    host = rest.rpartition(":")[0].strip("[]")
    return host == "localhost" or is_loopback_address(host)


def is_loopback_address(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adain-backend", description="AdaIN stylization server (ZeroMQ, protocol v1).")
    p.add_argument("--bind", default=DEFAULT_ENDPOINT, help=f"endpoint to listen on (default {DEFAULT_ENDPOINT})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--precision", default="auto", help=f"{', '.join(PRECISIONS)} (default auto)")
    p.add_argument("--compile", default="off", choices=COMPILE_MODES,
                   help="torch.compile the networks (default off): 'default', 'max-autotune', or 'reduce-overhead' (adds "
                        "CUDA graphs, GPU only); the first frame of each size compiles for tens of seconds")  # fmt: skip
    p.add_argument("--decoder", type=Path, help="decoder weights (default: the shipped decoder)")
    p.add_argument("--encoder", type=Path, help="encoder weights matching --decoder (e.g. imported ones)")
    p.add_argument("--max-pixels", type=int, default=Config.max_pixels, help="largest frame or style, in pixels (H*W)")
    p.add_argument("--max-message-bytes", type=int, default=0, help="largest frame a client may send (0: derived)")
    p.add_argument(
        "--max-queue", type=int, default=Config.max_queue, help="queued requests, all connections together, before 'busy'"
    )
    p.add_argument("--max-inflight", type=int, default=Config.max_inflight,
                   help="model requests one connection may have queued or running before 'busy' (default 4); "
                   "stated in hello, and the reference client keeps within it")  # fmt: skip
    p.add_argument("--cache-size", type=int, default=Config.cache_size, help="styles kept (least recently used go)")
    p.add_argument("--curve-secret", type=Path, help="server secret key file (CurveZMQ); needed for non-loopback binds")
    p.add_argument("--curve-clients", type=Path, help="folder of allowed client public key files")
    p.add_argument("--identity", action="store_true",
                   help="test mode: return every frame unchanged and load no model (checks colour round trips)")  # fmt: skip
    p.add_argument("--owner-pid", type=int, metavar="PID",
                   help="shut down (as on SIGTERM) within 5 s once process PID is gone: killed, crashed or exited; the "
                        "add-on passes its Blender's pid. Without it the backend runs until stopped")  # fmt: skip
    p.add_argument("--log-level", default="info", help="debug, info, warning or error (default info)")
    p.add_argument("--generate-keys", type=Path, metavar="DIR", help="write a key pair into DIR (see --key-name) and exit")
    p.add_argument("--key-name", default="server", help="file name stem for --generate-keys (default server)")
    return p


@dataclass(frozen=True)
class KeygenRequest:
    directory: Path
    name: str


def parse_args(argv: Sequence[str] | None = None) -> Config | KeygenRequest:
    """The command line as a validated Config (or a key generation request). Raises ConfigError."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse already printed usage; --help exits 0
        if e.code == 0:
            raise
        raise ConfigError("invalid command line (see the usage above)") from e
    if args.generate_keys is not None:
        return KeygenRequest(args.generate_keys, args.key_name)
    if (args.curve_secret is None) != (args.curve_clients is None):
        raise ConfigError("--curve-secret and --curve-clients go together: pass both or neither")
    curve = CurveConfig(args.curve_secret, args.curve_clients) if args.curve_secret is not None else None
    return Config(
        bind=args.bind,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        decoder=args.decoder,
        encoder=args.encoder,
        max_pixels=args.max_pixels,
        max_message_bytes=args.max_message_bytes,
        max_queue=args.max_queue,
        max_inflight=args.max_inflight,
        cache_size=args.cache_size,
        log_level=args.log_level.lower(),
        curve=curve,
        identity=args.identity,
        owner_pid=args.owner_pid,
    )
