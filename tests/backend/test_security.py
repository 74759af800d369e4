"""CurveZMQ with ZAP: a known client key is served, an unknown one (or none) is refused; non-loopback binds
need keys; shutdown is accepted from loopback peers only."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zmq

from adain_wire.client import AUTH, TIMEOUT, Client, ClientCurve, ClientError
from adain_wire.protocol import ErrorCode
from backend.config import Config, CurveConfig
from backend.errors import ConfigError
from backend.security import CurveGuard, generate_keys, load_server_keys


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Server, an allowed client and a stranger, each with a .key / .key_secret pair; only the allowed
    client's public key is in the allowed folder."""
    generate_keys(tmp_path / "server", "server")
    generate_keys(tmp_path / "client", "client")
    generate_keys(tmp_path / "stranger", "stranger")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "client.key").write_bytes((tmp_path / "client" / "client.key").read_bytes())
    return {
        "server_secret": tmp_path / "server" / "server.key_secret",
        "server_public": tmp_path / "server" / "server.key",
        "client": tmp_path / "client" / "client.key_secret",
        "stranger": tmp_path / "stranger" / "stranger.key_secret",
        "allowed": allowed,
    }


def curve_server(serve, keys, bind: str = "tcp://127.0.0.1:*"):
    return serve(bind, curve=CurveConfig(keys["server_secret"], keys["allowed"]))


def test_a_known_client_key_is_served(serve, keys):
    server = curve_server(serve, keys)
    with Client(server.endpoint, curve=ClientCurve.from_files(keys["server_public"], keys["client"])) as client:
        sid = client.put_style(np.full((24, 24, 3), 0.5, np.float32), size=0)
        assert client.stylize(np.zeros((24, 24, 3), np.float32), sid).combined is not None


def test_an_unknown_client_key_is_refused_with_a_message(serve, keys):
    server = curve_server(serve, keys)
    client = Client(server.endpoint, timeout=3, curve=ClientCurve.from_files(keys["server_public"], keys["stranger"]))
    try:
        with pytest.raises(ClientError) as info:
            client.connect()
        assert info.value.code == AUTH and "--curve-clients" in info.value.message
    finally:
        client.close()


def test_a_client_without_curve_gets_nothing(serve, keys):
    server = curve_server(serve, keys)
    client = Client(server.endpoint, timeout=1)
    try:
        with pytest.raises(ClientError) as info:
            client.connect()
        assert info.value.code == TIMEOUT
    finally:
        client.close()


def non_loopback_ipv4() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else str(address)


def test_non_loopback_bind_serves_curve_clients_but_refuses_their_shutdown(serve, keys):
    address = non_loopback_ipv4()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    server = curve_server(serve, keys, f"tcp://{address}:*")
    with Client(server.endpoint, curve=ClientCurve.from_files(keys["server_public"], keys["client"])) as client:
        with pytest.raises(ClientError) as info:
            client.shutdown()
        assert info.value.code == ErrorCode.FORBIDDEN and "this machine" in info.value.message
        assert client.release().styles_dropped == 0  # still serving


def test_non_loopback_bind_without_keys_refuses_to_start():
    with pytest.raises(ConfigError) as info:
        Config(bind="tcp://0.0.0.0:5599")
    assert "--curve-secret" in str(info.value) and "--curve-clients" in str(info.value)
    done = subprocess.run(
        [sys.executable, "-m", "backend", "--bind", "tcp://*:5599"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.startswith("adain-backend: --bind tcp://*:5599 accepts connections from other machines")


def test_generate_keys_from_the_command_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "backend", "--generate-keys", str(tmp_path), "--key-name", "studio"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    public, secret = load_server_keys(tmp_path / "studio.key_secret")
    assert len(public) == len(secret) == 40 and (tmp_path / "studio.key").read_bytes().count(public) == 1


def test_key_files_are_checked(keys, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_server_keys(keys["server_public"])
    assert "holds only a public key" in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError) as info:
        CurveGuard(zmq.Context.instance(), CurveConfig(keys["server_secret"], empty))
    assert "no client public keys" in str(info.value)
    with pytest.raises(ClientError) as cinfo:
        ClientCurve.from_files(keys["server_public"], keys["server_public"])
    assert cinfo.value.code == AUTH
