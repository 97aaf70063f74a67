"""Stage 4, codegen: checked IR -> readable source under `generated/<network>/`.

`generate` writes three files: `model.py`, standalone PyTorch code (it
imports only torch) whose state_dict keys equal the compiled `PartModel`'s,
so a partc checkpoint loads into it; `graph.dot`, the network drawn with
each task's path; `summary.md`, the `partc check` summary with path and
parameter tables. Every file is deterministic (no timestamps, spec order),
so the committed copies under `generated/` are guarded by a golden test.

`model.py` comes from one jinja2 template per construct (templates/):
header, segment-template class, model class, task forward method.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import jinja2

from partc.codegen.torch_code import SegmentClass, class_key, class_name, concrete_layers, segment_class
from partc.ir import Network, SegmentGroup
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
        levels=[_level_view(level, classes) for level in net.levels],
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
    taken = {"Tensor"}
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


def _level_view(level, classes: dict[tuple, SegmentClass]) -> dict:
    parts = []
    for group in level.groups:
        if group.template in PRIMITIVES:
            one = _sequential(concrete_layers(group.layers))
        else:
            one = classes[class_key(group)].call(group, level.in_shape)
        parts.append(f"[{one} for _ in range({group.count})]")
    return {"name": level.name, "parts": parts}


def _sequential(calls: list[str]) -> str:
    return f"nn.Sequential({', '.join(calls)})"


def _task_view(net: Network, name: str) -> dict:
    task = net.tasks[name]
    steps = []
    for level in net.levels:
        terms = [f"seg[{i}](x)" for i in task.path[level.name]] + (["x"] if level.residual else [])
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
    from partc.summary import summary

    spec_file = spec_file_name(net)
    check = summary(dataclasses.replace(net, file=spec_file))
    paths = []
    for name, task in net.tasks.items():
        cells = [", ".join(f"{i}{'*' if len(net.segment_users(lv.name, i)) == 1 else ''}" for i in task.path[lv.name])
                 for lv in net.levels]
        paths.append([name] + cells)
    tasks = []
    for name, task in net.tasks.items():
        total, shared = net.task_params(name), net.task_shared_params(name)
        stem_head = task.stem_params + task.head_params
        tasks.append([name, task.classes, total, shared, total - shared - stem_head, stem_head])
    levels = []
    for lv in net.levels:
        per_segment = sorted({lv.segment_params(i) for i in range(lv.count)})
        level_total = sum(lv.segment_params(i) for i in range(lv.count))
        levels.append([lv.name, lv.count, "/".join(f"{p:,}" for p in per_segment), level_total])
    return _render("summary.md.j2", net=net, version=__version__, spec_file=spec_file, check=check,
                   paths=paths, tasks=tasks, levels=levels)
