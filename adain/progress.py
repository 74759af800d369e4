"""A dependency-free progress bar for the terminal (stderr), quiet when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress(total, "stylize") as p: ... p.update(1, "loss 0.3")``; prints rate and ETA."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, every: float = 0.2) -> None:
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every, self.start, self.last = every, time.monotonic(), 0.0
        self.note = ""
        self._drawn = -1

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._drawn != self.done:
            self._draw(force=True)
        self.stream.write("\n" if self.tty else "")
        self.stream.flush()

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        self.note = note or self.note
        self._draw()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        interval = self.every if self.tty else 10.0  # a log file gets a line every 10 s
        if not force and now - self.last < interval and self.done < self.total:
            return
        self.last, self._drawn = now, self.done
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * 24)
        line = (f"{self.label} [{bar:<24}] {self.done}/{self.total} {rate:.2f}/s "
                f"eta {eta:.0f}s {self.note}")  # fmt: skip
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(100))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
