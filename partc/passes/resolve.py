"""Pass 1, name resolution: AST -> IR tables (no paths, shapes or graph yet).

Checks every name (inputs, templates, levels, tasks, layers, arguments,
data sources, train settings) and binds segment templates to their
arguments, so every level holds the concrete layers of one segment.
"""

from __future__ import annotations

import hashlib
from typing import Any

from partc.data.catalog import COMMON_OPTIONS, SOURCES, ClassesError, check_option, select_classes
from partc.errors import Location, PartError, SpecError, closest, valid_names
from partc.ir import Constraint, DataSpec, InputSpec, Layer, Level, Network, SegmentGroup, Task
from partc.language import ast
from partc.layers import PRIMITIVES, bind_args, show_value, signature

DTYPES = ("float",)
MAX_SEGMENTS = 10_000  # per level

# Level and task names become keys of torch's nn.ModuleDict, which refuses its own attribute
# names. Kept here, torch-free, so `partc check` catches them; tests/test_smoke.py checks the
# set against the installed torch, and compile checks the live list again.
TORCH_RESERVED = frozenset("""
T_destination add_module apply bfloat16 buffers call_super_init children clear compile cpu cuda
double dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
get_submodule half ipu items keys load_state_dict modules mtia named_buffers named_children
named_modules named_parameters parameters pop register_backward_hook register_buffer
register_forward_hook register_forward_pre_hook register_full_backward_hook
register_full_backward_pre_hook register_load_state_dict_post_hook register_load_state_dict_pre_hook
register_module register_parameter register_state_dict_post_hook register_state_dict_pre_hook
requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty train training
type update values xpu zero_grad
""".split())


def reserved_name_error(kind: str, name: str, loc: Location) -> SpecError | None:
    if name in TORCH_RESERVED or name.startswith("_"):
        return SpecError(f"{kind} name '{name}' is reserved: PyTorch modules use it themselves", loc,
                         f"rename the {kind} (names torch reserves include forward, eval, to, keys, type; "
                         "names may not start with '_')")
    return None

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
    "batchnorm": (
        lambda v: isinstance(v, ast.Ref) and v.name in ("per_task", "joint"),
        "per_task (each task's own batch statistics in a shared segment) or joint (fused mode)",
    ),
    "steps_per_task": (lambda v: isinstance(v, int) and v > 0, "a positive integer (interleaved mode)"),
    "epoch_policy": (
        lambda v: isinstance(v, ast.Ref) and v.name in ("largest", "smallest"),
        "largest (cycle smaller tasks) or smallest",
    ),
    "seed": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
}


TRAIN_EXAMPLES = {
    "epochs": "epochs 60",
    "batch": "batch 32",
    "optimizer": "optimizer adam(lr=1e-3)",
    "schedule": "schedule step([20, 30, 40], gamma=0.5)",
    "mode": "mode fused",
    "batchnorm": "batchnorm per_task",
    "steps_per_task": "steps_per_task 10",
    "epoch_policy": "epoch_policy largest",
    "seed": "seed 0",
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
            err(f"input '{decl.name}' is declared twice", decl.loc,
                f"give each input its own name; the first '{decl.name}' is on line {inputs[decl.name].loc.line}")
            continue
        if decl.dtype not in DTYPES:
            err(f"unknown input type '{decl.dtype}'", decl.loc, f"valid types: {', '.join(DTYPES)}")
        if any(d <= 0 for d in decl.shape):
            err(f"input '{decl.name}' has a zero dimension {list(decl.shape)}", decl.loc, "every dimension must be >= 1")
        inputs[decl.name] = InputSpec(decl.name, decl.dtype, decl.shape, decl.loc)
    if not inputs:
        err("the network declares no input", tree.loc, "add e.g. 'input image: float[3, 32, 32]'")

    # ---- segment templates ----
    templates: dict[str, ast.SegmentDef] = {}
    for seg in tree.segments:
        if seg.name in PRIMITIVES:
            err(f"segment template '{seg.name}' has the name of a layer", seg.loc,
                f"rename the template; layers: {', '.join(sorted(PRIMITIVES))}")
            continue
        if seg.name in templates:
            err(f"segment template '{seg.name}' is declared twice", seg.loc,
                f"rename one of them; the first '{seg.name}' is on line {templates[seg.name].loc.line}")
            continue
        if len(set(seg.params)) != len(seg.params):
            err(f"segment template '{seg.name}' names a parameter twice", seg.loc, "give each parameter its own name")
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
            err(f"unknown segment template '{call.name}'", call.loc, valid_names(call.name, known, "templates and layers"))
            return None
        pos, kw = call.positional(), call.keywords()
        if len(pos) > len(seg.params):
            err(f"segment template '{seg.name}' takes {len(seg.params)} argument(s), got {len(pos)}", call.loc,
                f"usage: {seg.name}({', '.join(seg.params)})")
            return None
        env = {name: _literal(a, errors) for name, a in zip(seg.params, pos, strict=False)}
        for key, arg in kw.items():
            if key not in seg.params:
                err(f"segment template '{seg.name}' has no parameter '{key}'", arg.loc,
                    valid_names(key, seg.params, f"{seg.name}'s parameters"))
                return None
            if key in env:
                err(f"segment template '{seg.name}' gets argument '{key}' twice", arg.loc,
                    f"usage: {seg.name}({', '.join(seg.params)})")
                return None
            env[key] = _literal(arg, errors)
        missing = [p for p in seg.params if p not in env]
        if missing:
            err(f"segment template '{seg.name}' needs argument '{missing[0]}'", call.loc,
                f"usage: {seg.name}({', '.join(seg.params)})")
            return None
        return bind_layers(seg.layers, env, f"segment template '{seg.name}'"), env

    # ---- levels ----
    levels: list[Level] = []
    seen_levels: dict[str, ast.LevelDef] = {}
    for lvl in tree.levels:
        if lvl.name in seen_levels:
            err(f"level '{lvl.name}' is declared twice", lvl.loc,
                f"give each level its own name; the first '{lvl.name}' is on line {seen_levels[lvl.name].loc.line}")
            continue
        seen_levels[lvl.name] = lvl
        reserved = reserved_name_error("level", lvl.name, lvl.loc)
        if reserved:
            errors.append(reserved)
        groups = []
        for group in lvl.groups:
            if group.count < 1:
                err(f"level '{lvl.name}' needs at least one segment per group, got {group.count}", group.loc,
                    "write M x template(...) with M >= 1")
                continue
            body = instantiate(group.template, f"level '{lvl.name}'")
            if body is not None:
                groups.append(SegmentGroup(group.count, group.template.name, body[1], body[0], group.loc))
        then = bind_layers(lvl.then, {}, f"level '{lvl.name}'")
        if sum(g.count for g in lvl.groups) > MAX_SEGMENTS:
            err(f"level '{lvl.name}' has {sum(g.count for g in lvl.groups):,} segments", lvl.loc,
                f"a level holds at most {MAX_SEGMENTS:,} segments")
            continue
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
            err(f"task '{t.name}' is declared twice", t.loc,
                f"give each task its own name; the first '{t.name}' is on line {tasks[t.name].loc.line}")
            continue
        reserved = reserved_name_error("task", t.name, t.loc)
        if reserved:
            errors.append(reserved)
        task_input = next(iter(inputs), "")
        if t.input is not None:
            name, loc = t.input
            if name not in inputs:
                err(f"task '{t.name}' reads unknown input '{name}'", loc, valid_names(name, inputs, "inputs"))
            task_input = name
        data, labels = _resolve_data(t, errors)
        if t.classes is not None and t.data is not None and "classes" in t.data.keywords():
            err(f"task '{t.name}' gives its classes twice", t.classes.loc,
                f"keep either classes=... in {t.data.name}(...) or this 'classes' statement")
        elif t.classes is not None:
            value = _literal(t.classes, errors)
            source = SOURCES.get(data.source) if data else None
            try:
                labels = select_classes(source or SOURCES["synthetic"], value)
            except ClassesError as e:
                err(str(e), t.classes.loc, e.hint)
                labels = labels or ["?"]
        if not labels and data is not None:
            err(f"task '{t.name}' has no classes, so its head has no outputs", t.data.loc,
                f"{data.source} data has no fixed class list: add classes=N or classes=[...] to "
                f"{data.source}(...), or a 'classes N' statement to the task")
        stem = None
        if isinstance(t.stem, ast.Call):
            inst = instantiate(t.stem, f"the stem of task '{t.name}'")
            stem = inst[0] if inst else []
        elif t.stem is not None:
            stem = bind_layers(t.stem, {}, f"the stem of task '{t.name}'")
            if not t.stem:
                err(f"the stem of task '{t.name}' has no layers", t.loc,
                    "give it layers, e.g. stem { conv(16, pad=1); relu }, or drop it")
        head = bind_layers(t.head or [], {}, f"the head of task '{t.name}'")
        settings = {}
        for key, arg in t.settings.items():
            value = _literal(arg, errors)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                err(f"task '{t.name}' {key} must be a positive number, got {show_value(value)}", arg.loc,
                    f"e.g. '{key} 0.5' or '{key} 2'")
                value = 1.0
            settings[key] = float(value)
        task = Task(t.name, t.loc, task_input, len(labels), labels, data, stem=stem, head=head,
                    weight=settings.get("weight", 1.0), sampling=settings.get("sampling", 1.0),
                    input_loc=t.input[1] if t.input else None)
        tasks[t.name] = task
        for item in t.path:
            if item.level is not None and item.level not in level_names:
                err(f"task '{t.name}' routes through unknown level '{item.level}'", item.loc,
                    valid_names(item.level, level_names, "levels"))
    if not tree.tasks:
        err("the network declares no task", tree.loc, "add e.g. 'task a { data digits(classes=[0, 1]) path random(2) }'")

    # ---- constraints ----
    constraints = []
    for c in tree.constraints:
        names = []
        for name, loc in c.tasks:
            if name not in tasks:
                err(f"{c.kind} names unknown task '{name}'", loc, valid_names(name, tasks, "tasks"))
            names.append(name)
        if len(set(names)) != len(names):
            err(f"{c.kind} names a task twice", c.loc, "name each task once")
        elif c.kind == "share" and len(names) < 2:
            err("share needs at least two different tasks", c.loc, "e.g. 'share a, b at l1'")
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
        errors.append(SpecError(f"unknown name '{value.name}' in {where}", value.loc,
                                valid_names(value.name, env, "parameters here") if env else f"parameters here: {params}"))
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
                                valid_names(call.name, sorted(PRIMITIVES), "layers")))
        return None
    names = [p.name for p in prim.params]
    for key, arg in call.keywords().items():
        if key not in names:
            close = closest(key, names)
            errors.append(SpecError(f"{prim.name} has no argument '{key}'", arg.loc,
                                    (f"did you mean '{close}'? " if close else "") + f"usage: {signature(prim)}"))
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
        errors.append(SpecError(f"unknown data source '{call.name}'", call.loc, valid_names(call.name, SOURCES, "sources")))
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
            valid = list(COMMON_OPTIONS) + list(source.options)
            errors.append(SpecError(f"data source '{source.name}' has no option '{key}'", arg.loc,
                                    valid_names(key, valid, "options")))
            return None, []
        problem = check_option(key, kw[key])
        if problem:
            doc = COMMON_OPTIONS.get(key)
            errors.append(SpecError(f"data source '{source.name}': {problem}", arg.loc, f"{key}: {doc}" if doc else ""))
            return None, []
    if kw.get("perspective") and not kw.get("augment"):
        errors.append(SpecError(f"data source '{source.name}': perspective= applies only with augment=true",
                                call.keywords()["perspective"].loc, "add augment=true"))
        return None, []
    for name, value in zip(source.positional, pos, strict=False):
        if not isinstance(value, str):
            errors.append(SpecError(f"the {name} of {source.name} must be a \"string\"", call.loc, f"usage: {usage}"))
            return None, []
    args = dict(zip(source.positional, pos, strict=False)) | kw
    try:
        labels = select_classes(source, kw.get("classes"))
    except ClassesError as e:
        loc = call.keywords()["classes"].loc if "classes" in kw else call.loc
        errors.append(SpecError(str(e), loc, e.hint))
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
            errors.append(SpecError(f"unknown level '{unknown[0]}'", ref.loc, valid_names(unknown[0], level_names, "levels")))
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
                                    valid_names(s.name, TRAIN_SETTINGS, "settings")))
            continue
        if s.name in train:
            errors.append(SpecError(f"train setting '{s.name}' is given twice", s.loc, f"keep one '{s.name}'"))
            continue
        check, valid = rule
        if not check(s.value):
            errors.append(SpecError(f"train setting '{s.name}' must be {valid}, got {_show(s.value)}", s.loc,
                                    f"e.g. {TRAIN_EXAMPLES[s.name]}"))
            continue
        unknown = next(_refs_inside(s.value), None)
        if unknown is not None:
            errors.append(SpecError(f"unknown name '{unknown.name}' in train setting '{s.name}'", unknown.loc,
                                    f"write a number or a list there, e.g. {TRAIN_EXAMPLES[s.name]}"))
            continue
        train[s.name] = _plain(s.value)
        locs[s.name] = s.loc
    return train, locs


def _refs_inside(value: Any):
    """Bare names used as argument values inside a call (they name nothing there)."""
    if isinstance(value, ast.Call):
        for arg in value.args:
            if isinstance(arg.value, ast.Ref):
                yield arg.value
            yield from _refs_inside(arg.value)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, ast.Ref):
                yield v
            yield from _refs_inside(v)


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


def _show(value: Any) -> str:
    """An AST value as written in the spec."""
    if isinstance(value, ast.Ref):
        return value.name
    if isinstance(value, ast.Call):
        return f"{value.name}(...)"
    return show_value(value)
