"""One error hierarchy for every stage of partc.

A `PartError` is a *user* error: the CLI prints it and exits 2, never a
traceback. Each error can carry a source location (file, line, column); its
`render()` shows `file:line:col: error: message`, the source line with a
caret under the offending column, and a hint saying what would be valid.
Anything that is not a `PartError` reaching the CLI is a bug in partc.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


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
        lines = [f"{prefix}{self.kind}: {self.message}"]
        if self.loc and self.loc.source_line is not None:
            text = self.loc.source_line.rstrip("\r\n").expandtabs(1)
            lines.append(f"    {text}")
            width = 1
            if self.loc.end_column and self.loc.end_column > self.loc.column:
                width = self.loc.end_column - self.loc.column
            lines.append("    " + " " * (self.loc.column - 1) + "^" * width)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


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


class SpecFileError(PartError):
    """The spec file cannot be read (missing, not UTF-8)."""


class DataError(PartError):
    """A task's data cannot be found or loaded."""


class CheckpointError(PartError):
    """A checkpoint or run directory is missing, corrupt or of another spec."""


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


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate a misspelt `name` most likely meant, if any is close."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def valid_names(name: str, candidates: Iterable[str], label: str) -> str:
    """A hint listing what is valid, led by the closest match to a misspelt `name`."""
    candidates = list(candidates)
    listing = f"{label}: {', '.join(candidates) if candidates else 'none'}"
    close = closest(name, candidates)
    return f"did you mean '{close}'? {listing}" if close else listing
