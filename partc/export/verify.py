"""Export stage, self-check: every exported file is verified before it is written.

1. `onnx.checker.check_model(full_check=True)`: valid graph, types and shapes.
2. `audit_weights`: every weight in the file belongs to a module on the
   route (of a task, or of the union of a fused file's tasks). The emitter
   names each initializer after the state-dict tensor it came from (a conv
   folded with its BatchNorm keeps the conv's names; a bias the fold creates
   for a bias-free conv is named as the conv's bias would be), so a name
   outside the route is another task's weight: an error. The route comes
   from the IR (`route_modules`, by `partc.layers.module_path`), not from the
   emitter. Nameless constants are allowed only as scalars (0.5, sqrt(2) of
   gelu), never as weight tensors.
3. `compare_with_torch`: ONNX Runtime (CPU) against each task's torch module
   at batch 1 and batch 3 (the dynamic axis), max |difference| <= tolerance.

Parameter counts. `partc check` counts a task's route: its stem, path
segments and head, BatchNorm scale/shift included (`net.task_params`), of a
per-task layer (`task_batchnorm`) the task's own copy only (at
`module_path(..., task)`), so another task's copy in a shared segment is
off the route, and an error here. The trained model must hold exactly that
many parameters on it (checked here). The folded file holds fewer: each
BatchNorm after a conv/linear is folded into that layer's weight and bias,
so its 2*C scale/shift values (and its running statistics) vanish. So file
weights = route parameters minus the
folded BatchNorms' scale/shift, plus any bias a fold had to create.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from partc.errors import ExportError
from partc.ir import Layer, Network
from partc.layers import PRIMITIVES, module_path

MAX_ANONYMOUS_ELEMENTS = 16  # a nameless constant larger than this would be an unattributed weight


@dataclass
class WeightAudit:
    route_params: int  # parameters of the route (= net.task_params; a fused file: of the union)
    file_weights: int  # float values stored in the ONNX initializers
    folded_batchnorm: int  # BatchNorm scale/shift values folded into conv/linear weights
    created_bias: int  # bias values the folding created for bias-free layers
    constants: int  # values of nameless constants (scalars, shape vectors)
    initializers: int  # number of initializer tensors


def check_onnx(model: onnx.ModelProto, what: str) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{what}: the exported model is not valid ONNX: {str(e).splitlines()[0][:300]}") from None


def route_modules(net: Network, tasks: Iterable[str]) -> dict[str, Layer]:
    """Module path -> layer, for every layer on the routes of `tasks` (the compiled model's names)."""
    found: dict[str, Layer] = {}
    for t in tasks:
        task = net.tasks[t]
        sequences = [(f"stems.{t}", task.stem or [])]
        for level in net.levels:
            sequences += [(f"levels.{level.name}.{i}", level.group_of(i).layers) for i in task.path[level.name]]
            sequences.append((f"posts.{level.name}", level.then))
        sequences.append((f"heads.{t}", task.head))
        for container, layers in sequences:
            for position, layer in enumerate(layers):
                found[module_path(container, position, layer.op, t)] = layer
    return found


def audit_weights(model: onnx.ModelProto, net: Network, tasks: list[str], weights: Mapping[str, np.ndarray],
                  params: Iterable[str], what: str, *, own_constants: Iterable[str] = ()) -> WeightAudit:
    """Check that the file's weights all come from the route of `tasks`; count them.

    `weights`: the trained model's state dict; `params`: which of its names
    are parameters (the rest are buffers: running statistics);
    `own_constants`: the emitter's own tensors (counted as constants: the
    normalisation statistics).
    """
    route = route_modules(net, tasks)
    owner_of = lambda name: name.rpartition(".")[0]  # noqa: E731 - tensors are named <module path>.<tensor>
    expected = sum(layer.params for layer in route.values())
    held = sum(int(weights[n].size) for n in params if owner_of(n) in route)
    if held != expected:
        raise ExportError(f"{what}: the trained model holds {held} parameters on the route, the spec's route {expected}")
    modules = {owner_of(n) for n in weights}
    own = set(own_constants)
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}

    stored = set()
    file_weights = created = constants = 0
    for init in model.graph.initializer:
        size = int(np.prod(init.dims, dtype=np.int64))
        owner = owner_of(init.name)
        if init.name in own or (owner not in route and owner not in modules):
            if init.name not in own and init.data_type in float_types and size > MAX_ANONYMOUS_ELEMENTS:
                raise ExportError(f"{what}: initializer '{init.name}' ({size} values) belongs to no module",
                                  hint="the file cannot be audited")
            constants += size
            continue
        if owner not in route:
            raise ExportError(f"{what}: the file holds '{init.name}', which is not on the route")
        if init.name not in weights:
            absorbs = PRIMITIVES[route[owner].op].absorbs
            if not absorbs or init.name != f"{owner}.{absorbs[1]}":
                raise ExportError(f"{what}: the file holds '{init.name}', which is no tensor of module '{owner}'")
            created += size
        if init.data_type in float_types:
            file_weights += size
        stored.add(init.name)

    stored_modules = {owner_of(n) for n in stored}
    folded = sum(layer.params for path, layer in route.items()
                 if PRIMITIVES[layer.op].affine and path not in stored_modules)
    return WeightAudit(expected, file_weights, folded, created, constants, len(model.graph.initializer))


def compare_with_torch(session, references: Mapping[str, Callable], sample_shape: tuple[int, ...], input_name: str,
                       batches: tuple[int, ...] = (1, 3), seed: int = 0) -> dict[str, float]:
    """Per output, max |ONNX Runtime - torch| over random normal inputs of each batch size.

    `references`: output name -> the torch computation of that output
    (a task module, behind the same normalisation as the graph's).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    worst = dict.fromkeys(references, 0.0)
    names = list(references)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 1 and 3 gain nothing from threads, and stall on a busy machine
    try:
        for batch in batches:
            x = torch.randn(batch, *sample_shape, generator=gen)
            got = dict(zip(names, session.run(names, {input_name: x.numpy()})))
            for name, reference in references.items():
                with torch.inference_mode():
                    expected = reference(x).numpy()
                if got[name].shape != expected.shape:
                    raise ExportError(f"output '{name}': ONNX shape {list(got[name].shape)} != torch "
                                      f"{list(expected.shape)} at batch {batch}")
                diff = float(np.max(np.abs(got[name] - expected)))
                if not diff <= worst[name]:  # NaN too: it must reach the caller's tolerance check
                    worst[name] = diff
    finally:
        torch.set_num_threads(threads)
    return worst
