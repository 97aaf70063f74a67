"""Train stage, model FLOPs counted from the IR (for throughput and utilisation figures).

Only convolutions and linear layers count, 2 FLOPs per multiply-add, the
usual convention for model FLOPs utilisation; normalisation, activations,
pooling and the level sums are a rounding error beside them. Training is
taken as 3x the forward pass (forward, plus backward for inputs and for
weights).
"""

from __future__ import annotations

from partc.ir import Layer, Network

TRAIN_FACTOR = 3


def layer_macs(layer: Layer) -> int:
    if layer.op == "conv":
        out_c, oh, ow = layer.shape
        in_c = layer.in_shape[0]
        return out_c * (in_c // layer.args["groups"]) * layer.args["k"] ** 2 * oh * ow
    if layer.op == "linear":
        return layer.in_shape[0] * layer.shape[0]
    return 0


def task_forward_flops(net: Network, task: str) -> int:
    """FLOPs of one sample's forward pass through `task`'s route (stem, path segments, head)."""
    t = net.tasks[task]
    layers = list(t.stem or []) + list(t.head)
    for level in net.levels:
        for i in t.path[level.name]:
            layers += level.group_of(i).layers
    return 2 * sum(layer_macs(layer) for layer in layers)


def task_train_flops(net: Network, task: str) -> int:
    return TRAIN_FACTOR * task_forward_flops(net, task)
