"""One error hierarchy for every stage of partc.

A `PartError` is a *user* error: the CLI prints it and exits 2, never a
traceback. Each error can carry a source location (file, line, column); its
`render()` shows `file:line:col: error: message`, the source line with a
caret under the offending column, and a hint saying what would be valid.
Anything that is not a `PartError` reaching the CLI is a bug in partc.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# What `render` shows at most: a source line longer than SOURCE_WIDTH is cut to a window around the
# caret, and a message or hint longer than TEXT_WIDTH loses its middle (a spec can hold lines and
# values megabytes long, and a terminal is no place for them).
SOURCE_WIDTH = 100
TEXT_WIDTH = 600


@dataclass(frozen=True)
class Location:
    """A position in a spec file; line and column count from 1."""

    file: str
    line: int
    column: int
    end_column: int | None = None
    source_line: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


EXIT_USER_ERROR = 2  # the exit code of every command that stops on a PartError


class PartError(Exception):
    """Base of every user-facing error."""

    kind = "error"

    def __init__(self, message: str, loc: Location | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.hint = hint

    def render(self) -> str:
        prefix = f"{self.loc}: " if self.loc else ""
        lines = [f"{prefix}{self.kind}: {shown_text(self.message)}"]
        if self.loc and self.loc.source_line is not None:
            width = 1
            if self.loc.end_column and self.loc.end_column > self.loc.column:
                width = self.loc.end_column - self.loc.column
            text, column, width = source_window(self.loc.source_line, self.loc.column, width)
            lines.append(f"    {text}")
            lines.append("    " + " " * (column - 1) + "^" * width)
        if self.hint:
            lines.append(f"hint: {shown_text(self.hint)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def printable(text: str) -> str:
    """`text` with control and format characters (terminal escapes, NUL, bidi marks) shown as '?', one each."""
    if text.isprintable():
        return text
    return "".join("?" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") and ch != "\n" else ch for ch in text)


def shown_text(text: str, limit: int = TEXT_WIDTH) -> str:
    """A message or hint as printed: printable, and at most `limit` characters (the middle elided)."""
    text = printable(text)
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]} ... {text[-keep:]}"


def source_window(line: str, column: int, width: int) -> tuple[str, int, int]:
    """(text, caret column, caret width) of a source line as shown: a window of it around the caret."""
    text = printable(line.rstrip("\r\n").expandtabs(1))
    column = max(1, min(column, len(text) + 1))
    if len(text) <= SOURCE_WIDTH:
        return text, column, width
    width = max(1, min(width, SOURCE_WIDTH - 10))
    start = max(0, min(column - 1 - (SOURCE_WIDTH - width) // 2, len(text) - SOURCE_WIDTH))
    end = start + SOURCE_WIDTH
    head, tail = ("... " if start > 0 else ""), (" ..." if end < len(text) else "")
    return head + text[start:end] + tail, column - start + len(head), width


def exception_text(e: BaseException, limit: int = 300) -> str:
    """`Type: what it says` of a library's exception, for a message: its first lines that name the problem.

    Never empty and never an IndexError (`str(e)` can be ''), and a header line such as torch's
    "Error(s) in loading state_dict for PartModel:" keeps the line after it, which names the key.
    """
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
        if len(lines) > 2:
            text += f" (and {len(lines) - 2} more)"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class SpecSyntaxError(PartError):
    """The spec text does not follow the grammar."""


class SpecError(PartError):
    """The spec parses but means something invalid (names, paths, shapes)."""


class ShapeError(SpecError):
    """A layer cannot take the shape it is given (raised by the layer table, located by shape inference)."""


class ClassesError(SpecError):
    """A `classes=` value the data source cannot satisfy (raised by the data catalog, located by the checker)."""


class ArgumentError(SpecError):
    """A layer call's arguments do not bind: `param` names the argument at fault, when one is."""

    def __init__(self, message: str, param: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.param = param


class SpecWarning(PartError):
    """A spec that checks but most likely does not say what was meant: printed by `partc check`, never raised.

    `partc check --strict` turns every warning into an error (`as_error`).
    """

    kind = "warning"

    def as_error(self) -> SpecError:
        return SpecError(self.message, self.loc, self.hint)


class SpecFileError(PartError):
    """The spec file cannot be read (missing, not UTF-8)."""


class DataError(PartError):
    """A task's data cannot be found or loaded."""


class CheckpointError(PartError):
    """A checkpoint or run directory is missing, corrupt or of another spec."""


class RunDirError(PartError):
    """A run directory (or another output folder) cannot be written or read: a file in the way, no permission,
    a full or read-only disk, or another partc process writing it."""


class TrainError(PartError):
    """Training cannot start: no such device, or a run directory that is not a fresh one."""


class ExportError(PartError):
    """Export failed or the exported model does not match torch."""


class ServeError(PartError):
    """The server cannot start (address in use, host not resolvable, a bad option)."""


class RequestError(PartError):
    """A request the server refuses: the client gets `status` and `{"error": message}`, the server keeps serving."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


class ErrorGroup(PartError):
    """Several errors of one stage, reported together."""

    def __init__(self, errors: list[PartError]):
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.message, first.loc, first.hint)

    def render(self) -> str:
        parts = [e.render() for e in self.errors]
        if len(self.errors) > 1:
            parts.append(f"{len(self.errors)} errors")
        return "\n".join(parts)


def raise_collected(errors: list[PartError], limit: int = 10) -> None:
    """Raise the collected errors of a stage (at most `limit`), if any."""
    if not errors:
        return
    # a template used by several levels reports its mistake once
    seen: set[tuple[str, str]] = set()
    unique = []
    for e in errors:
        key = (e.message, str(e.loc))
        if key not in seen:
            seen.add(key)
            unique.append(e)
    errors = unique
    if len(errors) == 1:
        raise errors[0]
    raise ErrorGroup(errors[:limit])


def closest(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The candidate a misspelt `name` most likely meant, if any is close."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    return close[0] if close else None


def valid_names(name: str, candidates: Iterable[str], label: str) -> str:
    """A hint listing what is valid, led by the closest match to a misspelt `name`."""
    candidates = list(candidates)
    listing = f"{label}: {', '.join(candidates) if candidates else 'none'}"
    close = closest(name, candidates)
    return f"did you mean '{close}'? {listing}" if close else listing
