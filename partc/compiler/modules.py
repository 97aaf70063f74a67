"""Layer primitives -> torch modules, read off the layer table (`partc.layers`: each entry's `torch`).

The compiler has no per-layer code: a layer's torch class and constructor
arguments are data in its table entry, and tests compare every module's
parameter count with the IR's.

A per-task layer (`task_batchnorm`) of a segment becomes an
`nn.ModuleDict` {task: module} holding one copy for each task routed
through the segment, at the layer's own position, so its weights are named
`levels.l2.5.1.<task>.weight` (`partc.layers.module_path`). Such a segment
cannot run without knowing the task: `segment_layers` says which module of
each position a task runs.
"""

from __future__ import annotations

from torch import nn

from partc.ir import Layer
from partc.layers import PRIMITIVES, torch_arguments


def build_layer(layer: Layer) -> nn.Module:
    cls, kwargs = torch_arguments(PRIMITIVES[layer.op], layer.in_shape, layer.args)
    return getattr(nn, cls)(**kwargs)


def build_sequential(layers: list[Layer], tasks: list[str] | None = None) -> nn.Sequential:
    """The layers in order; a per-task layer as {task: its copy} for each of `tasks` (a segment's users)."""
    modules = []
    for layer in layers:
        if not layer.per_task:
            modules.append(build_layer(layer))
        elif tasks is None:  # the checker refuses per-task layers outside segments
            raise ValueError(f"{layer.op} outside a segment has no tasks to belong to")
        else:
            modules.append(nn.ModuleDict({task: build_layer(layer) for task in tasks}))
    return nn.Sequential(*modules)


def is_task_owned(module: nn.Module) -> bool:
    """Whether a segment's position holds one module per task (a per-task layer) rather than one module."""
    return isinstance(module, nn.ModuleDict)


def has_task_owned(segment: nn.Sequential) -> bool:
    return any(is_task_owned(m) for m in segment)


def segment_layers(segment: nn.Sequential, task: str) -> list[nn.Module]:
    """The modules `task` runs through `segment`, in order: its own copy at each per-task position."""
    return [m[task] if is_task_owned(m) else m for m in segment]
