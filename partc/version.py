"""partc's version, in a module of its own so that every stage can record it without importing the package face."""

__version__ = "0.1.0"


def code_digest() -> str:
    """SHA-256 (16 hex digits) of partc's own source files: processes of one distributed run compare it,
    since a version number does not change with every edit of a checkout."""
    global _digest
    if _digest is None:
        import hashlib
        from pathlib import Path

        package = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".lark", ".j2", ".html") and p.is_file()):
            h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        _digest = h.hexdigest()[:16]
    return _digest


_digest: str | None = None
