"""What counts as a whole number and as a number, for every table that validates spec values; sizes as text.

Booleans are not numbers here (Python's `True == 1` would make `epochs
true` train one epoch), and infinite or NaN values are not numbers at all
(`lr=1e999` would train to NaN).
"""

from __future__ import annotations

import math
from typing import Any


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite real number."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def byte_text(n: float) -> str:
    """1536 -> '1.5 KiB': a size in bytes, for messages."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} PiB"
