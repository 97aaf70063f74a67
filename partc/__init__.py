"""partc: a declarative compiler for PaRT-style parallel multi-task networks.

Entry points, one per pipeline stage:
    parse(text)     -> AST            (partc.language)
    load(path)      -> checked IR     (partc.passes)
    compile(net)    -> torch module   (partc.compiler)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from partc.errors import PartError
from partc.lazy import lazy_attributes
from partc.version import __version__

if TYPE_CHECKING:
    from partc.ir import Network
    from partc.language import parse
    from partc.spec import load, loads

# Loaded on first use: `python -m partc` imports this package, and `partc --help` needs none of them.
__getattr__ = lazy_attributes(__name__, {"Network": "partc.ir", "parse": "partc.language", "load": "partc.spec",
                                         "loads": "partc.spec"})


def compile(net: Network | str | Path, *, batchnorm: str = "per_task"):  # noqa: A001 - the pipeline's name
    """Compile a checked network (or a spec path) into a `torch.nn.Module`.

    `batchnorm` ("per_task" or "joint"): how the fused forward's BatchNorm treats a segment shared by
    several tasks in train mode (see `PartModel`)."""
    from partc.compiler import compile_network
    from partc.ir import Network
    from partc.spec import load

    if not isinstance(net, Network):
        net = load(net)
    return compile_network(net, batchnorm=batchnorm)


__all__ = ["Network", "PartError", "__version__", "compile", "load", "loads", "parse"]
