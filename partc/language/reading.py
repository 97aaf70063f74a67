"""Language stage, reading: a spec file's text, and the LALR parser built from grammar/part.lark.

The parser's tables are cached per user (building them costs ~0.3 s, a
large share of a `partc check`); a damaged or foreign cache is rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import lark
from lark import Lark

from partc.errors import Location, SpecFileError
from partc.values import special_file


def grammar_path() -> Path:
    """The grammar ships inside the package (wheel) or beside it (checkout)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "grammar" / "part.lark", here.parent / "grammar" / "part.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("grammar/part.lark is missing from the partc installation")


_OPTIONS = {"parser": "lalr", "keep_all_tokens": True, "maybe_placeholders": False}


@functools.lru_cache(maxsize=2)
def lark_parser(transformer: Any = None) -> Lark:
    """The LALR parser, loaded from a per-user cache when the grammar is unchanged.

    With `transformer` (the AST builder), Lark calls its methods as it
    reduces (an inline transformer: no parse tree). Every token is kept for
    it (`keep_all_tokens`), so it can tell each rule's span. Building the
    LALR tables costs about 0.3 s, a large share of a `partc check`; loading
    them from the cache about 0.03 s.
    """
    grammar = grammar_path().read_text(encoding="utf-8")
    key = hashlib.sha256(f"{grammar}\n{sorted(_OPTIONS.items())}\n{lark.__version__}\n{sys.version_info[:2]}".encode())
    folder = _private_cache_dir()
    cache = folder / f"part-grammar-{key.hexdigest()[:16]}.lark" if folder else None
    if cache is not None and cache.is_file():
        try:
            with cache.open("rb") as f:
                return Lark.load(f, transformer=transformer)
        except Exception:  # a damaged or foreign cache is rebuilt, never fatal
            pass
    parser = Lark(grammar, **_OPTIONS)
    if cache is not None:
        try:
            partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            with partial.open("wb") as f:
                parser.save(f)
            os.replace(partial, cache)  # atomic: concurrent runs never read half a file
        except OSError:
            pass
    return parser if transformer is None else Lark(grammar, **_OPTIONS, transformer=transformer)


def _private_cache_dir() -> Path | None:
    """A folder only this user can write, in the temp dir; None where one cannot be had safely.

    The cache is a pickle, so it must not live where another user could plant one.
    """
    if not hasattr(os, "getuid"):  # Windows: no cheap ownership check, so no cache
        return None
    folder = Path(tempfile.gettempdir()) / f"partc-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def location(file: str, lines: list[str], line: int, column: int, end_column: int | None = None) -> Location:
    source_line = lines[line - 1] if 0 < line <= len(lines) else ""
    return Location(file, line, column, end_column, source_line)


def read_spec(path: str | Path) -> str:
    """Read a spec file, turning I/O and encoding problems into user errors."""
    p = Path(path)
    if not p.exists():
        raise SpecFileError(f"spec file '{path}' does not exist", hint="check the path; specs end in .part")
    if p.is_dir():
        raise SpecFileError(f"'{path}' is a directory, not a spec file", hint="name a .part file inside it")
    special = special_file(p)
    if special:
        raise SpecFileError(f"'{path}' is {special}, not a spec file", hint="save the spec to a file and name that")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SpecFileError(f"cannot read spec file '{path}': {e.strerror}") from None
    try:
        return data.decode("utf-8-sig")  # tolerate the byte-order mark some editors write
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line_end = data.find(b"\n", e.start)
        source_line = data[line_start : len(data) if line_end < 0 else line_end].decode("utf-8", errors="replace")
        column = len(data[line_start : e.start].decode("utf-8", errors="replace")) + 1
        loc = Location(str(path), data.count(b"\n", 0, e.start) + 1, column, None, source_line)
        raise SpecFileError(f"spec file is not valid UTF-8 (byte 0x{data[e.start]:02x})", loc,
                            "save the file as UTF-8") from None


