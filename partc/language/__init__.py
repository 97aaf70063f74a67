"""Stage 1, the language: spec text -> AST (`parse`), and AST -> spec text (`printer`)."""

from partc.language.parser import parse, read_spec

__all__ = ["parse", "read_spec"]
