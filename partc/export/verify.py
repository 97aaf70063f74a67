"""Export stage, self-check: every exported file is verified before it is written.

1. `onnx.checker.check_model(full_check=True)`: valid graph, types and shapes.
2. `audit_weights`: every weight in the file belongs to a module on the
   task's route. The exporter names initializers after the torch tensor they
   came from (a conv folded with its BatchNorm keeps the conv's name; a bias
   the fold creates is `<conv>.weight_bias`), so a name outside the route is
   another task's weight: an error. Nameless constants are allowed only as
   scalars (0.5, sqrt(2) of gelu; shape vectors), never as weight tensors.
3. `compare_with_torch`: ONNX Runtime (CPU) against the torch module at
   batch 1 and batch 3 (the dynamic axis), max |difference| <= tolerance.

Parameter counts. `partc check` counts a task's route: its stem, path
segments and head, BatchNorm scale/shift included (`net.task_params`), of a
per-task layer (`task_batchnorm`) the task's own copy only: its fx module
calls that copy (`levels.l1.3.1.<task>`) and no other task's, so another
task's copy in a shared segment is off the route, and an error here.
The torch module must hold exactly that many parameters (checked here).
The folded file holds fewer: each BatchNorm after a conv/linear is folded
into that layer's weight and bias, so its 2*C scale/shift values (and its
running statistics) vanish. So file weights = route parameters minus the
folded BatchNorms' scale/shift, plus any bias a fold had to create.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from partc.errors import ExportError

MAX_ANONYMOUS_ELEMENTS = 16  # a nameless constant larger than this would be an unattributed weight


@dataclass
class WeightAudit:
    route_params: int  # parameters of the task's route (= net.task_params, = the torch module's)
    file_weights: int  # float values stored in the ONNX initializers
    folded_batchnorm: int  # BatchNorm scale/shift values folded into conv/linear weights
    created_bias: int  # bias values the folding created for bias-free layers
    constants: int  # values of nameless constants (scalars, shape vectors)
    initializers: int  # number of initializer tensors


def check_onnx(model: onnx.ModelProto, task: str) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"task '{task}': the exported model is not valid ONNX: {str(e).splitlines()[0][:300]}") from None


def _owner(name: str, modules: set[str]) -> str | None:
    """The longest module path that prefixes an initializer's name."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in modules:
            return prefix
    return None


def audit_weights(model: onnx.ModelProto, task_module, full_model, task: str, route_params: int, *,
                  prefix: str = "", own_constants: tuple[str, ...] = ()) -> WeightAudit:
    """Check that the file's weights all come from the task's route; count them.

    `prefix`: what a wrapper around the task module puts before every
    weight's name; `own_constants`: the wrapper's own tensors (counted as
    constants: the normalisation statistics of partc/export/normalization.py).
    """
    import torch

    torch_params = sum(p.numel() for p in task_module.parameters())
    if torch_params != route_params:
        raise ExportError(f"task '{task}': its torch module holds {torch_params} parameters, "
                          f"the spec's route {route_params}")
    all_modules = {name for name, _ in full_model.named_modules() if name}
    route_modules = {n.target for n in task_module.graph.nodes if n.op == "call_module"}
    on_route = lambda owner: any(owner == r or owner.startswith(r + ".") for r in route_modules)  # noqa: E731
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}

    stored = {}
    file_weights = created = constants = 0
    for init in model.graph.initializer:
        size = int(np.prod(init.dims, dtype=np.int64))
        if init.name in own_constants:
            constants += size
            continue
        name = init.name.removeprefix(prefix) if prefix and init.name.startswith(prefix) else init.name
        owner = _owner(name, all_modules)
        if owner is None:
            if init.data_type in float_types and size > MAX_ANONYMOUS_ELEMENTS:
                raise ExportError(f"task '{task}': initializer '{init.name}' ({size} values) belongs to no module",
                                  hint="the exporter renamed weights; the file cannot be audited")
            constants += size
            continue
        if not on_route(owner):
            raise ExportError(f"task '{task}': the file holds '{init.name}', which is not on the task's route")
        if init.data_type in float_types:
            file_weights += size
        stored[name] = size
        if name.endswith("_bias") and name not in dict(task_module.named_parameters()):
            created += size

    folded = 0
    for name, module in task_module.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.affine:
            if f"{name}.weight" not in stored:
                folded += module.weight.numel() + module.bias.numel()
    return WeightAudit(route_params, file_weights, folded, created, constants, len(model.graph.initializer))


def compare_with_torch(session, module, sample_shape: tuple[int, ...], input_name: str,
                       batches: tuple[int, ...] = (1, 3), seed: int = 0) -> float:
    """Max |ONNX Runtime - torch| over random normal inputs of each batch size."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch in batches:
        x = torch.randn(batch, *sample_shape, generator=gen)
        with torch.inference_mode():
            expected = module(x).numpy()
        got = session.run(None, {input_name: x.numpy()})[0]
        if got.shape != expected.shape:
            raise ExportError(f"ONNX output shape {list(got.shape)} != torch {list(expected.shape)} at batch {batch}")
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst
