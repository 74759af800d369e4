"""scripts/bench.py --quick: every row is measured and reported; the JSON is complete. Timings are never asserted."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts.script_loader import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    tmp = tmp_path_factory.mktemp("tmpdir")  # the run's temporary folder: the backend's log goes there
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--json", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=SCRIPT.parents[1],
                          env={**os.environ, "TMPDIR": str(tmp)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout, tmp


@pytest.mark.slow
def test_every_path_has_a_row(quick):
    doc, _, _ = quick
    paths = [r["path"] for r in doc["rows"]]
    assert paths[0].startswith("baseline") and paths[1].startswith("ours")
    for expected in ("1 region (label map)", "4 regions (label map)", "8 regions (label map)", "e2e tcp float32 RGBA",
                     "e2e tcp float16 RGBA"):  # fmt: skip
        assert expected in paths
    assert {(r["device"], r["width"], r["height"]) for r in doc["rows"]} == {("cpu", 64, 64)}
    assert doc["interrupted"] is False and doc["machine"]["cpu"]


@pytest.mark.slow
def test_ratios_times_and_memory_are_sane(quick):
    doc, _, _ = quick
    for r in doc["rows"]:
        assert len(r["times"]) == 1 and all(t > 0 for t in r["times"])
        for key in ("seconds", "fps", "ratio"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["path"], key, r[key])
        # a 64x64 frame: the increase may be 0 (the allocator reuses memory), never negative nor gigabytes; e2e rows
        # measure the backend process, the others this one
        assert isinstance(r["peak_mem_bytes"], int) and 0 <= r["peak_mem_bytes"] < 2**30, (r["path"], r["peak_mem_bytes"])
        assert r["mem_kind"] == ("backend rss increase" if r["path"].startswith("e2e") else "rss increase"), r["path"]
    base = doc["rows"][0]
    assert base["ratio"] == pytest.approx(1.0)
    regions = [r for r in doc["rows"] if "region" in r["path"]]
    assert all(math.isfinite(r["extra"]["vs_1_region"]) for r in regions)
    e2e = [r for r in doc["rows"] if r["path"].startswith("e2e")]
    assert all(r["extra"]["backend_compute_s"] > 0 and math.isfinite(r["extra"]["overhead"]) for r in e2e)


@pytest.mark.slow
def test_table_and_targets_are_printed(quick):
    doc, stdout, _ = quick
    assert stdout.startswith("| device | size | path | ms/frame | fps | × baseline | peak memory | note |")
    assert stdout.count("| cpu | 64×64 |") == len(doc["rows"])
    assert any("8 regions <= 1.2x one region" in t["target"] for t in doc["targets"])


@pytest.mark.slow
def test_a_clean_run_leaves_no_backend_log(quick):
    doc, _, tmp = quick
    assert any(r["path"].startswith("e2e") for r in doc["rows"])  # a backend was started, with its log in tmp
    assert list(tmp.glob("adain-bench-*")) == []


def test_size_parsing():
    bench = load_script("bench")
    assert bench.parse_size("512") == (512, 512)
    assert bench.parse_size("1920x1080") == bench.parse_size("1080p") == (1920, 1080)
    assert bench.parse_size("4K") == (3840, 2160)
    with pytest.raises(Exception, match="use N, WxH"):
        bench.parse_size("big")
    assert bench.band_labels(10, 3, 4).unique().tolist() == [0, 1, 2, 3]


@pytest.mark.slow
def test_compile_rows_are_measured_and_bad_modes_refused(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--no-e2e", "--compile", "default,reduce-overhead",
           "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=SCRIPT.parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["path"]: r for r in json.loads(out.read_text())["rows"]}
    assert "ours + compile default" in rows  # reduce-overhead (CUDA graphs) is left out on the CPU
    assert not any("reduce-overhead" in p for p in rows)
    assert rows["ours + compile default"]["ratio"] > 0 and len(rows["ours + compile default"]["times"]) == 1
    bad = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--compile", "turbo"], capture_output=True, text=True,
                         timeout=60, cwd=SCRIPT.parents[1])  # fmt: skip
    assert bad.returncode == 2 and "--compile turbo: use default, max-autotune or reduce-overhead" in bad.stderr


@pytest.mark.slow
def test_pixel_bench_runs_and_checks_both_paths_agree():
    script = SCRIPT.with_name("bench_pixels.py")
    proc = subprocess.run([sys.executable, str(script), "--sizes", "512", "--device", "cpu", "--repeats", "1"],
                          capture_output=True, text=True, timeout=120, cwd=SCRIPT.parents[1])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| cpu | 512×512 |")]
    assert [r.split("|")[3].strip() for r in rows] == ["float16", "uint8"]
    assert all(r.rstrip(" |").endswith("×") for r in rows)


@pytest.mark.slow
def test_temporal_bench_runs_on_a_backend_and_leaves_no_log(tmp_path):
    script = SCRIPT.with_name("bench_temporal.py")
    proc = subprocess.run([sys.executable, str(script), "--size", "64x48", "--repeats", "1", "--backend-device", "cpu"],
                          capture_output=True, text=True, timeout=300, cwd=SCRIPT.parents[1],
                          env={**os.environ, "TMPDIR": str(tmp_path)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on the backend (cpu), + round trip" in proc.stdout and "max |on the backend - ours|" in proc.stdout
    assert list(tmp_path.glob("adain-bench-*")) == []
