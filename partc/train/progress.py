"""Train stage, a small progress bar with ETA on stderr (no tqdm dependency).

Draws only when the stream is a terminal and `quiet` is off, and at most
a few times a second, so it costs nothing in logs and CI. The ETA comes
from the wall time per step so far (evaluation and checkpoints included).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    WIDTH = 24

    def __init__(self, total: int, *, quiet: bool = False, stream=None, interval: float = 0.2):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = max(1, total)
        self.done = 0
        self.interval = interval
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.label = ""
        self.status: Callable[[], str] | None = None  # extra text, e.g. running loss (may sync a GPU)

    def tick(self) -> None:
        self.done += 1
        if self.enabled:
            now = time.perf_counter()
            if now - self.last_draw >= self.interval or self.done == self.total:
                self.last_draw = now
                self.draw(now)

    def line(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        elapsed = now - self.start
        frac = min(1.0, self.done / self.total)
        filled = int(frac * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        extra = f" {self.status()}" if self.status else ""
        return (f"{self.label} [{bar}] {self.done}/{self.total} {rate:.1f} steps/s "
                f"elapsed {format_seconds(elapsed)} eta {format_seconds(eta)}{extra}")

    def draw(self, now: float | None = None) -> None:
        self.stream.write("\r\x1b[2K" + self.line(now))
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line above the bar (or just the line when the bar is off)."""
        if self.enabled:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        if self.enabled:
            self.draw()
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
