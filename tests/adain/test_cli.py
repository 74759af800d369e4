"""The ``adain`` command line end to end on the shipped sample images, in a subprocess."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adain.cli", *args], capture_output=True, text=True, timeout=300)


def test_stylize_one_image_to_a_file(tmp_path, samples):
    out = tmp_path / "sub" / "out.png"
    r = run("stylize", str(samples / "content_coffee.jpg"), "--style", str(samples / "style_wesnoth_httt_wizards.jpg"),
            "--size", "96", "--style-size", "128", "--device", "cpu", "-o", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    with Image.open(samples / "content_coffee.jpg") as c, Image.open(out) as o:
        w, h = c.size
        assert min(o.size) == 96 and abs(o.size[0] / o.size[1] - w / h) < 0.02
        assert np.asarray(o).std() > 5  # a real picture, not a flat image


def test_stylize_several_images_with_interpolation_into_a_folder(tmp_path, samples):
    contents = [str(samples / "content_coffee.jpg"), str(samples / "content_chelsea_cat.jpg")]
    r = run("stylize", *contents, "--style", str(samples / "style_wesnoth_httt_wizards.jpg"),
            "--style", str(samples / "style_freecol_portrait_hudson.jpg"), "--weights", "3", "1", "--alpha", "0.8",
            "--preserve-color", "coral", "--size", "64", "--device", "cpu", "-o", str(tmp_path / "outs"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "outs").iterdir()) == ["content_chelsea_cat.png", "content_coffee.png"]
    assert "2/2" in r.stderr  # the progress bar reached the end


def test_stylize_with_a_label_mask(tmp_path, samples):
    with Image.open(samples / "content_coffee.jpg") as c:
        w, h = c.size
    labels = np.zeros((h, w), np.uint8)
    labels[:, w // 2 :] = 1
    Image.fromarray(labels, "L").save(tmp_path / "labels.png")
    r = run("stylize", str(samples / "content_coffee.jpg"), "--style", str(samples / "style_wesnoth_httt_wizards.jpg"),
            "--style", str(samples / "style_wesnoth_painted_mountains.jpg"), "--mask", str(tmp_path / "labels.png"),
            "--size", "64", "--device", "cpu", "-o", str(tmp_path / "m.png"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.png").is_file()


def test_info_prints_weights_device_precision():
    r = run("info", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    for key in ("encoder:", "decoder:", "device:", "precision:"):
        assert key in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "quantum"], "unknown device"),
        (["--alpha", "2"], "--alpha"),
        (["--decoder", "{tmp}/bad.safetensors"], "not a safetensors file"),
        (["--weights", "1", "2"], "--weights needs one value per --style"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, samples, args, message):
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = run("stylize", str(samples / "content_coffee.jpg"), "--style", str(samples / "style_wesnoth_httt_wizards.jpg"),
            "--size", "32", "-o", str(tmp_path / "o.png"), *args)  # fmt: skip
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unreadable_image_gives_one_line_and_exit_2(tmp_path, samples):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    r = run("stylize", str(tmp_path / "broken.jpg"), "--style", str(samples / "style_wesnoth_httt_wizards.jpg"),
            "-o", str(tmp_path / "o.png"))  # fmt: skip
    assert r.returncode == 2 and "cannot read image" in r.stderr and "Traceback" not in r.stderr
    r = run("stylize", str(tmp_path / "missing.jpg"), "--style", str(samples / "style_wesnoth_httt_wizards.jpg"),
            "-o", str(tmp_path / "o.png"))  # fmt: skip
    assert r.returncode == 2 and "does not exist" in r.stderr
