"""Stage 3, compile: IR -> torch modules with task routing."""

from partc.compiler.model import PartModel, compile_network

__all__ = ["PartModel", "compile_network"]
