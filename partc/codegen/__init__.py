"""Stage 4, codegen: checked IR -> readable PyTorch source, DOT and summary."""

from partc.lazy import lazy_attributes

# Loaded on first use (jinja2 and the templates): the CLI imports this package to register `partc codegen`.
__getattr__ = lazy_attributes(__name__, {name: "partc.codegen.generate"
                                         for name in ("generate", "render_model", "render_summary")})

__all__ = ["generate", "render_model", "render_summary"]
