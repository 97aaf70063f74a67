"""Pass check_resources: what training the network would take, estimated from the layer table, within limits.

Two estimates, from the shapes and parameter counts `infer_shapes` filled in
(arithmetic only: nothing is allocated):

- parameters: every segment, stem and head of the network (the paper's
  CIFAR-100 network: 132,038,244);
- activation memory per sample: along each task's route, the input and the
  output of every layer (stem, each segment on the path, level sums and
  `then`, head) as float32, which training keeps for the backward pass; a
  batch needs its size times this.

A network past `MAX_PARAMETERS` or a task past `MAX_ACTIVATION_BYTES` is
refused with the estimate and its largest layer, before anything is built:
`conv(8, pad=100000)` on an 8x8 input would otherwise reach the allocator.
The thresholds are documented in docs/check.md ("Limits").
"""

from __future__ import annotations

from collections import Counter
from math import prod

from partc.errors import Location, PartError, SpecError
from partc.ir import Layer, Network
from partc.language import ast
from partc.language.printer import layer_text, shape_text
from partc.values import byte_text

MAX_PARAMETERS = 10**10  # 40 GB of float32 weights; about four times that to train with Adam
MAX_ACTIVATION_BYTES = 4 * 2**30  # per sample and task: 4 GiB
FLOAT_BYTES = 4


def task_activation_elements(net: Network, task: str) -> tuple[int, Layer | None, str]:
    """Elements of every tensor one sample of `task` makes on its route, its largest layer and where that is."""
    t = net.tasks[task]
    total = prod(net.inputs[t.input].shape)
    largest: tuple[int, Layer | None, str] = (0, None, "")

    def add(layers: list[Layer], where: str, times: int = 1) -> None:
        nonlocal total, largest
        for layer in layers:
            size = prod(layer.shape)
            total += size * times
            if size > largest[0]:
                largest = (size, layer, where)

    add(t.stem or [], f"the stem of task '{task}'")
    for level in net.levels:
        for i in t.path.get(level.name, ()):
            add(level.group_of(i).layers, f"level '{level.name}'")
        total += prod(level.sum_shape) * (2 if level.residual else 1)  # the sum, and the residual add
        add(level.then, f"the 'then' of level '{level.name}'")
    add(t.head, f"the head of task '{task}'")
    return total, largest[1], largest[2]


def _largest_parameter_layer(net: Network) -> tuple[int, Layer | None, str]:
    best: tuple[int, Layer | None, str] = (0, None, "")
    for level in net.levels:
        for g in level.groups:
            for layer in g.layers:
                if layer.params > best[0]:
                    best = (layer.params, layer, f"level '{level.name}' ({g.count} segment(s) of it)")
    for name, task in net.tasks.items():
        for layers, where in ((task.stem or [], "stem"), (task.head, "head")):
            for layer in layers:
                if layer.params > best[0]:
                    best = (layer.params, layer, f"the {where} of task '{name}'")
    return best


def count_params(net: Network) -> int:
    """`net.total_params` before the graph exists: a segment's per-task layers once per task on its path."""
    users = Counter((lv, i) for t in net.tasks.values() for lv, indices in t.path.items() for i in indices)
    segments = sum(lv.segment_params(i) + lv.segment_per_task_params(i) * users[lv.name, i]
                   for lv in net.levels for i in range(lv.count))
    return segments + sum(t.stem_params + t.head_params for t in net.tasks.values())


def check_resources(net: Network, tree: ast.Network) -> list[PartError]:
    errors: list[PartError] = []
    for name in net.tasks:
        elements, layer, where = task_activation_elements(net, name)
        if elements * FLOAT_BYTES > MAX_ACTIVATION_BYTES:
            largest = f"; the largest is {layer_text(layer)} in {where}, giving {shape_text(layer.shape)}" if layer else ""
            errors.append(SpecError(
                f"task '{name}' needs {byte_text(elements * FLOAT_BYTES)} of activations per sample "
                f"(the outputs of the layers on its route{largest}), more than partc allows "
                f"({byte_text(MAX_ACTIVATION_BYTES)})", _loc(layer, net),
                "use smaller inputs, strides or padding, fewer channels, or pool earlier"))
    params = count_params(net)
    if params > MAX_PARAMETERS:
        size, layer, where = _largest_parameter_layer(net)
        shown = f"{layer_text(layer)} in {where}, with {size:,}" if layer else ""
        errors.append(SpecError(
            f"the network has {params:,} parameters ({byte_text(params * FLOAT_BYTES)} of float32 weights), more than "
            f"partc trains (at most {MAX_PARAMETERS:,})", _loc(layer, net),
            f"the largest layer is {shown}: narrow the layers, or pool before flatten and linear" if layer else None))
    return errors


def _loc(layer: Layer | None, net: Network) -> Location | None:
    return layer.loc if layer is not None else net.loc
