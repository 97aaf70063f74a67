"""Stage 4, codegen: checked IR -> readable PyTorch source, DOT and summary."""

from partc.codegen.generate import generate, render_model, render_summary

__all__ = ["generate", "render_model", "render_summary"]
