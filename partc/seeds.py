"""Seeds: one 63-bit seed per purpose, from SHA-256, the same on every machine and Python version."""

from __future__ import annotations

import hashlib


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from SHA-256 of the parts: the same on every machine and Python version."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
