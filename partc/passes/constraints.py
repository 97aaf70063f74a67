"""Pass check_constraints: every `share` and `private` constraint holds on the final paths.

A random draw is steered by the constraints (`select_paths`), an explicit
path is not: either way this pass says which constraint fails, on which
level, with both tasks' segments.
"""

from __future__ import annotations

from collections import defaultdict

from partc.errors import PartError, SpecError
from partc.ir import Network
from partc.language import ast

MAX_REPORTED = 10  # contradictions looked for: as many as a stage reports (`raise_collected`)


def _contradictions(net: Network) -> list[PartError]:
    """share and private on the same tasks and level can never both hold."""
    errors: list[PartError] = []
    shares = [c for c in net.constraints if c.kind == "share"]
    shares_at: dict[tuple[str, str], set[int]] = defaultdict(set)  # (task, level) -> the shares there
    for number, share in enumerate(shares):
        for task in share.tasks:
            for level in share.levels:
                shares_at[task, level].add(number)
    for private in (c for c in net.constraints if c.kind == "private"):
        clashing = sorted({n for t in private.tasks for lv in private.levels for n in shares_at.get((t, lv), ())})
        for share in (shares[n] for n in clashing):
            tasks = [t for t in private.tasks if t in share.tasks]
            levels = [lv for lv in private.levels if lv in share.levels]
            partner = next(t for t in share.tasks if t != tasks[0])
            errors.append(SpecError(
                f"share and private contradict: '{tasks[0]}' must share a segment with '{partner}' at level "
                f"'{levels[0]}' (line {share.loc.line}) and keep that level to itself", private.loc,
                "drop one of the two constraints, or give them different levels"))
            if len(errors) >= MAX_REPORTED:
                return errors
    return errors


def check_constraints(net: Network, tree: ast.Network) -> list[PartError]:
    """Every share/private constraint holds on the final paths."""
    errors = _contradictions(net)
    if errors:
        return errors
    position = {name: i for i, name in enumerate(net.tasks)}
    users: dict[tuple[str, int], list[str]] = defaultdict(list)  # (level, segment) -> its tasks, in spec order
    for name, task in net.tasks.items():
        for level, indices in task.path.items():
            for i in indices:
                users[level, i].append(name)
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
                # the first task in spec order that also uses one of t's segments here
                others = {o for i in paths[t] for o in users[level, i][:2] if o != t}
                if not others:
                    continue
                o = min(others, key=position.__getitem__)
                segs = paths[t] & set(net.tasks[o].path[level])
                count = net.level(level).count
                errors.append(SpecError(
                    f"private cannot hold: task '{t}' must have level '{level}' to itself, "
                    f"but '{o}' also uses segment(s) {sorted(segs)}", c.loc,
                    f"'{t}' uses {sorted(paths[t])}, '{o}' uses {sorted(net.tasks[o].path[level])} of segments "
                    f"0..{count - 1}: give them disjoint segments, or drop the constraint"))
                break  # one clash per level says enough
        if len(errors) >= MAX_REPORTED:
            break
    return errors
