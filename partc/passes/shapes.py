"""Pass infer_shapes: every layer, segment, level, stem and head.

Rules: every segment of a level maps the level's input shape to the same
output shape; a residual level keeps its shape; a task's stem maps the
task's input to the shape the first level takes; heads see the flattened
output of the last level and end in `linear(classes)`.

Parameter counts: a segment group's `params` are held once per segment,
its `per_task_params` once per segment and task routed through it (the
per-task layers, `task_batchnorm`). A per-task layer belongs inside a
level's segments only: a stem or head is its task's alone already, and a
level's `then` holds no parameters.
"""

from __future__ import annotations

from partc.errors import PartError, SpecError
from partc.ir import Layer, Network
from partc.language import ast
from partc.language.printer import group_text
from partc.layers import PRIMITIVES, ShapeError, output_shape


def run_layers(layers: list[Layer], shape: tuple[int, ...], errors: list[PartError], where: str) -> tuple[int, ...] | None:
    """Propagate `shape` through `layers`, filling each layer's shapes and size."""
    for layer in layers:
        prim = PRIMITIVES[layer.op]
        try:
            out = output_shape(prim, shape, layer.args)
        except ShapeError as e:
            errors.append(SpecError(f"{e.message} (in {where})", layer.loc, e.hint))
            return None
        layer.in_shape, layer.shape, layer.params = shape, tuple(out), prim.count(shape, layer.args)
        shape = tuple(out)
    return shape


def _refuse_per_task(layers: list[Layer], where: str, errors: list[PartError]) -> None:
    for layer in layers:
        if layer.per_task:
            plain = layer.op.removeprefix("task_")
            instead = f"use {plain} there" if plain in PRIMITIVES else "use its shared form there"
            errors.append(SpecError(
                f"{layer.op} in {where}: a per-task layer belongs in a level's segments", layer.loc,
                f"{instead}: {where} is the task's alone already"))


def _stem_example(source: tuple[int, ...], trunk: tuple[int, ...]) -> str:
    """A one-conv stem mapping image shape `source` onto `trunk`, where one exists."""
    if len(source) != 3 or len(trunk) != 3:
        return ""
    (_, h, w), (c, th, tw) = source, trunk
    if h % th or w % tw or h // th != w // tw:
        return ""
    stride = h // th
    return f", e.g. stem {{ conv({c}, k=3, pad=1{f', stride={stride}' if stride > 1 else ''}) }}"


def infer_shapes(net: Network, tree: ast.Network) -> list[PartError]:
    errors: list[PartError] = []
    if not net.inputs:
        return errors
    trunk = net.trunk_input.shape
    shape: tuple[int, ...] | None = trunk
    for level in net.levels:
        level.in_shape = shape
        outs = []
        for g in level.groups:
            out = run_layers(g.layers, shape, errors, f"level '{level.name}', {group_text(g)}")
            g.params = sum(layer.params for layer in g.layers if not layer.per_task)
            g.per_task_params = sum(layer.params for layer in g.layers if layer.per_task)
            outs.append((g, out))
        if any(out is None for _, out in outs):
            return errors
        first_group, first = outs[0]
        for g, out in outs[1:]:
            if out != first:
                errors.append(SpecError(
                    f"segments of level '{level.name}' disagree in shape: {group_text(first_group)} gives "
                    f"{list(first)}, {group_text(g)} gives {list(out)}", g.loc,
                    "every segment of a level must map its input to the same shape"))
                return errors
        if level.residual and first != shape:
            errors.append(SpecError(
                f"level '{level.name}' is residual but changes the shape {list(shape)} -> {list(first)}",
                level.loc, "drop 'residual', or make the segments keep the shape"))
            return errors
        level.sum_shape = first
        shape = run_layers(level.then, first, errors, f"the 'then' of level '{level.name}'")
        if shape is None:
            return errors
        weighted = [layer for layer in level.then if layer.params]
        if weighted:
            errors.append(SpecError(
                f"'then' of level '{level.name}' has a layer with parameters ({weighted[0].op})", weighted[0].loc,
                "'then' runs after the sum and would be shared by every task: use relu, gelu, dropout, "
                "maxpool, avgpool or flatten there, and put weighted layers inside the segment"))
            return errors
        level.shape = shape

    for task in net.tasks.values():
        source = net.inputs.get(task.input)
        if source is None:
            continue
        _refuse_per_task(task.stem or [], f"the stem of task '{task.name}'", errors)
        _refuse_per_task(task.head, f"the head of task '{task.name}'", errors)
        if task.stem is not None:
            out = run_layers(task.stem, source.shape, errors, f"the stem of task '{task.name}'")
            task.stem_params = sum(layer.params for layer in task.stem)
            if out is not None and out != trunk:
                errors.append(SpecError(
                    f"the stem of task '{task.name}' gives shape {list(out)}, but the first level takes {list(trunk)}",
                    task.stem[-1].loc if task.stem else task.loc,
                    f"make the stem end in shape {list(trunk)}"))
        elif source.shape != trunk:
            errors.append(SpecError(
                f"task '{task.name}' reads input '{source.name}' {list(source.shape)}, but the first level "
                f"takes {list(trunk)}", task.input_loc or task.loc,
                f"add a stem that maps {list(source.shape)} to {list(trunk)}{_stem_example(source.shape, trunk)}"))
        where = f"the head of task '{task.name}'"
        head_out = run_layers(task.head, shape, errors, where)
        if head_out is None:
            continue
        # every head ends in flatten (when needed) and linear(classes)
        if len(head_out) != 1:
            task.head.append(Layer("flatten", {}, task.loc))
        task.head.append(Layer("linear", {"out": max(task.classes, 1), "bias": True}, task.loc))
        run_layers(task.head, shape, errors, where)
        task.head_params = sum(layer.params for layer in task.head)
    return errors
