"""The command line's progress bar (tqdm): what a log file gets, and Ctrl-C going through it."""

from __future__ import annotations

import io

import pytest

from adain.progress import Progress


def test_a_log_file_gets_whole_lines_and_the_final_count():
    log = io.StringIO()
    with Progress(3, "stylize", stream=log) as bar:
        for i in range(3):
            bar.update(1, f"frame_{i}.png")
    assert bar.done == 3
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    assert all(line.startswith("stylize:") and line == line.rstrip() for line in lines)
    assert "3/3" in lines[-1] and "frame_2.png" in lines[-1]


def test_ctrl_c_goes_through_the_bar_and_ends_its_line():
    log = io.StringIO()
    with pytest.raises(KeyboardInterrupt), Progress(10, "train", stream=log) as bar:
        bar.update(1, "it 1")
        raise KeyboardInterrupt
    assert log.getvalue().endswith("\n") and "1/10" in log.getvalue().splitlines()[-1]
