"""``BackendManager``: a real ``python -m backend --identity`` subprocess started, used, released and stopped; start
failures (no such program, a program that exits at once) and a remote endpoint nobody listens on, each
reported as a BackendUnavailableError that says what went wrong."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from adain_wire.client import Client
from adain_wire.manager import BackendManager, BackendSettings, BackendUnavailableError, default_command

REPO = Path(__file__).resolve().parents[2]
IDENTITY = (sys.executable, "-m", "backend", "--identity", "--log-level", "debug")


@pytest.fixture(autouse=True)
def importable_backend(monkeypatch):
    """The subprocess inherits the environment: make ``-m backend`` find this checkout wherever pytest runs."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))


@pytest.fixture
def backends():
    """Backends made by a test; stopped at teardown (idempotent) so no subprocess outlives a failing test."""
    made: list[BackendManager] = []

    def make(**settings) -> BackendManager:
        b = BackendManager(BackendSettings(**settings))
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop(timeout=5)


def test_local_backend_starts_serves_releases_and_stops(backends, tcp_port, tmp_path):
    endpoint = f"tcp://127.0.0.1:{tcp_port}"
    log = tmp_path / "logs" / "backend.log"  # the folder does not exist yet
    backend = backends(endpoint=endpoint, command=IDENTITY, log_file=log, start_timeout=60)
    assert backend.describe() == "not connected" and backend.release() == 0
    client = backend.client()
    proc = backend.process
    assert proc is not None and proc.poll() is None and backend.running_locally()
    assert client.server is not None and client.server.model.decoder == "identity"  # our --identity process answered
    assert "identity" in backend.describe()
    assert backend.client() is client  # connected once, shared
    frame = np.random.default_rng(0).random((16, 20, 3), dtype=np.float32)
    sid = client.put_style(frame, size=0)
    out = client.stylize(frame, sid)
    assert out.combined is not None
    np.testing.assert_array_equal(out.combined, frame)
    assert backend.release() == 0  # a CPU backend keeps no device memory
    backend.stop()
    assert proc.poll() == 0  # shut down over the socket: a clean exit
    assert backend.process is None and not backend.running_locally() and backend.describe() == "not connected"
    backend.stop()  # idempotent
    text = log.read_text()
    assert f"listening on {endpoint}" in text and "shutdown requested by a client" in text


def test_a_backend_started_without_a_log_gets_a_client_with_the_settings_timeout(backends, tcp_port):
    """Without a log file the manager polls with 1 s tries; the client it keeps must not keep that 1 s timeout (also
    its silence limit, after which everything outstanding is sent again)."""
    backend = backends(endpoint=f"tcp://127.0.0.1:{tcp_port}", command=IDENTITY, start_timeout=60, connect_timeout=7.0)
    client = backend.client()
    assert client.server is not None and client.timeout == 7.0


def test_a_local_backend_that_died_is_started_again(backends, tcp_port, tmp_path):
    backend = backends(endpoint=f"tcp://127.0.0.1:{tcp_port}", command=IDENTITY, log_file=tmp_path / "b.log")
    backend.client()
    first = backend.process
    assert first is not None
    first.kill()
    first.wait(10)
    client = backend.client()
    assert backend.process is not None and backend.process is not first and backend.process.poll() is None
    assert client.server is not None and client.server.model.decoder == "identity"


def test_a_missing_program_is_named_in_the_error(backends, tcp_port):
    missing = "/nonexistent/bin/adain-python"
    backend = backends(endpoint=f"tcp://127.0.0.1:{tcp_port}", command=(missing, "-m", "backend"))
    refusal = r"cannot start the backend with /nonexistent/bin/adain-python -m backend"
    with pytest.raises(BackendUnavailableError, match=refusal) as e:
        backend.client()
    assert "No such file or directory" in str(e.value) and "Install Backend in the add-on preferences" in str(e.value)
    assert backend.process is None


def test_a_program_that_exits_at_once_reports_its_code_and_log(backends, tcp_port, tmp_path):
    script = "import sys; print('fatal: no model here', flush=True); sys.exit(3)"
    log = tmp_path / "backend.log"
    backend = backends(endpoint=f"tcp://127.0.0.1:{tcp_port}", command=(sys.executable, "-c", script), log_file=log)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"the local backend exited at start \(code 3\): fatal: no model here"):
        backend.client()
    assert time.monotonic() - t0 < 15
    assert backend.process is None and not backend.running_locally()


def test_a_port_taken_by_another_backend_is_refused_or_reused_but_never_mistaken_for_ours(backends, serve, tcp_port, tmp_path):
    server = serve(f"tcp://127.0.0.1:{tcp_port}", identity=True)  # someone else's backend holds the port
    backend = backends(endpoint=server.endpoint, command=IDENTITY, log_file=tmp_path / "b.log")
    try:
        client = backend.client()
    except BackendUnavailableError as e:  # acceptable: a clear refusal
        assert "cannot listen on" in str(e)
        return
    # acceptable too: the running backend is used as a remote one (no process of ours claimed)
    assert client.server is not None and client.server.instance == server.instance
    proc = backend.process
    if proc is not None:  # a process of ours can only fail to bind while the other backend holds the port
        proc.wait(30)
    assert proc is None, f"BackendManager holds a process that exited with code {proc.returncode}, connected to another backend"


def test_remote_mode_with_nobody_listening_fails_fast(backends, tcp_port):
    endpoint = f"tcp://127.0.0.1:{tcp_port}"
    backend = backends(endpoint=endpoint, connect_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=rf"no AdaIN backend at {endpoint}: .*did not answer within 1 s"):
        backend.client()
    assert time.monotonic() - t0 < 5
    assert backend.process is None


def test_remote_mode_connects_and_close_leaves_the_backend_running(backends, serve):
    server = serve(identity=True)
    assert server.endpoint is not None
    backend = backends(endpoint=server.endpoint, connect_timeout=5.0)
    client = backend.client()
    assert client.server is not None and client.server.instance == server.instance and backend.process is None
    backend.close()
    assert backend.describe() == "not connected"
    with Client(server.endpoint, timeout=5) as other:  # still serving
        assert other.server is not None and other.server.instance == server.instance


def test_settings_helpers():
    assert BackendSettings.split_command("  ") is None
    assert BackendSettings.split_command("'/opt/my python/bin/python' -m backend --device cuda") == (
        "/opt/my python/bin/python",
        "-m",
        "backend",
        "--device",
        "cuda",
    )
    assert default_command(Path("/venv/bin/python"), ["--identity"]) == ("/venv/bin/python", "-m", "backend", "--identity")
