"""Pass find_warnings: what checks but most likely does not say what was meant, into `net.warnings`.

A warning never stops the pipeline: `partc check` prints them (exit 0) and
`partc check --strict` makes them errors; `partc.load` leaves them on the
network, silent. Each is located, and the list is in source order:

- a segment no task routes through (built, never trained);
- two tasks on the same route (every segment shared, only the heads differ);
- two task names that differ only in case (their exported files collide on macOS and Windows);
- an input no task reads (other than the first, which sets the levels' shape);
- a segment template no level or stem uses, or a parameter its layers never use;
- a task with a single class (its cross-entropy is always 0: it learns nothing);
- a step-schedule milestone at or past the last epoch (it never takes effect);
- a train setting the spec's training mode ignores.
"""

from __future__ import annotations

from typing import Any

from partc.errors import PartError, SpecWarning
from partc.ir import Network, ParamRef
from partc.language import ast
from partc.language.printer import layer_text
from partc.train.settings import setting_value

# train settings that only one mode reads: setting -> that mode
_MODE_SETTINGS = {"steps_per_task": "interleaved", "batchnorm": "fused"}


def find_warnings(net: Network, tree: ast.Network) -> list[PartError]:
    found: list[SpecWarning] = []
    found += _unused_segments(net)
    found += _same_routes(net)
    found += _names_equal_but_for_case(net)
    found += _unused_inputs(net)
    found += _unused_templates(net, tree)
    found += _single_class_tasks(net)
    found += _train_settings(net, tree)
    net.warnings = sorted(found, key=lambda w: (w.loc.line, w.loc.column) if w.loc else (0, 0))
    return []


def _unused_segments(net: Network) -> list[SpecWarning]:
    found = []
    for level in net.levels:
        unused = [i for i in range(level.count) if not net.segment_users(level.name, i)]
        if not unused:
            continue
        params = sum(level.segment_params(i) for i in unused)
        shown = ", ".join(map(str, unused[:10])) + (f" and {len(unused) - 10} more" if len(unused) > 10 else "")
        its = "their" if len(unused) > 1 else "its"
        cost = f"{its} {params:,} parameters are built and never trained" if params else "they compute nothing"
        found.append(SpecWarning(
            f"level '{level.name}': segment{'s' if len(unused) > 1 else ''} {shown} of 0..{level.count - 1} "
            f"{'are' if len(unused) > 1 else 'is'} on no task's path", level.loc,
            f"{cost}; use fewer segments per level, or route a task through them"))
    return found


def _same_routes(net: Network) -> list[SpecWarning]:
    first: dict[tuple, str] = {}
    found = []
    for name, task in net.tasks.items():
        stem = tuple(layer_text(layer) for layer in task.stem) if task.stem is not None else None
        route = (task.input, stem, tuple(task.path.items()))
        if route not in first:
            first[route] = name
            continue
        found.append(SpecWarning(
            f"task '{name}' takes the same route as task '{first[route]}' (the same segments at every level)",
            task.loc, "the two share every segment and differ only in their heads; give one another path "
                      "if that is not meant"))
    return found


def _names_equal_but_for_case(net: Network) -> list[SpecWarning]:
    first: dict[str, str] = {}
    found = []
    for name, task in net.tasks.items():
        other = first.setdefault(name.casefold(), name)
        if other != name:
            found.append(SpecWarning(
                f"task '{name}' differs from task '{other}' only in case", task.loc,
                f"partc export writes a file per task ({other}.onnx, {name}.onnx), which are one file on "
                f"case-insensitive file systems (macOS, Windows): rename one"))
    return found


def _unused_inputs(net: Network) -> list[SpecWarning]:
    read = {task.input for task in net.tasks.values()}
    return [SpecWarning(f"input '{name}' is read by no task", spec.loc,
                        f"drop it, or give a task 'input {name}' (and a stem to the first level's shape)")
            for name, spec in list(net.inputs.items())[1:] if name not in read]


def _unused_templates(net: Network, tree: ast.Network) -> list[SpecWarning]:
    used = {g.template for level in net.levels for g in level.groups}
    used |= {t.stem_group.template for t in net.tasks.values() if t.stem_group is not None}
    found = []
    for name, template in net.templates.items():
        if name not in used:
            found.append(SpecWarning(f"segment template '{name}' is used by no level or stem", template.loc,
                                     f"drop it, or use it: level NAME = M x {name}(...)"))
            continue
        referenced = {ref for layer in template.layers for ref in _param_refs(layer.args.values())}
        for param in template.params:
            if param not in referenced:
                found.append(SpecWarning(f"segment template '{name}' never uses its parameter '{param}'",
                                         template.loc, "drop the parameter, or use it in one of its layers"))
    return found


def _param_refs(values: Any):
    for value in values:
        if isinstance(value, ParamRef):
            yield value.name
        elif isinstance(value, (list, tuple)):
            yield from _param_refs(value)


def _single_class_tasks(net: Network) -> list[SpecWarning]:
    return [SpecWarning(f"task '{name}' has a single class, so its loss is always 0 and it learns nothing",
                        task.data.loc if task.data else task.loc, "give the task two or more classes")
            for name, task in net.tasks.items() if task.classes == 1]


def _train_settings(net: Network, tree: ast.Network) -> list[SpecWarning]:
    written = {s.name: s for s in tree.train}
    found = []
    epochs = setting_value(net.train, "epochs")
    schedule = net.train.get("schedule")
    if isinstance(schedule, dict) and schedule.get("name") == "step":
        milestones = schedule["args"][0] if schedule["args"] else schedule["kwargs"].get("milestones", [])
        late = [m for m in milestones if m >= epochs]
        if late:
            found.append(SpecWarning(
                f"schedule step milestone {late[0]} is at or past the last epoch ({epochs}): "
                f"it never lowers the learning rate", written["schedule"].loc,
                f"use milestones below {epochs}, or train for more epochs"))
    mode = setting_value(net.train, "mode")
    for setting, wanted in _MODE_SETTINGS.items():
        if setting in written and mode != wanted:
            found.append(SpecWarning(f"train setting '{setting}' applies only in {wanted} mode, and this spec "
                                     f"trains in {mode} mode", written[setting].loc,
                                     f"drop it, or train with 'mode {wanted}'"))
    return found
