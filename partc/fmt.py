"""`partc fmt`: the canonical layout of a spec, comments kept (a thin layer over `printer.format_spec`).

Like `black` or `terraform fmt`: idempotent, and faithful (the formatted
spec parses to the same statements; when the spec checks, to the same
network, by its hash). A file is rewritten only when both hold, atomically
(temp file beside it, then rename), keeping its permissions.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from partc.errors import PartError, SpecFileError


def format_file(path: str) -> tuple[str, str]:
    """(text as read, canonical text) of one spec; a `PartError` when it does not parse or would change meaning."""
    from partc.language import parse, read_spec
    from partc.language.printer import format_spec, spec_text

    text = read_spec(path)
    tree = parse(text, path)
    formatted = format_spec(tree)
    try:
        again = parse(formatted, path)
        faithful = spec_text(again) == spec_text(tree) and format_spec(again) == formatted
    except PartError:
        faithful = False
    if not faithful:
        raise PartError(f"partc fmt would change what '{path}' says; the file is left as it is",
                        hint="this is a bug in partc: please report it with the spec")
    _check_same_network(text, formatted, path)
    return text, formatted


def _check_same_network(text: str, formatted: str, path: str) -> None:
    from partc.spec import loads

    try:
        before = loads(text, path)
    except PartError:
        return  # a spec with errors is still formatted: its statements are compared above
    after = loads(formatted, path)
    if after.spec_hash != before.spec_hash:
        raise PartError(f"partc fmt would change the network of '{path}'; the file is left as it is",
                        hint="this is a bug in partc: please report it with the spec")


def write_in_place(path: str, text: str) -> None:
    target = Path(path)
    mode = target.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise SpecFileError(f"cannot rewrite '{path}': {e.strerror}") from None


def cmd_fmt(args: argparse.Namespace) -> int:
    if len(args.specs) > 1 and not (args.in_place or args.check):
        raise PartError("several specs need -i (rewrite them) or --check", hint="or format one spec to stdout")
    changed = []
    for path in args.specs:
        text, formatted = format_file(path)
        if formatted == text:
            continue
        changed.append(path)
        if args.check:
            print(f"would reformat {path}", file=sys.stderr)
        elif args.in_place:
            write_in_place(path, formatted)
            print(f"reformatted {path}", file=sys.stderr)
    if not (args.in_place or args.check):
        sys.stdout.write(formatted)
    return 1 if args.check and changed else 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fmt", help="lay a spec out canonically (comments kept); -i rewrites it, --check tests it",
        description="Print the canonical layout of a .part spec. With -i, rewrite the files in place (atomically); "
                    "with --check, change nothing and exit 1 when a file would change (for CI hooks).")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="the .part file(s)")
    p.add_argument("-i", "--in-place", action="store_true", help="rewrite the files")
    p.add_argument("--check", action="store_true", help="exit 1 when a file is not in canonical form")
    p.set_defaults(func=cmd_fmt)
