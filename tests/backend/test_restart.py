"""A real backend process SIGKILLed and restarted in the middle of a 20-frame sequence: the client ends with
exactly 20 correct results. Then SIGTERM stops the restarted one cleanly."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from adain import StyleTransfer
from adain.weights import DEFAULT_DECODER_PATH
from adain_wire.client import Client

REPO = Path(__file__).resolve().parents[2]
FRAMES = 20


@pytest.fixture(scope="module")
def decoder_copy(tmp_path_factory) -> Path:
    """The shipped decoder, copied: the backend and the reference read the same bytes even if it is replaced."""
    path = tmp_path_factory.mktemp("weights") / "decoder.safetensors"
    shutil.copyfile(DEFAULT_DECODER_PATH, path)
    return path


class Backend:
    """``adain-backend`` (or ``python -m backend``) as a child process, logging to a file."""

    def __init__(self, command: list[str], port: int, decoder: Path, log: Path) -> None:
        self.log = log
        self.endpoint = f"tcp://127.0.0.1:{port}"
        args = ["--bind", self.endpoint, "--device", "cpu", "--precision", "fp32", "--decoder", str(decoder)]
        with log.open("ab") as out:
            self.proc = subprocess.Popen([*command, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    def wait_listening(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"listening on {self.endpoint}" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"backend exited with {self.proc.returncode}:\n{self.log.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"backend did not start within {timeout} s:\n{self.log.read_text()}")


def test_server_killed_and_restarted_mid_sequence_loses_and_repeats_nothing(decoder_copy, tmp_path, tcp_port):
    port = tcp_port
    log = tmp_path / "backend.log"
    first = Backend([sys.executable, "-m", "backend"], port, decoder_copy, log)
    second: Backend | None = None
    rng = np.random.default_rng(5)
    style = rng.random((32, 32, 3), dtype=np.float32)
    frames = [rng.random((32, 40, 4), dtype=np.float32) for _ in range(FRAMES)]
    try:
        first.wait_listening()
        client = Client(first.endpoint, timeout=1.0, give_up=90.0, heartbeat=0.2, window=4)
        try:
            before = client.connect().instance
            sid = client.put_style(style, size=0)
            pendings = [client.submit(f, sid, alpha=0.8) for f in frames]
            calls = {p.id: 0 for p in pendings}
            for p in pendings:
                p.add_done_callback(lambda p: calls.__setitem__(p.id, calls[p.id] + 1))
            while sum(p.done() for p in pendings) < 4:
                time.sleep(0.005)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            done_at_kill = sum(p.done() for p in pendings)
            assert done_at_kill < FRAMES - 4, "the kill came too late to interrupt the sequence"
            second = Backend([str(Path(sys.executable).with_name("adain-backend"))], port, decoder_copy, log)
            second.wait_listening()
            results = [p.result(120) for p in pendings]
            assert client.server is not None and client.server.instance != before
        finally:
            client.close()
        assert len(results) == FRAMES and all(n == 1 for n in calls.values())
        reference = StyleTransfer.load(decoder_copy, device="cpu", precision="fp32")
        stats = reference.encode_style(torch.from_numpy(np.ascontiguousarray(style.transpose(2, 0, 1))))
        for f, r in zip(frames, results, strict=True):
            want = reference.stylize(torch.from_numpy(np.ascontiguousarray(f[..., :3].transpose(2, 0, 1))), stats, 0.8)
            assert r.combined is not None
            np.testing.assert_allclose(r.combined[..., :3], want.numpy().transpose(1, 2, 0), atol=1e-4)
            np.testing.assert_array_equal(r.combined[..., 3], f[..., 3])
        text = log.read_text()
        assert text.count("listening on") == 2, text
        # SIGTERM: a clean exit with status 0
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(20) == 0
        assert "SIGTERM received" in log.read_text() and "adain-backend stopped" in log.read_text()
    finally:
        for b in (first, second):
            if b is not None and b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait(10)
