"""Train stage, growing a trained network: `partc extend BASE_RUN GROWN.part --out NEW_RUN`.

The grown spec is the base spec with tasks added (and levels perhaps given
more segments, appended). `plan_extension` checks it against the base run
before anything trains, with errors located in the grown spec, and writes
the *effective* spec: the grown spec (comments kept) with every base task's
route made explicit as the base run trained it, since random draws move
when a level grows. `extend` then trains the new tasks into NEW_RUN, a
normal run directory, with everything the base tasks compute frozen:

- frozen: every stem and head of a base task, and in every segment a base
  task routes through, every layer (parameters and buffers; a `batchnorm`
  there normalises new tasks with its running statistics and never updates
  them, since frozen modules stay in eval mode), except that a per-task
  layer (`task_batchnorm`) gives each new task a trainable copy of its own;
- trained: the new tasks' stems, heads, new segments, base segments no
  base task used, and their own per-task layers, with the grown spec's
  settings; gradients flow through frozen segments to earlier trainable
  ones.

So a base task's logits are bit-identical to the base run's (tested), and
its test metrics, re-measured in NEW_RUN every epoch, equal the base run's.
run.json records the lineage (`extend`: base run, its spec hash, frozen
modules), so `--resume` and a further `extend` work from NEW_RUN alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partc.errors import CheckpointError, Location, PartError, SpecError, TrainError, raise_collected
from partc.ir import Network, Task
from partc.language import ast, parse, read_spec
from partc.language.printer import format_spec, group_text, layer_text, value_text
from partc.layers import PRIMITIVES, module_path
from partc.run import Growth, load_checkpoint, load_run_network, read_results, require_info, run_paths, run_state
from partc.spec import loads


@dataclass
class Extension:
    """A checked extension: the effective network and spec text, the base's weights, what to freeze."""

    net: Network  # the effective network (base routes explicit)
    spec_text: str  # its spec, written into NEW_RUN/spec.part
    growth: Growth
    base_state: dict[str, Any]  # the base run's last.pt model weights


# ---- the base run ----------------------------------------------------------------------------------

def _base_run(base_run: Path, out: Path | None) -> tuple[Network, dict, dict]:
    """(network, run.json, last.pt) of a finished base run; a clear error for any other."""
    if out is not None:
        base, new = base_run.resolve(), out.resolve()
        if new == base or base in new.parents:
            raise TrainError(f"--out '{out}' is the base run or inside it",
                             hint="write the extended run to a directory of its own, e.g. beside the base run")
    info = require_info(base_run)
    net = load_run_network(base_run)
    state = load_checkpoint(run_paths(base_run)["last"], net)
    done, planned = int(state.get("epoch", 0)), int(info.get("epochs", 0))
    if done < planned:
        raise CheckpointError(f"base run '{base_run}' is unfinished: {done} of {planned} epochs",
                              hint=f"finish it first: partc train {run_paths(base_run)['spec']} --out {base_run} --resume")
    if info.get("no_sharing"):
        raise TrainError(f"base run '{base_run}' is a no-sharing baseline",
                         hint="extend the run of the spec itself; baselines are for comparison")
    return net, info, state


# ---- compatibility ---------------------------------------------------------------------------------

def _task_differences(base: Task, grown: Task) -> list[tuple[str, Location]]:
    """What a grown spec changed of a base task, as (`what before -> after`, where the grown spec says it)."""
    found = []
    if base.input != grown.input:
        found.append((f"input {base.input} -> {grown.input}", grown.input_loc or grown.loc))
    a, b = base.data, grown.data
    if b is None or a.source != b.source:
        found.append((f"data {a.source} -> {b.source if b else 'none'}", b.loc if b else grown.loc))
    else:
        for key in sorted(set(a.args) | set(b.args), key=lambda k: (k != "classes", k)):
            before, after = a.args.get(key), b.args.get(key)
            if value_text(before, False) != value_text(after, False):
                found.append((f"data {key} {value_text(before)} -> {value_text(after)}", b.loc))
    if base.labels != grown.labels and not found:
        found.append((f"classes {value_text(base.labels)} -> {value_text(grown.labels)}", grown.loc))
    for part, before_layers, after_layers in [("stem", base.stem or [], grown.stem or []),
                                              ("head", base.head[:base.head_written], grown.head[:grown.head_written])]:
        before = "; ".join(layer_text(x, False) for x in before_layers) or "none"
        after = "; ".join(layer_text(x, False) for x in after_layers) or "none"
        if before != after:
            found.append((f"{part} {before} -> {after}", after_layers[0].loc if after_layers else grown.loc))
    return found


def check_compatible(base: Network, grown: Network, grown_tree: ast.Network) -> None:
    """Every base task, segment and input is in the grown spec unchanged; located errors otherwise."""
    errors: list[PartError] = []

    def err(message: str, loc: Location | None, hint: str = "") -> None:
        errors.append(SpecError(message, loc, hint or None))

    if grown.name != base.name:
        err(f"the grown spec is network '{grown.name}', the base run is network '{base.name}'", grown.loc,
            f"extend a spec of network '{base.name}'")
    if grown.seed != base.seed:
        seed_loc = grown_tree.seeds[0][1] if grown_tree.seeds else grown.loc
        err(f"seed {grown.seed} differs from the base run's seed {base.seed}", seed_loc,
            f"keep 'seed {base.seed}': the base tasks' data splits depend on it")
    for name, spec in base.inputs.items():
        now = grown.inputs.get(name)
        if now is None or (now.dtype, now.shape) != (spec.dtype, spec.shape):
            err(f"input '{name}' differs from the base run: {spec.dtype}{list(spec.shape)} -> "
                f"{f'{now.dtype}{list(now.shape)}' if now else 'missing'}", now.loc if now else grown.loc,
                "keep every input of the base run as it was")
    if grown.trunk_input.name != base.trunk_input.name:
        err(f"the first input is '{grown.trunk_input.name}', the base run's trunk reads '{base.trunk_input.name}'",
            grown.trunk_input.loc, f"declare '{base.trunk_input.name}' first")
    base_levels = [lv.name for lv in base.levels]
    grown_levels = [lv.name for lv in grown.levels]
    if grown_levels != base_levels:
        where = next((lv.loc for lv in grown.levels if lv.name not in base_levels), grown.loc)
        err(f"levels {', '.join(grown_levels)} differ from the base run's {', '.join(base_levels)}", where,
            "keep the base run's levels, in its order: a base task routes through every level")
    for lv in base.levels:
        if lv.name not in grown_levels:
            continue
        now = grown.level(lv.name)
        if now.count < lv.count:
            err(f"level '{lv.name}' has {now.count} segments, the base run {lv.count}", now.loc,
                f"keep its {lv.count} segments; new ones may be appended")
            continue
        if (lv.residual, [layer_text(x, False) for x in lv.then]) != (now.residual, [layer_text(x, False) for x in now.then]):
            err(f"level '{lv.name}' differs from the base run in residual or then", now.loc,
                "keep the level's residual and then ops")
        for i in range(lv.count):
            a, b = lv.group_of(i), now.group_of(i)
            if [layer_text(x, False) for x in a.layers] != [layer_text(x, False) for x in b.layers]:
                err(f"segment {i} of level '{lv.name}' differs from the base run: {group_text(a, False)} -> "
                    f"{group_text(b, False)}", b.loc, "keep the base segments; append new ones after them")
                break
    explicit = {t.name: {item.level for item in t.path if item.kind == "explicit"} for t in grown_tree.tasks}
    for name, task in base.tasks.items():
        now = grown.tasks.get(name)
        if now is None:
            err(f"base task '{name}' is missing from the grown spec", grown.loc,
                "a grown spec keeps every task of the base run (its route is made explicit for you)")
            continue
        for difference, loc in _task_differences(task, now):
            err(f"task '{name}' differs from the base run: {difference}", loc,
                "a base task keeps its data, classes, stem and head; add new tasks instead")
        for level in explicit.get(name, ()):
            if level in task.path and now.path.get(level) != task.path[level]:
                err(f"task '{name}' differs from the base run: route at {level} {list(task.path[level])} -> "
                    f"{list(now.path[level])}", now.path_locs.get(level, now.loc),
                    "drop the explicit path: base tasks keep the routes they were trained with")
    if not set(grown.tasks) - set(base.tasks):
        err("the grown spec adds no task to the base run", grown.loc, "add a task block for each new task")
    raise_collected(errors)


# ---- the effective spec ----------------------------------------------------------------------------

def effective_spec(grown_tree: ast.Network, base: Network, grown_file: str) -> str:
    """The grown spec's text with every base task's path replaced by its trained route (comments kept)."""
    for t in grown_tree.tasks:
        if t.name not in base.tasks:
            continue
        loc = t.path[0].loc if t.path else t.loc
        t.path = [ast.PathItem("explicit", level, None, list(indices), loc)
                  for level, indices in base.tasks[t.name].path.items()]
    header = (f"# Effective spec written by 'partc extend': {Path(grown_file).name} over the base run, base tasks'\n"
              f"# routes ({', '.join(base.tasks)}) as trained there.\n")
    return header + format_spec(grown_tree)


def frozen_modules(base: Network, net: Network) -> tuple[str, ...]:
    """Module paths of everything a base task computes with: its stem and head, and each segment it uses,
    whole, or layer by layer where a per-task layer gives new tasks copies of their own."""
    paths: list[str] = []
    for name in base.tasks:
        if net.tasks[name].stem is not None:
            paths.append(f"stems.{name}")
        paths.append(f"heads.{name}")
    order = list(base.tasks)
    for lv in base.levels:
        for i in range(lv.count):
            users = sorted(base.segment_users(lv.name, i), key=order.index)
            layers = lv.group_of(i).layers
            container = f"levels.{lv.name}.{i}"
            if not users:
                continue
            if not any(PRIMITIVES[layer.op].per_task for layer in layers):
                paths.append(container)
                continue
            for position, layer in enumerate(layers):
                if PRIMITIVES[layer.op].per_task:
                    paths += [module_path(container, position, layer.op, task) for task in users]
                else:
                    paths.append(module_path(container, position, layer.op))
    return tuple(paths)


def describe_extension(extension: Extension) -> str:
    """What `partc extend` will do, for `partc check GROWN --base BASE_RUN`."""
    g = extension.growth
    segments = [path for path in g.frozen_modules if path.startswith("levels.")]
    lines = [f"extends run {g.base_run} (network {g.base_network}, spec {g.base_spec_hash}):",
             f"  base tasks keep their trained routes and weights: {', '.join(g.base_tasks)}",
             f"  new tasks train: {', '.join(g.new_tasks)}",
             f"  frozen: {len(segments)} segment module(s), the base tasks' stems and heads" if g.freeze else
             "  nothing frozen (--no-freeze): the base tasks will change"]
    return "\n".join(lines) + "\n"


def plan_extension(base_run: str | Path, grown_path: str | Path, out: str | Path | None = None, *,
                   freeze: bool = True) -> Extension:
    """Check the grown spec against the base run; the effective network, its spec text and the freeze plan."""
    base_run = Path(base_run)
    base, info, state = _base_run(base_run, Path(out) if out is not None else None)
    text = read_spec(grown_path)
    grown_tree = parse(text, str(grown_path))
    grown = loads(text, str(grown_path))
    check_compatible(base, grown, grown_tree)
    spec_text = effective_spec(grown_tree, base, str(grown_path))
    net = loads(spec_text, str(grown_path))
    moved = [t for t in base.tasks if net.tasks[t].path != base.tasks[t].path]
    if moved:  # cannot happen: the effective spec writes them out; a bug if it does
        raise TrainError(f"internal error: base task routes moved ({', '.join(moved)})")
    base_results, _ = read_results(base_run)
    growth = Growth(str(base_run), base.name, base.spec_hash, tuple(base.tasks),
                    tuple(t for t in net.tasks if t not in base.tasks),
                    frozen_modules(base, net) if freeze else (), freeze, {lv.name: lv.count for lv in base.levels},
                    {t: v for t, v in (base_results or {}).get("tasks", {}).items() if t in base.tasks})
    return Extension(net, spec_text, growth, state["model"])


def extend(base_run: str | Path, grown_path: str | Path, out_dir: str | Path, *, epochs: int | None = None,
           device: str = "auto", mode: str | None = None, data_root: str | Path | None = None, quiet: bool = False,
           resume: bool = False, freeze: bool = True, seed: int | None = None, world=None) -> dict:
    """Train the grown spec's new tasks over BASE_RUN into OUT_DIR (see the module docstring); the results.

    The base run is only read. With `resume`, OUT_DIR must be this extension's run directory.
    `seed` replaces the grown spec's train seed (a member of a seed group). Under torchrun, rank 0
    reads the base run and hands every rank the plan (`partc.train.distributed`).
    """
    from partc.train.distributed import joined
    from partc.train.runner import train

    if world is None:
        with joined(device) as world:
            return extend(base_run, grown_path, out_dir, epochs=epochs, device=device, mode=mode, data_root=data_root,
                          quiet=quiet, resume=resume, freeze=freeze, seed=seed, world=world)
    out = Path(out_dir)
    if resume and world.main and run_state(out) == "unfinished":
        resume = False  # its start-up was cut short before run.json: train() clears it and starts again
    extension = world.agreed(_plan_on_main, base_run, grown_path, out, freeze, resume, world)
    shared = world.broadcast((extension.spec_text, extension.growth, extension.base_state, resume)
                             if world.main else None)
    net = world.agreed(lambda: extension.net if world.main else loads(shared[0], str(grown_path)))
    if shared[3]:
        return train(net, out, device=device, resume=True, epochs=epochs, mode=mode, data_root=data_root,
                     quiet=quiet, seed=seed, world=world)
    return train(net, out, device=device, epochs=epochs, mode=mode, data_root=data_root, quiet=quiet,
                 growth=shared[1], initial_state=shared[2], seed=seed, world=world)


def _plan_on_main(base_run, grown_path, out: Path, freeze: bool, resume: bool, world) -> Extension | None:
    """The checked extension, on rank 0 (the others get it from there); for `resume`, OUT is this extension's."""
    if not world.main:
        return None
    extension = plan_extension(base_run, grown_path, out, freeze=freeze)
    if resume:
        recorded = require_info(out).get("extend") if out.is_dir() else None
        if recorded is None or not extension.net.matches_hash(require_info(out).get("spec_hash")):
            raise CheckpointError(f"'{out}' is not an extension of '{base_run}' by '{grown_path}'",
                                  hint="resume with the base run and grown spec it was started from")
    return extension


def extend_group(base: str | Path, grown_path: str | Path, out_dir: str | Path, seeds: list[int], *,
                 resume: bool = False, quiet: bool = False, **options: Any) -> dict[int, dict]:
    """`partc extend --seeds`: one extension per seed into OUT/seed-N (a seed group, as `partc train --seeds`).

    A base seed group extends member by member (its seed-N by seed N: a paired comparison of the
    grown tasks stays paired); a single base run is extended once per train seed.
    """
    import sys

    from partc.run import is_group, member_dir, require_group
    from partc.train.seeds import group_table, run_group

    base = Path(base)
    if is_group(base):
        missing = [s for s in seeds if s not in require_group(base).get("seeds", [])]
        if missing:
            raise TrainError(f"base seed group '{base}' has no member for seed(s) {', '.join(map(str, missing))}",
                             hint=f"use its seeds ({', '.join(map(str, require_group(base)['seeds']))}), or train them")
    first_base = member_dir(base, seeds[0]) if is_group(base) else base
    net = plan_extension(first_base, grown_path).net
    about = {"network": net.name, "source_network": net.name, "source_spec_hash": net.spec_hash, "no_sharing": False,
             "extends": str(base)}

    def run_one(member: Path, seed: int) -> dict:
        member_base = member_dir(base, seed) if is_group(base) else base
        return extend(member_base, grown_path, member, seed=seed, quiet=quiet,
                      resume=resume and run_paths(member)["info"].is_file(), **options)

    results = run_group(out_dir, seeds, run_one, about, resume=resume, quiet=quiet)
    if not quiet:
        sys.stdout.write(group_table(net.name, results))
    return results
