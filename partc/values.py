"""What counts as a whole number and as a number, for every table that validates spec values; sizes as text;
what kind of special file a path names.

Booleans are not numbers here (Python's `True == 1` would make `epochs
true` train one epoch), and infinite or NaN values are not numbers at all
(`lr=1e999` would train to NaN).
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
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


def special_file(path: str | Path) -> str | None:
    """What `path` is when it exists and is neither a regular file nor a folder ("a FIFO", "a character
    device", ...), else None: reading one can block forever (a FIFO) or never end (/dev/zero)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")
