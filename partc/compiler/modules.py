"""Layer primitives -> torch modules, read off the layer table (`partc.layers`: each entry's `torch`).

The compiler has no per-layer code: a layer's torch class and constructor
arguments are data in its table entry, and tests compare every module's
parameter count with the IR's.
"""

from __future__ import annotations

from torch import nn

from partc.ir import Layer
from partc.layers import PRIMITIVES, torch_arguments


def build_layer(layer: Layer) -> nn.Module:
    cls, kwargs = torch_arguments(PRIMITIVES[layer.op], layer.in_shape, layer.args)
    return getattr(nn, cls)(**kwargs)


def build_sequential(layers: list[Layer]) -> nn.Sequential:
    return nn.Sequential(*(build_layer(layer) for layer in layers))
