"""The backend's configuration: defaults, validation with messages, loopback rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.config import Config, CurveConfig, KeygenRequest, is_loopback_address, is_loopback_endpoint, parse_args
from backend.errors import ConfigError


def test_defaults_listen_on_loopback_5555():
    config = parse_args([])
    assert isinstance(config, Config)
    assert (config.bind, config.device, config.precision, config.curve) == ("tcp://127.0.0.1:5555", "auto", "auto", None)
    assert config.frame_limit == 4096 * 4096 * 16 + (1 << 20)


def test_options_are_parsed():
    args = "--bind ipc:///tmp/x.sock --device cuda:1 --precision bf16 --max-pixels 1000 --cache-size 3 --log-level DEBUG"
    config = parse_args([*args.split(), "--max-message-bytes", "5000", "--max-queue", "2"])
    assert isinstance(config, Config)
    assert (config.device, config.precision, config.max_pixels, config.cache_size) == ("cuda:1", "bf16", 1000, 3)
    assert (config.log_level, config.frame_limit, config.max_queue) == ("debug", 5000, 2)
    assert config.compile == "off" and parse_args(["--compile", "default"]).compile == "default"  # type: ignore[union-attr]
    keygen = parse_args(["--generate-keys", "/tmp/k", "--key-name", "studio"])
    assert keygen == KeygenRequest(Path("/tmp/k"), "studio")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--device", "gpu"], "use auto, cpu, cuda or cuda:N"),
        (["--precision", "fp8"], "fp8"),
        (["--compile", "fast"], "invalid command line"),
        (["--device", "cpu", "--compile", "reduce-overhead"], "needs --device cuda"),
        (["--log-level", "loud"], "loud"),
        (["--max-pixels", "10"], "at least 256"),
        (["--cache-size", "0"], "--cache-size must be at least 1"),
        (["--bind", "http://localhost:80"], "use tcp://HOST:PORT"),
        (["--bind", "tcp://127.0.0.1"], "needs a host and a port"),
        (["--bind", "tcp://127.0.0.1:99999"], "needs a host and a port"),
        (["--decoder", "/nonexistent/decoder.safetensors"], "does not exist"),
        (["--curve-secret", "/x"], "go together"),
        (["--curve-secret", "/nonexistent", "--curve-clients", "/tmp"], "--curve-secret /nonexistent does not exist"),
        (["--bind", "tcp://192.168.1.5:5555"], "accepts connections from other machines"),
    ],
)
def test_invalid_options_say_what_to_do(args, words):
    with pytest.raises(ConfigError) as info:
        parse_args(args)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [("tcp://127.0.0.1:5555", True), ("tcp://127.1.2.3:*", True), ("tcp://localhost:1", True), ("tcp://[::1]:5555", True),
     ("ipc:///tmp/a", True), ("inproc://a", True), ("tcp://*:5555", False), ("tcp://0.0.0.0:5555", False),
     ("tcp://eth0:5555", False), ("tcp://10.0.0.2:5555", False)],
)  # fmt: skip
def test_loopback_endpoints(endpoint, loopback):
    assert is_loopback_endpoint(endpoint) is loopback


def test_loopback_addresses():
    assert is_loopback_address("127.0.0.1") and is_loopback_address("::1") and is_loopback_address("::ffff:127.0.0.1")
    assert not is_loopback_address("192.0.2.2") and not is_loopback_address("") and not is_loopback_address("localhost:0:0")


def test_curve_makes_a_public_bind_acceptable(tmp_path):
    (tmp_path / "s.key_secret").write_text("x")
    config = Config(bind="tcp://*:5555", curve=CurveConfig(tmp_path / "s.key_secret", tmp_path))
    assert config.curve is not None
