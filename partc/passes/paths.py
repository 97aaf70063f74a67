"""Pass select_paths: every task gets its segment indices at every level.

Explicit paths (`l1[0, 3]`) are taken as written; `random(N)` draws N of
the level's M segments. The draw ranks segments by a SHA-256 of
(seed, task, level, index), so it is the same on every run, machine and
Python version, and adding a task never changes another task's path.
`share`/`private` constraints steer the draw where the path is random;
the `check_constraints` pass then verifies them on the final paths.
"""

from __future__ import annotations

import functools
import hashlib

from partc.errors import PartError, SpecError
from partc.ir import Network
from partc.language import ast

# Sizes past which a check would take minutes or gigabytes (docs/check.md, "Limits"); the 5 MB
# spec bench/check_speed.py generates (100,000 tasks) holds 1.6 million uses and ranks 6.4 million.
MAX_ROUTE_CELLS = 5_000_000  # segment uses over all tasks and levels: the graph's task-labelled edges
MAX_RANKED = 20_000_000  # segments ranked by random draws: one SHA-256 digest each


def _rank(seed: int, task: str, level: str, count: int) -> list[int]:
    """Segment indices 0..count-1 ordered by SHA-256 of "seed/task/level/index"."""
    # Hash the shared prefix once and extend a copy per index: the same
    # digests as hashing each full string, at half the cost (a large spec
    # ranks hundreds of thousands of segments).
    prefix = hashlib.sha256(f"{seed}/{task}/{level}/".encode())
    keys = []
    for index in _index_bytes(count):
        h = prefix.copy()
        h.update(index)
        keys.append(h.digest())
    return sorted(range(count), key=keys.__getitem__)


@functools.lru_cache(maxsize=64)
def _index_bytes(count: int) -> tuple[bytes, ...]:
    return tuple(str(i).encode() for i in range(count))


def select_paths(net: Network, tree: ast.Network) -> list[PartError]:
    errors: list[PartError] = []
    levels = {lv.name: lv for lv in net.levels}
    random_draws: dict[tuple[str, str], int] = {}  # (task, level) -> N

    for t in tree.tasks:
        task = net.tasks.get(t.name)
        if task is None:
            continue
        if not t.path:
            errors.append(SpecError(
                f"task '{t.name}' has no path", t.loc,
                f"add e.g. 'path random(N)' (N of each level's segments) or 'path {net.levels[0].name}[0, 1] ...' "
                "per level" if net.levels else "add e.g. 'path random(N)'"))
            continue
        default_random = None
        for item in t.path:
            if item.kind == "random":
                if default_random is not None:
                    errors.append(SpecError(f"task '{t.name}' has two default random(N) paths", item.loc,
                                            "keep one random(N); name levels for the others, e.g. l1 random(2)"))
                default_random = item
                continue
            level = levels.get(item.level)
            if level is None:
                continue  # reported by resolve
            if item.level in task.path_locs:
                errors.append(SpecError(f"task '{t.name}' gives level '{item.level}' two paths", item.loc,
                                        "give each level one path"))
                continue
            task.path_locs[item.level] = item.loc
            if item.kind == "level_random":
                if _check_count(t.name, level, item.count, item, errors):
                    random_draws[(t.name, item.level)] = item.count
                    task.path[item.level] = ()
                continue
            bad = [i for i in item.indices if not 0 <= i < level.count]
            if bad:
                errors.append(SpecError(
                    f"segment index {bad[0]} is out of range for level '{level.name}'", item.loc,
                    f"level '{level.name}' has segments 0..{level.count - 1}"))
                continue
            if len(set(item.indices)) != len(item.indices):
                errors.append(SpecError(f"task '{t.name}' lists a segment of level '{level.name}' twice", item.loc,
                                        "list each segment index once"))
                continue
            task.path[item.level] = tuple(sorted(item.indices))
        for level in net.levels:
            if level.name in task.path_locs:
                continue
            if default_random is None:
                errors.append(SpecError(
                    f"task '{t.name}' has no path at level '{level.name}'", t.path[-1].loc,
                    f"add '{level.name}[i, ...]' (segments 0..{level.count - 1}) or '{level.name} random(N)' "
                    "to its path, or a default 'random(N)' for every level not named"))
                continue
            if _check_count(t.name, level, default_random.count, default_random, errors):
                random_draws[(t.name, level.name)] = default_random.count
                task.path[level.name] = ()
                task.path_locs[level.name] = default_random.loc
    if errors:
        return errors
    errors += _check_sizes(net, random_draws)
    if errors:
        return errors

    for level in net.levels:
        _draw_level(net, level.name, level.count, random_draws)
    # keep level order in every task's path table
    for task in net.tasks.values():
        task.path = {lv.name: task.path[lv.name] for lv in net.levels}
    return errors


def _check_sizes(net: Network, random_draws: dict[tuple[str, str], int]) -> list[PartError]:
    """Refuse routes too large to check in reasonable time and memory (every later pass is linear in them)."""
    errors: list[PartError] = []
    counts = {lv.name: lv.count for lv in net.levels}
    cells = sum(len(ix) for t in net.tasks.values() for ix in t.path.values()) + sum(random_draws.values())
    if cells > MAX_ROUTE_CELLS:
        errors.append(SpecError(
            f"the tasks' paths hold {cells:,} segment uses in all (tasks x levels x segments each), more than partc "
            f"checks (at most {MAX_ROUTE_CELLS:,})", net.loc,
            "use fewer tasks or levels, or smaller random(N) draws"))
    ranked = sum(counts[level] for _, level in random_draws)
    if ranked > MAX_RANKED:
        errors.append(SpecError(
            f"drawing the random paths would rank {ranked:,} segments (each random(N) ranks all M segments of its "
            f"level), more than partc draws (at most {MAX_RANKED:,})", net.loc,
            "use fewer segments per level or fewer random draws (explicit paths cost nothing to draw)"))
    return errors


def _check_count(task: str, level, n: int, item: ast.PathItem, errors: list[PartError]) -> bool:
    if not 1 <= n <= level.count:
        errors.append(SpecError(
            f"task '{task}' asks for random({n}) at level '{level.name}', which has {level.count} segments",
            item.loc, f"N must be between 1 and {level.count}"))
        return False
    return True


def _draw_level(net: Network, level: str, count: int, random_draws: dict[tuple[str, str], int]) -> None:
    """Fill the random paths of one level, honouring private and share constraints.

    Linear in the tasks and their constraints: the segments held by private
    tasks, by any task, and the segments common to each share's placed
    partners are kept up to date as tasks are placed, never recomputed.
    """
    private_tasks = {n for c in net.constraints if c.kind == "private" and level in c.levels for n in c.tasks}
    shares_of: dict[str, list[int]] = {}  # task -> the shares (by position) at this level naming it
    for share, c in enumerate(net.constraints):
        if c.kind == "share" and level in c.levels:
            for name in dict.fromkeys(c.tasks):
                shares_of.setdefault(name, []).append(share)
    common: dict[int, set[int]] = {}  # share -> segments common to all its partners placed so far
    held: set[int] = set()  # segments some placed task uses
    held_private: set[int] = set()  # segments some placed private task uses

    def place(name: str, segments: set[int]) -> None:
        held.update(segments)
        if name in private_tasks:
            held_private.update(segments)
        for share in shares_of.get(name, ()):
            common[share] = common[share] & segments if share in common else set(segments)

    for name, t in net.tasks.items():  # explicit paths are placed first
        if (name, level) not in random_draws:
            place(name, set(t.path[level]))

    # private tasks first, so the others can steer around them; then spec order
    position = {name: i for i, name in enumerate(net.tasks)}
    order = sorted((name for name in net.tasks if (name, level) in random_draws),
                   key=lambda n: (n not in private_tasks, position[n]))
    for name in order:
        n = random_draws[(name, level)]
        avoid = held if name in private_tasks else held_private
        ranking = _rank(net.seed, name, level, count)
        if avoid:  # unsatisfiable when too few are left: check_constraints reports it
            ranking = [i for i in ranking if i not in avoid] + [i for i in ranking if i in avoid]
        chosen = ranking[:n]
        for share in shares_of.get(name, ()):
            # The partners placed so far have a common segment (by induction); take one of those,
            # so that a share of three or more tasks ends with a segment common to all of them.
            segments = common.get(share)
            if segments and not segments & set(chosen):
                chosen[-1] = next(i for i in ranking if i in segments)
        place(name, set(chosen))
        net.tasks[name].path[level] = tuple(sorted(chosen))
