"""Layer primitives -> torch modules (the compile stage's only torch mapping).

`partc.layers` holds the torch-free shape and size rules; this file must
agree with it: tests compare every module's parameter count with the IR's.
"""

from __future__ import annotations

from torch import nn

from partc.ir import Layer


def build_layer(layer: Layer) -> nn.Module:
    a, s = layer.args, layer.in_shape
    op = layer.op
    if op == "conv":
        return nn.Conv2d(s[0], a["out"], a["k"], stride=a["stride"], padding=a["pad"], groups=a["groups"],
                         bias=a["bias"])
    if op == "linear":
        return nn.Linear(s[0], a["out"], bias=a["bias"])
    if op == "batchnorm":
        return nn.BatchNorm2d(s[0]) if len(s) == 3 else nn.BatchNorm1d(s[0])
    if op == "layernorm":
        return nn.LayerNorm(list(s))
    if op == "relu":
        return nn.ReLU()
    if op == "gelu":
        return nn.GELU()
    if op == "dropout":
        return nn.Dropout(a["p"])
    if op == "maxpool":
        return nn.MaxPool2d(a["k"], stride=a["stride"] or a["k"])
    if op == "avgpool":
        if a["k"] is None:
            return nn.AdaptiveAvgPool2d(1)
        return nn.AvgPool2d(a["k"], stride=a["stride"] or a["k"])
    if op == "flatten":
        return nn.Flatten()
    raise NotImplementedError(f"partc has no torch module for layer '{op}'")  # a bug: the checker knows every op


def build_sequential(layers: list[Layer]) -> nn.Sequential:
    return nn.Sequential(*(build_layer(layer) for layer in layers))
