"""Language stage entry point: spec text -> AST (`parse`), with Lark's LALR parser.

Reading and the grammar cache live in `reading`, the syntax-error messages
in `syntax_errors`, the tree -> dataclass conversion in `build`. Lark's
exceptions become `SpecSyntaxError`s here, at the parser boundary, so no
later stage ever sees a Lark type.
"""

from __future__ import annotations

import lark

from partc.errors import raise_collected
from partc.language import ast
from partc.language.build import AstBuilder
from partc.language.reading import lark_parser, read_spec
from partc.language.syntax_errors import check_nesting, syntax_error

__all__ = ["parse", "read_spec"]


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
    try:
        tree = lark_parser().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        raise syntax_error(e, text, lines, file) from None
    builder = AstBuilder(file, lines, text)
    network = builder.transform(tree)
    raise_collected(builder.errors)
    return network
