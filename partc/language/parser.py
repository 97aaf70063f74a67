"""Language stage entry point: spec text -> AST (`parse`), with Lark's LALR parser.

Reading and the grammar cache live in `reading`, the syntax-error messages
in `syntax_errors`, the AST builder (Lark's inline transformer) in `build`. Lark's
exceptions become `SpecSyntaxError`s here, at the parser boundary, so no
later stage ever sees a Lark type.
"""

from __future__ import annotations

import contextlib
import gc
import threading

import lark

from partc.errors import raise_collected
from partc.language import ast
from partc.language.build import AstBuilder
from partc.language.reading import lark_parser, read_spec
from partc.language.syntax_errors import check_nesting, syntax_error

__all__ = ["parse", "paused_gc", "read_spec"]


@contextlib.contextmanager
def paused_gc():
    """No cyclic garbage collection inside: a spec's AST and IR are built of millions of small objects, none in
    a cycle worth collecting, and the collector's passes over an ever larger heap made parsing and checking
    a 6 MB spec a third slower, and slower per MB the larger the spec (bench/check_speed.py)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse(text: str, file: str = "<spec>") -> ast.Network:
    """Parse spec text into an `ast.Network`; raise `SpecSyntaxError` on bad input.

    Lines end at "\n", "\r\n" or a lone "\r" (old Mac files), as editors count
    them; the AST's `source` is the text with "\n" line ends, which its locations index.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Lark counts lines by "\n" only; str.splitlines() would also split on
    # \f, \v, \u2028 ..., and the caret would then show the wrong line.
    lines = text.split("\n")
    check_nesting(text, lines, file)
    with _ONE_PARSE, paused_gc():  # the builder holds one parse's state
        _BUILDER.begin(file, lines, text)
        try:
            network = lark_parser(_BUILDER).parse(text).value
        except lark.exceptions.UnexpectedInput as e:
            raise syntax_error(e, text, lines, file) from None
        errors = _BUILDER.errors
        _BUILDER.begin("<spec>", [], "")  # hold on to no text between parses
    raise_collected(errors)
    return network


_BUILDER = AstBuilder()
_ONE_PARSE = threading.Lock()
