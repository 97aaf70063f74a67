"""Stage 2, checking: AST -> checked IR (`check`), through the passes in `PASSES`, in order.

Every pass is a plain function `pass(net, tree) -> [errors]` over the IR,
one concern each, one per file. The first builds the IR's tables from the
AST into an empty `Network`; the others refine it. A pass's errors are
reported together and stop the pipeline there. `check(tree, verify_each=True)`
also runs `verify` after every pass; so does every check while the
environment variable PARTC_VERIFY_PASSES is set (the test suite sets it).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from partc.errors import PartError, raise_collected
from partc.ir import Network
from partc.language import ast
from partc.language.parser import paused_gc
from partc.passes.constraints import check_constraints
from partc.passes.fingerprint import fingerprint
from partc.passes.graph import build_graph, verify
from partc.passes.paths import select_paths
from partc.passes.resolve import resolve
from partc.passes.resources import check_resources
from partc.passes.shapes import infer_shapes
from partc.passes.warnings import find_warnings

Pass = Callable[[Network, ast.Network], list[PartError]]

PASSES: list[tuple[str, Pass]] = [
    ("resolve", resolve),  # names, values, templates bound: the IR's tables
    ("select_paths", select_paths),  # explicit and seeded random routes
    ("check_constraints", check_constraints),  # share / private hold on the routes
    ("infer_shapes", infer_shapes),  # shapes and parameter counts
    ("check_resources", check_resources),  # parameters and activation memory within limits
    ("build_graph", build_graph),  # the networkx graph every later stage reads
    ("find_warnings", find_warnings),  # what checks but is likely not meant: net.warnings, never errors
    ("fingerprint", fingerprint),  # the hash of the network's meaning
]


class VerifyError(AssertionError):
    """An IR invariant broke after a pass: a bug in partc, never a user error."""


def check(tree: ast.Network, *, verify_each: bool | None = None, until: str | None = None) -> Network:
    """Run the passes in order (up to and including `until`); raise the first failing pass's errors together."""
    if verify_each is None:
        verify_each = bool(os.environ.get("PARTC_VERIFY_PASSES"))
    with paused_gc():
        return _run_passes(tree, verify_each, until)


def _run_passes(tree: ast.Network, verify_each: bool, until: str | None) -> Network:
    net = Network(tree.name, tree.file, tree.source)
    for name, run_pass in PASSES:
        raise_collected(run_pass(net, tree))
        if verify_each:
            problems = verify(net)
            if problems:
                raise VerifyError(f"after pass {name}: " + "; ".join(problems[:5]))
        if name == until:
            break
    return net


__all__ = ["PASSES", "VerifyError", "check", "verify"]
