"""Train stage, the no-sharing baseline (`partc train --no-sharing`).

Rewrites a spec so that every task keeps its own copy of each segment on
its path: a level gets one segment per (task, path index), grouped by
segment kind, and each task's path becomes the explicit range of its
copies. Segments no task uses are dropped; `share`/`private` constraints
are dropped (nothing is shared any more). Every task keeps exactly its
layers and parameter count, so the baseline differs from the original
only in sharing.

The product is spec *text* (printed from the checked network), not just a modified
IR: a baseline run then stores a normal spec.part, and export, serve and
report read it like any other run.
"""

from __future__ import annotations

from pathlib import Path

from partc.data.catalog import SOURCES
from partc.ir import Network, Task
from partc.language.printer import group_text, layer_text, shape_text, value_text

SUFFIX = "_nosharing"


def unshare(net: Network) -> Network:
    """The checked no-sharing network of `net` (named `<network>_nosharing`)."""
    from partc.spec import loads

    # A file name beside the original, so relative data paths resolve as in the original spec.
    virtual = Path(net.file).with_name(f"{Path(net.file).stem}{SUFFIX}.part")
    return loads(unshared_spec(net), str(virtual))


def unshared_spec(net: Network) -> str:
    """The baseline's spec text, printed from the checked network (its templates, levels, tasks, train block)."""
    tasks = list(net.tasks)
    lines = [
        f"# No-sharing baseline of '{net.name}' (spec hash {net.spec_hash}), written by",
        "# 'partc train --no-sharing': every task has private copies of its path's segments.",
        f"network {net.name}{SUFFIX} {{",
    ]
    lines += [f"  input {i.name}: {i.dtype}{shape_text(i.shape)}" for i in net.inputs.values()]
    lines.append(f"  seed {net.seed}")
    for template in net.templates.values():
        params = f"({', '.join(template.params)})" if template.params else ""
        lines.append(f"  segment {template.name}{params} {{ {'; '.join(layer.written for layer in template.layers)} }}")
    new_paths: dict[str, dict[str, tuple[int, int]]] = {t: {} for t in tasks}
    for level in net.levels:
        kinds = []  # group index of each new segment, task by task
        for t in tasks:
            start = len(kinds)
            kinds += [_group_index(level, i) for i in net.tasks[t].path[level.name]]
            new_paths[t][level.name] = (start, len(kinds) - 1)
        groups: list[list[int]] = []
        for g in kinds:
            if groups and groups[-1][0] == g:
                groups[-1][1] += 1
            else:
                groups.append([g, 1])
        text = " + ".join(f"{count} x {group_text(level.groups[g])}" for g, count in groups)
        if level.residual:
            text += " residual"
        if level.then:
            text += " then " + ", ".join(layer_text(layer) for layer in level.then)
        lines.append(f"  level {level.name} = {text}")
    for name, task in net.tasks.items():
        lines += _task(net, task, new_paths[name])
    if net.train:
        lines.append("  train {")
        lines += [f"    {key} {value_text(value)}" for key, value in net.train.items()]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _group_index(level, index: int) -> int:
    for g, group in enumerate(level.groups):
        if index < group.count:
            return g
        index -= group.count
    raise IndexError(index)


def _task(net: Network, task: Task, path: dict[str, tuple[int, int]]) -> list[str]:
    out = [f"  task {task.name} {{"]
    if task.input != net.trunk_input.name:
        out.append(f"    input {task.input}")
    if task.stem_group is not None:
        out.append(f"    stem {group_text(task.stem_group)}")
    elif task.stem is not None:
        out.append(f"    stem {{ {'; '.join(layer_text(layer) for layer in task.stem)} }}")
    source = SOURCES[task.data.source]
    args = [value_text(task.data.args[p]) for p in source.positional]
    args += [f"{k}={value_text(v)}" for k, v in task.data.args.items() if k not in source.positional]
    out.append(f"    data {task.data.source}({', '.join(args)})" if args else f"    data {task.data.source}")
    if task.classes_value is not None:
        out.append(f"    classes {value_text(task.classes_value)}")
    if task.head_written:
        out.append(f"    head {{ {'; '.join(layer_text(layer) for layer in task.head[:task.head_written])} }}")
    for key in ("weight", "sampling"):
        if getattr(task, key) != 1.0:
            out.append(f"    {key} {value_text(getattr(task, key))}")
    items = [f"{level}[{a}..{b}]" if b > a else f"{level}[{a}]" for level, (a, b) in path.items()]
    out.append(f"    path {' '.join(items)}")
    out.append("  }")
    return out
