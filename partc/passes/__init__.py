"""Stage 2, checking: AST -> IR (`check`), through the passes in `PASSES`.

Each pass is a plain function over the IR that returns the errors it found;
errors of one pass are reported together and stop the pipeline there.
"""

from __future__ import annotations

from partc.errors import raise_collected
from partc.ir import Network
from partc.language import ast
from partc.passes.graph import build_graph, verify
from partc.passes.paths import check_constraints, select_paths
from partc.passes.resolve import resolve
from partc.passes.shapes import infer_shapes

# In order. resolve builds the IR tables from the AST; the rest refine them.
PASSES = [
    ("select_paths", lambda net, tree: select_paths(net, tree)),
    ("check_constraints", lambda net, tree: check_constraints(net)),
    ("infer_shapes", lambda net, tree: infer_shapes(net)),
    ("build_graph", lambda net, tree: build_graph(net)),
]


def check(tree: ast.Network) -> Network:
    """Run every pass; raise the first failing pass's errors together."""
    net, errors = resolve(tree)
    raise_collected(errors)
    for _name, run_pass in PASSES:
        raise_collected(run_pass(net, tree))
    return net


__all__ = ["PASSES", "check", "verify"]
