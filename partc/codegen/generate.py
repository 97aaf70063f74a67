"""Stage 4, codegen: checked IR -> readable source under `generated/<network>/`.

`generate` writes three files: `model.py`, standalone PyTorch code (it
imports only torch) whose state_dict keys equal the compiled `PartModel`'s,
so a partc checkpoint loads into it; `graph.dot`, the network drawn with
each task's path; `summary.md`, the `partc check` summary with path and
parameter tables. Every file is deterministic (no timestamps, spec order),
so the committed copies under `generated/` are guarded by a golden test.

`model.py` comes from one jinja2 template per construct (templates/):
header, the base class of segments with per-task layers (only when the
network has some), segment-template class, model class, task forward method.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import jinja2

from partc.codegen.torch_code import (
    TASK_SEGMENT,
    SegmentClass,
    class_key,
    class_name,
    concrete_layers,
    segment_class,
    tasks_code,
)
from partc.ir import Level, Network, SegmentGroup
from partc.layers import PRIMITIVES
from partc.version import __version__

TEMPLATES = Path(__file__).parent / "templates"
MAX_LINE = 110  # longer generated expressions are wrapped


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _render(template: str, **context) -> str:
    return _env().get_template(template).render(**context)


def generate(net: Network, out_dir: str | Path) -> list[Path]:
    """Write `out_dir/<network>/{model.py, graph.dot, summary.md}`; return their paths."""
    from partc.dot import to_dot

    folder = Path(out_dir) / net.name
    folder.mkdir(parents=True, exist_ok=True)
    files = {"model.py": render_model(net), "graph.dot": to_dot(net), "summary.md": render_summary(net)}
    paths = []
    for name, text in files.items():
        path = folder / name
        path.write_bytes(text.encode("utf-8"))  # bytes: "\n" line ends on every platform
        paths.append(path)
    return paths


def spec_file_name(net: Network) -> str:
    """The spec's file name without its folder: generated files must not depend on where they were made."""
    return Path(net.file).name


# ---- model.py ----

def render_model(net: Network) -> str:
    """The source of `model.py`: header, segment classes, model class with one forward per task."""
    stem_groups = {name: t.stem_group for name, t in net.tasks.items() if t.stem_group is not None}
    classes = _segment_classes(net, stem_groups)
    model_class = _unique(class_name(net.name), {c.name for c in classes.values()})
    parts = [_render("header.py.j2", net=net, version=__version__, spec_file=spec_file_name(net),
                     model_class=model_class, first_task=next(iter(net.tasks)))]
    if net.has_per_task_layers:
        parts.append(_render("task_segment.py.j2", name=TASK_SEGMENT))
    parts += [_render("segment.py.j2", cls=cls, max_line=MAX_LINE) for cls in classes.values()]
    stems = {}
    for name, task in net.tasks.items():
        if name in stem_groups:
            group = stem_groups[name]
            stems[name] = classes[class_key(group)].call(group, net.inputs[task.input].shape)
        elif task.stem is not None:
            stems[name] = _sequential(concrete_layers(task.stem))
    parts.append(_render(
        "model.py.j2", name=model_class, net=net,
        tasks=_tuple_lines("TASKS", [f'"{t}"' for t in net.tasks], indent=4),
        levels=[_level_view(net, level, classes) for level in net.levels],
        posts={lv.name: _sequential(concrete_layers(lv.then)) for lv in net.levels},
        stems=stems,
        heads={t.name: _sequential(concrete_layers(t.head)) for t in net.tasks.values()},
        forwards=[_render("task_forward.py.j2", **_task_view(net, name)) for name in net.tasks],
    ))
    return "".join(parts)


def _segment_classes(net: Network, stem_groups: dict[str, SegmentGroup]) -> dict[tuple, SegmentClass]:
    """One class per (template, tensor ranks) the spec uses, named after the template, in spec order."""
    groups = [g for lv in net.levels for g in lv.groups] + list(stem_groups.values())
    classes: dict[tuple, SegmentClass] = {}
    taken = {"Tensor", TASK_SEGMENT} if net.has_per_task_layers else {"Tensor"}
    for group in groups:
        key = class_key(group)
        if group.template in PRIMITIVES or key in classes:
            continue
        name = _unique(class_name(group.template), taken)
        taken.add(name)
        classes[key] = segment_class(net.templates[group.template], group, name)
    return classes


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}{n}", n + 1
    return candidate


def _level_view(net: Network, level: Level, classes: dict[tuple, SegmentClass]) -> dict:
    """The level's `nn.ModuleList(...)` as lines: `[Segment(...) for _ in range(n)]` per group, or, for a
    group with per-task layers, one constructor call per segment, naming the tasks routed through it."""
    parts, start = [], 0
    for group in level.groups:
        if not group.has_per_task_layers:
            parts.append([f"[{_segment_call(group, level, classes)} for _ in range({group.count})]"])
        else:
            users = [[t for t in net.tasks if t in net.segment_users(level.name, i)]
                     for i in range(start, start + group.count)]
            calls = [_segment_lines(_segment_call(group, level, classes, u), u, indent=20) for u in users]
            parts.append(["["] + [f"    {line}" for lines in calls for line in lines] + ["]"])
        start += group.count
    if len(parts) == 1:
        lines = [f'"{level.name}": nn.ModuleList({parts[0][0]}'] + parts[0][1:]
        lines[-1] += "),"
    else:
        lines = [f'"{level.name}": nn.ModuleList(']
        for k, part in enumerate(parts):
            lead = "+ " if k else ""
            lines += [f"    {lead}{part[0]}"] + [f"    {line}" for line in part[1:]]
        lines.append("),")
    return {"name": level.name, "lines": lines}


def _segment_lines(call: str, tasks: list[str], indent: int) -> list[str]:
    """A segment's constructor call as a list item; too long for one line, broken inside its task tuple."""
    if indent + len(call) + 1 <= MAX_LINE:
        return [call + ","]
    names = tasks_code(tasks)
    cut = call.rindex(names)
    items = [f'"{t}"' for t in tasks]
    body = [f"    {', '.join(group)}," for group in _fill_lines(items, indent + 4, ", ")]
    return [call[:cut] + "("] + body + [")" + call[cut + len(names):] + ","]


def _segment_call(group: SegmentGroup, level: Level, classes: dict[tuple, SegmentClass],
                  tasks: list[str] | None = None) -> str:
    """The constructor call of one segment of `group` (`tasks`: its users, for per-task layers)."""
    if group.template not in PRIMITIVES:
        return classes[class_key(group)].call(group, level.in_shape, tasks)
    calls = concrete_layers(group.layers, tasks)
    return f"{TASK_SEGMENT}({', '.join(calls)})" if tasks is not None else _sequential(calls)


def _sequential(calls: list[str]) -> str:
    return f"nn.Sequential({', '.join(calls)})"


def _task_view(net: Network, name: str) -> dict:
    task = net.tasks[name]
    steps = []
    for level in net.levels:
        own = {i for i in task.path[level.name] if level.group_of(i).has_per_task_layers}
        terms = [f'seg[{i}](x, "{name}")' if i in own else f"seg[{i}](x)" for i in task.path[level.name]]
        terms += ["x"] if level.residual else []
        if level.then:
            head, tail = f'x = self.posts["{level.name}"](', ")"
        else:
            head, tail = "x = ", ""
        steps.append({"level": level.name, "lines": _wrap_sum(head, terms, tail, indent=8)})
    return {"name": name, "task": task, "route_params": f"{net.task_params(name):,}", "steps": steps}


def _tuple_lines(name: str, items: list[str], indent: int) -> list[str]:
    """`NAME = (a, b)` on one line, or wrapped: a line of items after another."""
    line = f"{name} = ({', '.join(items)}{',' if len(items) == 1 else ''})"
    if indent + len(line) <= MAX_LINE:
        return [line]
    return [f"{name} = ("] + [f"    {', '.join(group)}," for group in _fill_lines(items, indent + 4, ", ")] + [")"]


def _wrap_sum(head: str, terms: list[str], tail: str, indent: int) -> list[str]:
    """`head a + b + ... tail` on one line, or broken before a `+` when too long."""
    line = head + " + ".join(terms) + tail
    if indent + len(line) <= MAX_LINE:
        return [line]
    opener, closer = (head, tail) if tail else (head + "(", ")")
    groups = _fill_lines(terms, indent + 6, " + ")
    body = [" + ".join(groups[0])] + ["+ " + " + ".join(group) for group in groups[1:]]
    return [opener] + ["    " + b for b in body] + [closer]


def _fill_lines(items: list[str], indent: int, sep: str) -> list[list[str]]:
    """Greedy line filling: consecutive groups of `items` whose joined line stays within MAX_LINE."""
    groups: list[list[str]] = [[]]
    for item in items:
        if groups[-1] and indent + len(sep.join(groups[-1] + [item])) + len(sep) > MAX_LINE:
            groups.append([])
        groups[-1].append(item)
    return groups


# ---- summary.md ----

def render_summary(net: Network) -> str:
    from partc.summary import segment_params_text, summary

    spec_file = spec_file_name(net)
    check = summary(dataclasses.replace(net, file=spec_file))
    paths = []
    for name, task in net.tasks.items():
        cells = [", ".join(f"{i}{'*' if len(net.segment_users(lv.name, i)) == 1 else ''}" for i in task.path[lv.name])
                 for lv in net.levels]
        paths.append([name] + cells)
    tasks = []
    for name, task in net.tasks.items():
        split = net.param_split(name)
        tasks.append([name, task.classes, split.total, split.shared, split.private, split.task_owned, split.stem_head])
    levels = []
    for lv in net.levels:
        level_total = sum(net.segment_params(lv.name, i) for i in range(lv.count))
        levels.append([lv.name, lv.count, segment_params_text(lv), level_total])
    return _render("summary.md.j2", net=net, version=__version__, spec_file=spec_file, check=check,
                   paths=paths, tasks=tasks, levels=levels, owned=net.has_per_task_layers)
