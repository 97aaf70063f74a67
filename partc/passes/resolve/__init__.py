"""Pass 1, name resolution: AST -> the IR's tables (no paths, shapes or graph yet).

Checks every name (inputs, templates, levels, tasks, layers, arguments,
data sources, train settings) and every setting's value against its table
(`partc.layers`, `partc.data.catalog`, `partc.train.settings`), and binds
segment templates to their arguments, so every level holds the concrete
layers of one segment. One module per construct:

    names.py        name rules (unique, not reserved by torch)
    network.py      seed, inputs, levels
    templates.py    layer calls and segment templates
    tasks.py        tasks and their data
    constraints.py  share / private
    train.py        the train block
    values.py       AST values -> plain values
"""

from __future__ import annotations

import hashlib

from partc.errors import PartError
from partc.ir import Network
from partc.language import ast
from partc.passes.resolve.constraints import resolve_constraints
from partc.passes.resolve.names import TORCH_RESERVED, long_name_error
from partc.passes.resolve.network import resolve_inputs, resolve_levels, resolve_seed
from partc.passes.resolve.tasks import resolve_tasks
from partc.passes.resolve.templates import Templates
from partc.passes.resolve.train import resolve_train

__all__ = ["TORCH_RESERVED", "resolve", "source_hash"]


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def resolve(net: Network, tree: ast.Network) -> list[PartError]:
    """Fill `net`'s tables from the AST; return every error found."""
    errors: list[PartError] = []
    net.loc = tree.loc
    net.source_hash = source_hash(tree.source)
    long_name = long_name_error("network", tree.name, tree.loc)
    if long_name:
        errors.append(long_name)
    net.seed = resolve_seed(tree, errors)
    net.inputs = resolve_inputs(tree, errors)
    templates = Templates(tree, errors)
    net.templates = templates.ir_templates()
    net.levels = resolve_levels(tree, templates, errors)
    net.tasks = resolve_tasks(tree, net.inputs, templates, errors)
    net.constraints = resolve_constraints(tree, list(net.tasks), [lv.name for lv in tree.levels], errors)
    net.train = resolve_train(tree, errors)
    return errors
