"""Progress of a long preparation, told on stderr while it runs.

Preparing 998 Kvasir-SEG images inside a run took minutes without a word.  A
:class:`PrepareProgress` is the ``progress(done, total, case_id)`` callback of
:func:`~kdbench.datasets.prepare.prepare_dataset`: on a terminal it redraws one line (count,
rate, ETA); otherwise (``nohup``, ``> log``, CI) it prints a plain line every
:data:`EVERY` seconds and one when it ends.  A preparation that ends within :data:`QUIET`
seconds prints nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

EVERY = 5.0
"""Seconds between two plain progress lines when stderr is not a terminal."""
QUIET = 2.0
"""A preparation shorter than this prints nothing."""


def clock(seconds: float) -> str:
    """``1:05`` or ``1:02:03``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class PrepareProgress:
    """``progress(done, total, case_id)`` for preparing dataset ``name`` (see the module doc)."""

    def __init__(self, name: str, stream: TextIO | None = None, every: float = EVERY, quiet: float = QUIET):
        self.name, self.stream, self.every, self.quiet = name, stream or sys.stderr, every, quiet
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.told = -1e9

    def line(self, done: int, total: int, now: float) -> str:
        """The progress line at monotonic time ``now``: count, rate, elapsed and ETA, or done."""
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f" · ETA {clock((total - done) / rate)}" if rate > 0 and done < total else ""
        return (f"preparing {self.name}: {done}/{total} cases · {rate:.0f} cases/s · elapsed {clock(elapsed)}"
                + eta + (" · done" if done >= total else ""))

    def __call__(self, done: int, total: int, case_id: str = "") -> None:
        now = time.monotonic()
        if now - self.started < self.quiet and done < total:
            return
        if done >= total and now - self.started < self.quiet and self.told < 0:
            return  # a short preparation: nothing to tell
        if self.live:
            self.stream.write("\r" + self.line(done, total, now) + ("\n" if done >= total else ""))
        elif now - self.told >= self.every or done >= total:
            self.stream.write(self.line(done, total, now) + "\n")
        else:
            return
        self.told = now
        self.stream.flush()
