"""scripts/soak.py at a small size: real backend processes, real sockets and signals; its figures are what they
must be for a reliable backend (no crash, every reply attributed, nothing lost or crossed, owners outlived < 5 s)."""

from __future__ import annotations

import json

import pytest

from tests.scripts.script_loader import load_script


@pytest.mark.slow
def test_soak_figures_at_a_small_size(tmp_path):
    soak = load_script("soak")
    out = tmp_path / "soak.json"
    argv = ["--malformed", "300", "--clients", "3", "--frames", "4", "--kills", "1", "--kill-frames", "3",
            "--owner-kills", "1", "--json", str(out)]  # fmt: skip
    assert soak.main(argv) == 0
    figures = json.loads(out.read_text())
    bad = figures["malformed"]
    assert bad["crashes"] == 0 and bad["no_reply"] == 0 and bad["unattributed"] == 0 and bad["attributable"] > 100
    assert bad["rss_every_10k_mb"] == []  # (one sample per 10,000 requests: none in 300)
    for mode in ("identity", "model"):
        run = figures["pipelined"][mode]
        assert (run["lost"], run["crossed"], run["duplicated"], run["errors"]) == (0, 0, 0, [])
    assert figures["kills"]["kills"] == 1 and figures["kills"]["lost"] == 0
    assert figures["owner"]["exit_s_max"] < 5.0
