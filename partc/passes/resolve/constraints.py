"""Resolve pass, constraints: `share a, b at l1..l3` and `private a at l9` with their names checked."""

from __future__ import annotations

from partc.errors import PartError, SpecError, valid_names
from partc.ir import Constraint
from partc.language import ast

MAX_CONSTRAINT_CELLS = 5_000_000  # (task, level) pairs all constraints name, each checked on the paths


def resolve_constraints(tree: ast.Network, tasks: list[str], level_names: list[str],
                        errors: list[PartError]) -> list[Constraint]:
    constraints = []
    known = set(tasks)
    positions = {name: i for i, name in enumerate(level_names)}
    cells = 0
    for c in tree.constraints:
        names = []
        for name, loc in c.tasks:
            if name not in known:
                errors.append(SpecError(f"{c.kind} names unknown task '{name}'", loc, valid_names(name, tasks, "tasks")))
            names.append(name)
        if len(set(names)) != len(names):
            errors.append(SpecError(f"{c.kind} names a task twice", c.loc, "name each task once"))
        elif c.kind == "share" and len(names) < 2:
            errors.append(SpecError("share needs at least two different tasks", c.loc, "e.g. 'share a, b at l1'"))
        levels = expand_levels(c.levels, level_names, errors, positions)
        cells += len(names) * len(levels)
        if cells > MAX_CONSTRAINT_CELLS:
            errors.append(SpecError(
                f"the share and private constraints name {cells:,} (task, level) pairs by here, more than partc checks "
                f"(at most {MAX_CONSTRAINT_CELLS:,})", c.loc, "constrain fewer tasks or levels"))
            break
        constraints.append(Constraint(c.kind, names, levels, c.loc))
    return constraints


def expand_levels(refs: list[ast.LevelRef], level_names: list[str], errors: list[PartError],
                  positions: dict[str, int] | None = None) -> list[str]:
    """`at l1..l3, l5` -> [l1, l2, l3, l5]; no `at`: every level."""
    if not refs:
        return list(level_names)
    if positions is None:
        positions = {name: i for i, name in enumerate(level_names)}
    out: dict[str, None] = {}  # ordered, no repeats
    for ref in refs:
        names = [ref.first] + ([ref.last] if ref.last else [])
        unknown = [n for n in names if n not in positions]
        if unknown:
            errors.append(SpecError(f"unknown level '{unknown[0]}'", ref.loc,
                                    valid_names(unknown[0], level_names, "levels")))
            continue
        lo, hi = positions[ref.first], positions[ref.last or ref.first]
        if hi < lo:
            errors.append(SpecError(f"level range {ref.first}..{ref.last} runs backwards", ref.loc,
                                    f"write {ref.last}..{ref.first}"))
            continue
        out.update(dict.fromkeys(level_names[lo : hi + 1]))
    return list(out)
