"""Stage 4, codegen: checked IR -> readable PyTorch source, DOT and summary."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["generate", "render_model", "render_summary"]


def __getattr__(name: str) -> Any:
    """The public functions, loaded on first use (jinja2, the IR, the templates): the CLI imports this
    package to register `partc compile`, and `partc --help` needs none of them.

    Importing the submodule `partc.codegen.generate` binds its name here to the module; the function
    of the same name is put back over it, once (later imports of a loaded module bind nothing).
    """
    if name not in __all__:
        raise AttributeError(f"module 'partc.codegen' has no attribute '{name}'")
    module = importlib.import_module("partc.codegen.generate")
    globals().update({public: getattr(module, public) for public in __all__})
    return globals()[name]
