"""Small helpers the benchmarks share: how a set of timings is written, and the machine's load."""

from __future__ import annotations

import os
import statistics


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """'median (min..max)' of `values` times `scale`."""
    v = sorted(x * scale for x in values)
    return f"{statistics.median(v):.{digits}f} ({v[0]:.{digits}f}..{v[-1]:.{digits}f})"


def load_note(when: str) -> str:
    """'# load average WHEN: L' (the 1-minute load average; 'unknown' where there is none)."""
    try:
        return f"# load average {when}: {os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return f"# load average {when}: unknown"
