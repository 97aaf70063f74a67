"""Pass check_constraints: every `share` and `private` constraint holds on the final paths.

A random draw is steered by the constraints (`select_paths`), an explicit
path is not: either way this pass says which constraint fails, on which
level, with both tasks' segments.
"""

from __future__ import annotations

from partc.errors import PartError, SpecError
from partc.ir import Network
from partc.language import ast


def _contradictions(net: Network) -> list[PartError]:
    """share and private on the same tasks and level can never both hold."""
    errors: list[PartError] = []
    for private in (c for c in net.constraints if c.kind == "private"):
        for share in (c for c in net.constraints if c.kind == "share"):
            tasks = [t for t in private.tasks if t in share.tasks]
            levels = [lv for lv in private.levels if lv in share.levels]
            if tasks and levels:
                partner = next(t for t in share.tasks if t != tasks[0])
                errors.append(SpecError(
                    f"share and private contradict: '{tasks[0]}' must share a segment with '{partner}' at level "
                    f"'{levels[0]}' (line {share.loc.line}) and keep that level to itself", private.loc,
                    "drop one of the two constraints, or give them different levels"))
    return errors


def check_constraints(net: Network, tree: ast.Network) -> list[PartError]:
    """Every share/private constraint holds on the final paths."""
    errors = _contradictions(net)
    if errors:
        return errors
    for c in net.constraints:
        if any(t not in net.tasks for t in c.tasks):
            continue
        for level in c.levels:
            paths = {t: set(net.tasks[t].path[level]) for t in c.tasks}
            if c.kind == "share":
                common = set.intersection(*paths.values())
                if not common:
                    shown = ", ".join(f"'{t}' uses {sorted(p)}" for t, p in paths.items())
                    errors.append(SpecError(
                        f"share cannot hold: {', '.join(c.tasks)} have no common segment at level '{level}'",
                        c.loc, f"{shown}: give them a common segment index there"))
                continue
            for t in c.tasks:
                clash = next(((o, set(p.path[level]) & paths[t]) for o, p in net.tasks.items()
                              if o != t and set(p.path[level]) & paths[t]), None)
                if clash is None:
                    continue
                o, segs = clash
                count = net.level(level).count
                errors.append(SpecError(
                    f"private cannot hold: task '{t}' must have level '{level}' to itself, "
                    f"but '{o}' also uses segment(s) {sorted(segs)}", c.loc,
                    f"'{t}' uses {sorted(paths[t])}, '{o}' uses {sorted(net.tasks[o].path[level])} of segments "
                    f"0..{count - 1}: give them disjoint segments, or drop the constraint"))
                break  # one clash per level says enough
    return errors
