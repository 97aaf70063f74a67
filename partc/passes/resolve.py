"""Pass 1, name resolution: AST -> IR tables (no paths, shapes or graph yet).

Checks every name (inputs, templates, levels, tasks, layers, arguments,
data sources, train settings) and binds segment templates to their
arguments, so every level holds the concrete layers of one segment.
"""

from __future__ import annotations

import hashlib
from typing import Any

from partc.data.catalog import COMMON_OPTIONS, SOURCES, check_option, select_classes
from partc.errors import Location, PartError, SpecError
from partc.ir import Constraint, DataSpec, InputSpec, Layer, Level, Network, SegmentGroup, Task
from partc.language import ast
from partc.layers import PRIMITIVES, bind_args, signature

DTYPES = ("float",)

# train-block settings: name -> (check, what is valid)
TRAIN_SETTINGS: dict[str, tuple[Any, str]] = {
    "epochs": (lambda v: isinstance(v, int) and v > 0, "a positive integer"),
    "batch": (lambda v: isinstance(v, int) and v > 0, "a positive integer"),
    "optimizer": (
        lambda v: isinstance(v, (ast.Call, ast.Ref)) and v.name in ("adam", "adamw", "sgd"),
        "adam(lr=...), adamw(lr=..., weight_decay=...) or sgd(lr=..., momentum=...)",
    ),
    "schedule": (
        lambda v: isinstance(v, (ast.Call, ast.Ref)) and v.name in ("step", "cosine", "constant"),
        "step([epochs...], gamma=0.5), cosine or constant",
    ),
    "mode": (lambda v: isinstance(v, ast.Ref) and v.name in ("fused", "interleaved"), "fused or interleaved"),
    "steps_per_task": (lambda v: isinstance(v, int) and v > 0, "a positive integer (interleaved mode)"),
    "epoch_policy": (
        lambda v: isinstance(v, ast.Ref) and v.name in ("largest", "smallest"),
        "largest (cycle smaller tasks) or smallest",
    ),
    "seed": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
}


def spec_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def resolve(tree: ast.Network) -> tuple[Network, list[PartError]]:
    """Build the IR tables from the AST; return them with every error found."""
    errors: list[PartError] = []
    err = lambda msg, loc, hint=None: errors.append(SpecError(msg, loc, hint))  # noqa: E731

    # ---- seed and inputs ----
    seed = 0
    if len(tree.seeds) > 1:
        err("the network declares 'seed' twice", tree.seeds[1][1], "keep one seed")
    if tree.seeds:
        seed = tree.seeds[0][0]

    inputs: dict[str, InputSpec] = {}
    for decl in tree.inputs:
        if decl.name in inputs:
            err(f"input '{decl.name}' is declared twice", decl.loc, "give each input its own name")
            continue
        if decl.dtype not in DTYPES:
            err(f"unknown input type '{decl.dtype}'", decl.loc, f"valid types: {', '.join(DTYPES)}")
        if any(d <= 0 for d in decl.shape):
            err(f"input '{decl.name}' has a zero dimension {list(decl.shape)}", decl.loc)
        inputs[decl.name] = InputSpec(decl.name, decl.dtype, decl.shape, decl.loc)
    if not inputs:
        err("the network declares no input", tree.loc, "add e.g. 'input image: float[3, 32, 32]'")

    # ---- segment templates ----
    templates: dict[str, ast.SegmentDef] = {}
    for seg in tree.segments:
        if seg.name in templates or seg.name in PRIMITIVES:
            what = "a layer primitive" if seg.name in PRIMITIVES else "declared twice"
            err(f"segment template '{seg.name}' is {what}", seg.loc, "rename the template")
            continue
        if len(set(seg.params)) != len(seg.params):
            err(f"segment template '{seg.name}' names a parameter twice", seg.loc)
        if not seg.layers:
            err(f"segment template '{seg.name}' has no layers", seg.loc, "add layers, e.g. { conv(64); relu }")
        templates[seg.name] = seg

    def bind_layers(calls: list[ast.Call], env: dict[str, Any], where: str) -> list[Layer]:
        layers = []
        for call in calls:
            layer = _bind_layer(call, env, where, errors)
            if layer is not None:
                layers.append(layer)
        return layers

    def instantiate(call: ast.Call, where: str) -> tuple[list[Layer], dict[str, Any]] | None:
        """A template or primitive use -> its concrete layers."""
        if call.name in PRIMITIVES:
            layer = _bind_layer(call, {}, where, errors)
            return ([layer], {}) if layer else None
        seg = templates.get(call.name)
        if seg is None:
            known = sorted(templates) + sorted(PRIMITIVES)
            err(f"unknown segment template '{call.name}'", call.loc, f"known templates and layers: {', '.join(known)}")
            return None
        pos, kw = call.positional(), call.keywords()
        if len(pos) > len(seg.params):
            err(f"segment template '{seg.name}' takes {len(seg.params)} argument(s), got {len(pos)}", call.loc,
                f"{seg.name}({', '.join(seg.params)})")
            return None
        env = {name: _literal(a, errors) for name, a in zip(seg.params, pos, strict=False)}
        for key, arg in kw.items():
            if key not in seg.params:
                err(f"segment template '{seg.name}' has no parameter '{key}'", arg.loc,
                    f"{seg.name}({', '.join(seg.params)})")
                return None
            env[key] = _literal(arg, errors)
        missing = [p for p in seg.params if p not in env]
        if missing:
            err(f"segment template '{seg.name}' needs argument '{missing[0]}'", call.loc,
                f"{seg.name}({', '.join(seg.params)})")
            return None
        return bind_layers(seg.layers, env, f"segment template '{seg.name}'"), env

    # ---- levels ----
    levels: list[Level] = []
    seen_levels: set[str] = set()
    for _position, lvl in enumerate(tree.levels):
        if lvl.name in seen_levels:
            err(f"level '{lvl.name}' is declared twice", lvl.loc, "give each level its own name")
            continue
        seen_levels.add(lvl.name)
        groups = []
        for group in lvl.groups:
            if group.count < 1:
                err(f"level '{lvl.name}' needs at least one segment per group, got {group.count}", group.loc)
                continue
            body = instantiate(group.template, f"level '{lvl.name}'")
            if body is not None:
                groups.append(SegmentGroup(group.count, group.template.name, body[1], body[0], group.loc))
        then = bind_layers(lvl.then, {}, f"level '{lvl.name}'")
        if len(groups) != len(lvl.groups):
            continue
        levels.append(Level(lvl.name, len(levels), groups, lvl.residual, then, lvl.loc))
    if not tree.levels:
        err("the network declares no level", tree.loc, "add e.g. 'level l1 = 4 x conv(16, pad=1)'")

    # ---- tasks ----
    tasks: dict[str, Task] = {}
    level_names = [lv.name for lv in tree.levels]
    for t in tree.tasks:
        if t.name in tasks:
            err(f"task '{t.name}' is declared twice", t.loc, "give each task its own name")
            continue
        task_input = next(iter(inputs), "")
        if t.input is not None:
            name, loc = t.input
            if name not in inputs:
                err(f"task '{t.name}' reads unknown input '{name}'", loc, f"inputs: {', '.join(inputs) or 'none'}")
            task_input = name
        data, labels = _resolve_data(t, errors)
        if t.classes is not None:
            value = _literal(t.classes, errors)
            source = SOURCES.get(data.source) if data else None
            try:
                labels = select_classes(source or SOURCES["synthetic"], value)
            except ValueError as e:
                err(str(e), t.classes.loc)
                labels = labels or []
        if not labels and data is not None:
            err(f"task '{t.name}' has no classes, so its head has no outputs", t.loc,
                "add classes=... to its data, or a 'classes N' statement")
        stem = None
        if isinstance(t.stem, ast.Call):
            inst = instantiate(t.stem, f"the stem of task '{t.name}'")
            stem = inst[0] if inst else []
        elif t.stem is not None:
            stem = bind_layers(t.stem, {}, f"the stem of task '{t.name}'")
        head = bind_layers(t.head or [], {}, f"the head of task '{t.name}'")
        settings = {}
        for key, arg in t.settings.items():
            value = _literal(arg, errors)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                err(f"task '{t.name}' {key} must be a positive number, got {value!r}", arg.loc)
                value = 1.0
            settings[key] = float(value)
        task = Task(t.name, t.loc, task_input, len(labels), labels, data, stem=stem, head=head,
                    weight=settings.get("weight", 1.0), sampling=settings.get("sampling", 1.0))
        tasks[t.name] = task
        for item in t.path:
            if item.level is not None and item.level not in level_names:
                err(f"task '{t.name}' routes through unknown level '{item.level}'", item.loc,
                    f"levels: {', '.join(level_names)}")
    if not tree.tasks:
        err("the network declares no task", tree.loc, "add e.g. 'task a { data digits(classes=[0, 1]) path random(2) }'")

    # ---- constraints ----
    constraints = []
    for c in tree.constraints:
        names = []
        for name, loc in c.tasks:
            if name not in tasks:
                err(f"{c.kind} names unknown task '{name}'", loc, f"tasks: {', '.join(tasks) or 'none'}")
            names.append(name)
        if c.kind == "share" and len(set(names)) < 2:
            err("share needs at least two different tasks", c.loc, "e.g. 'share a, b at l1'")
        if len(set(names)) != len(names):
            err(f"{c.kind} names a task twice", c.loc)
        constraints.append(Constraint(c.kind, names, _expand_levels(c.levels, level_names, errors), c.loc))

    train, train_locs = _resolve_train(tree, errors)
    net = Network(tree.name, tree.file, tree.source, spec_hash(tree.source), seed, inputs, levels, tasks,
                  constraints, train, train_locs)
    return net, errors


def _literal(arg: ast.Arg, errors: list[PartError]) -> Any:
    value = arg.value
    if isinstance(value, ast.Ref):
        errors.append(SpecError(f"unknown name '{value.name}'", value.loc, "write a number, a list or a string"))
        return None
    return value


def _eval(value: Any, env: dict[str, Any], where: str, errors: list[PartError]) -> Any:
    """Evaluate an argument value inside a template (names -> parameters)."""
    if isinstance(value, ast.Ref):
        if value.name in env:
            return env[value.name]
        params = ", ".join(env) or "none"
        errors.append(SpecError(f"unknown name '{value.name}' in {where}", value.loc, f"parameters here: {params}"))
        return None
    if isinstance(value, list):
        return [_eval(v, env, where, errors) for v in value]
    if isinstance(value, ast.Range):
        return value.values()
    return value


def _bind_layer(call: ast.Call, env: dict[str, Any], where: str, errors: list[PartError]) -> Layer | None:
    prim = PRIMITIVES.get(call.name)
    if prim is None:
        errors.append(SpecError(f"unknown layer '{call.name}' in {where}", call.loc,
                                f"layers: {', '.join(sorted(PRIMITIVES))}"))
        return None
    before = len(errors)
    positional = [_eval(a.value, env, where, errors) for a in call.positional()]
    keywords = {k: _eval(a.value, env, where, errors) for k, a in call.keywords().items()}
    if len(errors) > before:
        return None
    try:
        args = bind_args(prim, positional, keywords)
    except ValueError as e:
        errors.append(SpecError(str(e), call.loc, f"usage: {signature(prim)}"))
        return None
    return Layer(call.name, args, call.loc)


def _resolve_data(t: ast.TaskDef, errors: list[PartError]) -> tuple[DataSpec | None, list[str]]:
    if t.data is None:
        errors.append(SpecError(f"task '{t.name}' has no data", t.loc,
                                f"add e.g. 'data digits(classes=[0, 1])'; sources: {', '.join(SOURCES)}"))
        return None, []
    call = t.data
    source = SOURCES.get(call.name)
    if source is None:
        errors.append(SpecError(f"unknown data source '{call.name}'", call.loc, f"sources: {', '.join(SOURCES)}"))
        return None, []
    before = len(errors)
    pos = [_literal(a, errors) for a in call.positional()]
    kw = {k: _literal(a, errors) for k, a in call.keywords().items()}
    if len(errors) > before:
        return None, []
    usage = f"{source.name}({', '.join(list(source.positional) + ['classes=...'])})"
    if len(pos) != len(source.positional):
        errors.append(SpecError(
            f"data source '{source.name}' takes {len(source.positional)} positional argument(s), got {len(pos)}",
            call.loc, f"usage: {usage}"))
        return None, []
    for key, arg in call.keywords().items():
        if key not in COMMON_OPTIONS and key not in source.options:
            valid = ", ".join(list(COMMON_OPTIONS) + list(source.options))
            errors.append(SpecError(f"data source '{source.name}' has no option '{key}'", arg.loc, f"options: {valid}"))
            return None, []
        problem = check_option(key, kw[key])
        if problem:
            errors.append(SpecError(f"data source '{source.name}': {problem}", arg.loc))
            return None, []
    for name, value in zip(source.positional, pos, strict=False):
        if not isinstance(value, str):
            errors.append(SpecError(f"the {name} of {source.name} must be a \"string\"", call.loc, f"usage: {usage}"))
            return None, []
    args = dict(zip(source.positional, pos, strict=False)) | kw
    try:
        labels = select_classes(source, kw.get("classes"))
    except ValueError as e:
        loc = call.keywords()["classes"].loc if "classes" in kw else call.loc
        errors.append(SpecError(str(e), loc))
        return None, []
    if isinstance(args.get("classes"), ast.Range):
        args["classes"] = args["classes"].values()
    return DataSpec(source.name, args, call.loc), labels


def _expand_levels(refs: list[ast.LevelRef], level_names: list[str], errors: list[PartError]) -> list[str]:
    if not refs:
        return list(level_names)
    out: list[str] = []
    for ref in refs:
        names = [ref.first] + ([ref.last] if ref.last else [])
        unknown = [n for n in names if n not in level_names]
        if unknown:
            errors.append(SpecError(f"unknown level '{unknown[0]}'", ref.loc, f"levels: {', '.join(level_names)}"))
            continue
        lo, hi = level_names.index(ref.first), level_names.index(ref.last or ref.first)
        if hi < lo:
            errors.append(SpecError(f"level range {ref.first}..{ref.last} runs backwards", ref.loc,
                                    f"write {ref.last}..{ref.first}"))
            continue
        out += [n for n in level_names[lo : hi + 1] if n not in out]
    return out


def _resolve_train(tree: ast.Network, errors: list[PartError]) -> tuple[dict[str, Any], dict[str, Location]]:
    train: dict[str, Any] = {}
    locs: dict[str, Location] = {}
    for s in tree.train:
        rule = TRAIN_SETTINGS.get(s.name)
        if rule is None:
            errors.append(SpecError(f"unknown train setting '{s.name}'", s.loc,
                                    f"settings: {', '.join(TRAIN_SETTINGS)}"))
            continue
        if s.name in train:
            errors.append(SpecError(f"train setting '{s.name}' is given twice", s.loc))
            continue
        check, valid = rule
        if not check(s.value):
            errors.append(SpecError(f"train setting '{s.name}' must be {valid}", s.loc))
            continue
        train[s.name] = _plain(s.value)
        locs[s.name] = s.loc
    return train, locs


def _plain(value: Any) -> Any:
    """AST values -> plain data: calls become {'name': ..., 'args': [...], 'kwargs': {...}}."""
    if isinstance(value, ast.Ref):
        return value.name
    if isinstance(value, ast.Call):
        return {
            "name": value.name,
            "args": [_plain(a.value) for a in value.positional()],
            "kwargs": {k: _plain(a.value) for k, a in value.keywords().items()},
        }
    if isinstance(value, ast.Range):
        return value.values()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
