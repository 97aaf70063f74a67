"""partc: a declarative compiler for PaRT-style parallel multi-task networks.

Entry points, one per pipeline stage:
    parse(text)     -> AST            (partc.language)
    load(path)      -> checked IR     (partc.passes)
    compile(net)    -> torch module   (partc.compiler)
"""

from __future__ import annotations

from pathlib import Path

from partc.errors import PartError
from partc.ir import Network
from partc.language import parse, read_spec

__version__ = "0.1.0"


def loads(text: str, file: str = "<spec>") -> Network:
    """Parse and check spec text."""
    from partc.passes import check

    return check(parse(text, file))


def load(path: str | Path) -> Network:
    """Read, parse and check a spec file: the checked network (IR)."""
    return loads(read_spec(path), str(path))


def compile(net: Network | str | Path, *, batchnorm: str = "per_task"):  # noqa: A001 - the pipeline's name
    """Compile a checked network (or a spec path) into a `torch.nn.Module`.

    `batchnorm` ("per_task" or "joint"): how the fused forward's BatchNorm treats a segment shared by
    several tasks in train mode (see `PartModel`)."""
    from partc.compiler import compile_network

    if not isinstance(net, Network):
        net = load(net)
    return compile_network(net, batchnorm=batchnorm)


__all__ = ["Network", "PartError", "__version__", "compile", "load", "loads", "parse"]
