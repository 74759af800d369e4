"""The command line's progress bar (training, batch stylization, the scripts): ``tqdm`` on stderr.

On a terminal the bar redraws in place every ``every`` seconds; to a log file (stderr not a terminal) it writes a
line of its own every 10 s and at the end. Ctrl-C is not caught here: the ``KeyboardInterrupt`` goes through (the
bar is closed on its way) to the command, which stops cleanly.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

LOG_EVERY_S = 10.0  # how often a bar going to a log file writes a line


class _Lines:
    """A stream that is not a terminal: each redraw starts a line of its own instead of returning over the last."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._open = False  # a line is written and not ended yet

    def write(self, s: str) -> int:
        if s.startswith("\r"):  # a redraw (tqdm pads it with spaces to cover a longer previous line)
            s = ("\n" if self._open else "") + s[1:].rstrip(" ")
            self._open = True
        elif s.endswith("\n"):
            self._open = False
        return self.stream.write(s)

    def flush(self) -> None:
        self.stream.flush()


class Progress:
    """``with Progress(total, "stylize") as p: ... p.update(1, "loss 0.3")``; shows the count, rate, ETA and note."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, every: float = 0.2) -> None:
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._bar = tqdm(
            total=total,
            desc=label or None,
            file=self.stream if self.tty else _Lines(self.stream),
            mininterval=every if self.tty else LOG_EVERY_S,
            dynamic_ncols=self.tty,
            ascii=not self.tty,  # a log file gets plain characters
        )

    @property
    def done(self) -> int:
        return int(self._bar.n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()

    def update(self, n: int = 1, note: str = "") -> None:
        """``n`` more steps done; ``note`` (if given) replaces the text shown after the rate."""
        if note:
            self._bar.set_postfix_str(note, refresh=False)
        self._bar.update(n)
