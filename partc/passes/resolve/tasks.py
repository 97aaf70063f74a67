"""Resolve pass, tasks: input, data (against the data catalog), classes, stem, head and settings."""

from __future__ import annotations

from typing import Any

from partc.data.catalog import (
    COMMON_OPTIONS,
    SOURCE_OPTIONS,
    SOURCES,
    Source,
    check_combination,
    check_option,
    check_size,
    select_classes,
)
from partc.errors import ClassesError, PartError, SpecError, valid_names
from partc.ir import DataSpec, InputSpec, SegmentGroup, Task
from partc.language import ast
from partc.language.printer import value_text
from partc.passes.resolve.names import declared_twice, reserved_name_error
from partc.passes.resolve.templates import Templates, bind_layers
from partc.passes.resolve.values import literal
from partc.train.settings import TASK_SETTINGS


def resolve_tasks(tree: ast.Network, inputs: dict[str, InputSpec], templates: Templates,
                  errors: list[PartError]) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    level_names = {lv.name: None for lv in tree.levels}
    for t in tree.tasks:
        if t.name in tasks:
            errors.append(declared_twice("task", t.name, t.loc, tasks[t.name].loc))
            continue
        task = _resolve_task(t, inputs, templates, errors)
        tasks[t.name] = task
        for item in t.path:
            if item.level is not None and item.level not in level_names:
                errors.append(SpecError(f"task '{t.name}' routes through unknown level '{item.level}'", item.loc,
                                        valid_names(item.level, level_names, "levels")))
    if not tree.tasks:
        errors.append(SpecError("the network declares no task", tree.loc,
                                "add e.g. 'task a { data digits(classes=[0, 1]) path random(2) }'"))
    return tasks


def _resolve_task(t: ast.TaskDef, inputs: dict[str, InputSpec], templates: Templates, errors: list[PartError]) -> Task:
    reserved = reserved_name_error("task", t.name, t.loc)
    if reserved:
        errors.append(reserved)
    task_input = next(iter(inputs), "")
    if t.input is not None:
        name, loc = t.input
        if name not in inputs:
            errors.append(SpecError(f"task '{t.name}' reads unknown input '{name}'", loc, valid_names(name, inputs, "inputs")))
        task_input = name
    shape = inputs[task_input].shape if task_input in inputs else ()
    data, labels = resolve_data(t, shape, errors)
    classes_value = None
    if t.classes is not None and t.data is not None and "classes" in t.data.keywords():
        errors.append(SpecError(f"task '{t.name}' gives its classes twice", t.classes.loc,
                                f"keep either classes=... in {t.data.name}(...) or this 'classes' statement"))
    elif t.classes is not None:
        classes_value = literal(t.classes, errors)
        source = SOURCES.get(data.source) if data else None
        try:
            labels = select_classes(source or SOURCES["synthetic"], classes_value)
        except ClassesError as e:
            errors.append(SpecError(e.message, t.classes.loc, e.hint))
            labels = labels or ["?"]
    if not labels and data is not None:
        errors.append(SpecError(f"task '{t.name}' has no classes, so its head has no outputs", t.data.loc,
                                f"{data.source} data has no fixed class list: add classes=N or classes=[...] to "
                                f"{data.source}(...), or a 'classes N' statement to the task"))
    elif data is not None and shape:
        size = check_size(SOURCES[data.source], data.args, shape, len(labels))
        if size is not None:
            option, message, hint = size
            arg = t.data.keywords().get(option)
            errors.append(SpecError(f"data source '{data.source}': {message} (task '{t.name}')",
                                    arg.loc if arg else t.data.loc, hint))
    stem, stem_group = None, None
    if isinstance(t.stem, ast.Call):
        inst = templates.instantiate(t.stem, f"the stem of task '{t.name}'")
        stem = inst[0] if inst else []
        if inst and t.stem.name in templates.defs:
            stem_group = SegmentGroup(1, t.stem.name, inst[1], stem, t.stem.loc)
    elif t.stem is not None:
        stem = bind_layers(t.stem, {}, f"the stem of task '{t.name}'", errors)
        if not t.stem:
            errors.append(SpecError(f"the stem of task '{t.name}' has no layers", t.loc,
                                    "give it layers, e.g. stem { conv(16, pad=1); relu }, or drop it"))
    head = bind_layers(t.head or [], {}, f"the head of task '{t.name}'", errors)
    settings = {}
    for key, arg in t.settings.items():
        value = literal(arg, errors)
        rule = TASK_SETTINGS[key]
        if not rule.accepts(value):
            errors.append(SpecError(f"task '{t.name}' {key} must be {rule.expect}, got {value_text(value)}", arg.loc,
                                    f"e.g. '{key} 0.5' or '{key} 2'"))
            value = 1.0
        settings[key] = float(value)
    return Task(t.name, t.loc, task_input, len(labels), labels, data, stem=stem, stem_group=stem_group, head=head,
                head_written=len(head), classes_value=classes_value, weight=settings.get("weight", 1.0),
                sampling=settings.get("sampling", 1.0), input_loc=t.input[1] if t.input else None)


def resolve_data(t: ast.TaskDef, input_shape: tuple[int, ...], errors: list[PartError]) -> tuple[DataSpec | None, list[str]]:
    """The task's data call against the catalog: source, arguments, option values and their combination."""
    if t.data is None:
        errors.append(SpecError(f"task '{t.name}' has no data", t.loc,
                                f"add e.g. 'data digits(classes=[0, 1])'; sources: {', '.join(SOURCES)}"))
        return None, []
    call = t.data
    source = SOURCES.get(call.name)
    if source is None:
        errors.append(SpecError(f"unknown data source '{call.name}'", call.loc, valid_names(call.name, SOURCES, "sources")))
        return None, []
    before = len(errors)
    pos = [literal(a, errors) for a in call.positional()]
    kw = {k: literal(a, errors) for k, a in call.keywords().items()}
    if len(errors) > before:
        return None, []
    problem = _call_problem(source, call, pos, kw)
    if problem is not None:
        errors.append(problem)
        return None, []
    args = dict(zip(source.positional, pos, strict=False)) | kw
    try:
        labels = select_classes(source, kw.get("classes"))
    except ClassesError as e:
        loc = call.keywords()["classes"].loc if "classes" in kw else call.loc
        errors.append(SpecError(e.message, loc, e.hint))
        return None, []
    if input_shape:
        combination = check_combination(source, kw, input_shape)
        if combination is not None:
            option, message, hint = combination
            loc = call.keywords()[option].loc if option in kw else call.loc
            errors.append(SpecError(f"data source '{source.name}': {message} (task '{t.name}')", loc, hint))
            return None, []
    return DataSpec(source.name, args, call.loc), labels


def _call_problem(source: Source, call: ast.Call, pos: list[Any], kw: dict[str, Any]) -> SpecError | None:
    usage = f"{source.name}({', '.join(list(source.positional) + ['classes=...'])})"
    if len(pos) != len(source.positional):
        return SpecError(f"data source '{source.name}' takes {len(source.positional)} positional argument(s), "
                         f"got {len(pos)}", call.loc, f"usage: {usage}")
    for key, arg in call.keywords().items():
        if key not in COMMON_OPTIONS and key not in source.options:
            valid = list(COMMON_OPTIONS) + list(source.options)
            return SpecError(f"data source '{source.name}' has no option '{key}'", arg.loc, valid_names(key, valid, "options"))
        problem = check_option(key, kw[key])
        if problem:
            doc = COMMON_OPTIONS.get(key) or SOURCE_OPTIONS.get(key)
            return SpecError(f"data source '{source.name}': {problem}, got {value_text(arg.value)}", arg.loc,
                             f"{key}: {doc}" if doc else "")
    for name, value in zip(source.positional, pos, strict=False):
        if not isinstance(value, str):
            return SpecError(f"the {name} of {source.name} must be a \"string\"", call.loc, f"usage: {usage}")
        if not value or "\x00" in value:
            return SpecError(f"the {name} of {source.name} is {'empty' if not value else 'not a path (it holds NUL)'}",
                             call.loc, f"usage: {usage}")
    return None


