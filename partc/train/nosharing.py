"""Train stage, the no-sharing baseline (`partc train --no-sharing`).

Rewrites a spec so that every task keeps its own copy of each segment on
its path: a level gets one segment per (task, path index), grouped by
segment kind, and each task's path becomes the explicit range of its
copies. Segments no task uses are dropped; `share`/`private` constraints
are dropped (nothing is shared any more). Every task keeps exactly its
layers and parameter count, so the baseline differs from the original
only in sharing.

The product is spec *text* (printed from the AST), not just a modified
IR: a baseline run then stores a normal spec.part, and export, serve and
report read it like any other run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from partc.ir import Network
from partc.language import ast, parse

SUFFIX = "_nosharing"


def unshare(net: Network) -> Network:
    """The checked no-sharing network of `net` (named `<network>_nosharing`)."""
    from partc.spec import loads

    # A file name beside the original, so relative data paths resolve as in the original spec.
    virtual = Path(net.file).with_name(f"{Path(net.file).stem}{SUFFIX}.part")
    return loads(unshared_spec(net), str(virtual))


def unshared_spec(net: Network) -> str:
    tree = parse(net.source, net.file)
    tasks = list(net.tasks)
    new_paths: dict[str, dict[str, tuple[int, int]]] = {t: {} for t in tasks}
    lines = [
        f"# No-sharing baseline of '{net.name}' (spec hash {net.spec_hash}), written by",
        "# 'partc train --no-sharing': every task has private copies of its path's segments.",
        f"network {net.name}{SUFFIX} {{",
    ]
    lines += [f"  input {i.name}: {i.dtype}[{', '.join(map(str, i.shape))}]" for i in tree.inputs]
    lines.append(f"  seed {net.seed}")
    for seg in tree.segments:
        params = f"({', '.join(seg.params)})" if seg.params else ""
        lines.append(f"  segment {seg.name}{params} {_block(seg.layers)}")
    for level_def, level in zip(tree.levels, net.levels):
        kinds = []  # group index of each new segment, task by task
        for t in tasks:
            start = len(kinds)
            kinds += [_group_index(level, i) for i in net.tasks[t].path[level.name]]
            new_paths[t][level.name] = (start, len(kinds) - 1)
        groups = []
        for g in kinds:
            if groups and groups[-1][0] == g:
                groups[-1][1] += 1
            else:
                groups.append([g, 1])
        text = " + ".join(f"{count} x {_call(level_def.groups[g].template)}" for g, count in groups)
        if level_def.residual:
            text += " residual"
        if level_def.then:
            text += " then " + ", ".join(_call(c) for c in level_def.then)
        lines.append(f"  level {level.name} = {text}")
    for task_def in tree.tasks:
        lines += _task(task_def, new_paths[task_def.name])
    if tree.train:
        lines.append("  train {")
        lines += [f"    {s.name} {_value(s.value)}" for s in tree.train]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _group_index(level, index: int) -> int:
    for g, group in enumerate(level.groups):
        if index < group.count:
            return g
        index -= group.count
    raise IndexError(index)


def _task(t: ast.TaskDef, path: dict[str, tuple[int, int]]) -> list[str]:
    out = [f"  task {t.name} {{"]
    if t.input is not None:
        out.append(f"    input {t.input[0]}")
    if isinstance(t.stem, ast.Call):
        out.append(f"    stem {_call(t.stem)}")
    elif t.stem is not None:
        out.append(f"    stem {_block(t.stem)}")
    if t.data is not None:
        out.append(f"    data {_call(t.data)}")
    if t.classes is not None:
        out.append(f"    classes {_value(t.classes.value)}")
    if t.head is not None:
        out.append(f"    head {_block(t.head)}")
    out += [f"    {key} {_value(arg.value)}" for key, arg in t.settings.items()]
    items = [f"{level}[{a}..{b}]" if b > a else f"{level}[{a}]" for level, (a, b) in path.items()]
    out.append(f"    path {' '.join(items)}")
    out.append("  }")
    return out


def _block(layers: list[ast.Call]) -> str:
    return "{ " + "; ".join(_call(c) for c in layers) + " }"


def _call(c: ast.Call) -> str:
    if not c.args:
        return c.name
    args = [_value(a.value) if a.name is None else f"{a.name}={_value(a.value)}" for a in c.args]
    return f"{c.name}({', '.join(args)})"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, ast.Range):
        return f"{v.lo}..{v.hi}"
    if isinstance(v, ast.Ref):
        return v.name
    if isinstance(v, ast.Call):
        return _call(v)
    raise TypeError(f"cannot print spec value {v!r}")  # a bug: the parser makes no other value
