"""Train stage, model FLOPs counted from the IR (for throughput and utilisation figures).

Multiply-adds per layer come from the layer table (`partc.layers`, each
entry's `macs`): convolutions and linear layers; normalisation, activations,
pooling and the level sums are a rounding error beside them. 2 FLOPs per
multiply-add, the usual convention for model FLOPs utilisation. Training is
taken as 3x the forward pass (forward, plus backward for inputs and for
weights).
"""

from __future__ import annotations

from math import prod

from partc.ir import Layer, Network
from partc.layers import PRIMITIVES
from partc.train.settings import setting_value

TRAIN_FACTOR = 3


def layer_macs(layer: Layer) -> int:
    return PRIMITIVES[layer.op].macs(layer.in_shape, layer.shape, layer.args)


def route_layers(net: Network, task: str) -> list[Layer]:
    """Every layer one sample of `task` passes through: stem, path segments and each level's `then`, head."""
    t = net.tasks[task]
    layers = list(t.stem or [])
    for level in net.levels:
        for i in t.path[level.name]:
            layers += level.group_of(i).layers
        layers += level.then
    return layers + list(t.head)


def task_forward_flops(net: Network, task: str) -> int:
    """FLOPs of one sample's forward pass through `task`'s route (stem, path segments, head)."""
    return 2 * sum(layer_macs(layer) for layer in route_layers(net, task))


def task_train_flops(net: Network, task: str) -> int:
    return TRAIN_FACTOR * task_forward_flops(net, task)


def activation_bytes(net: Network, batch_sizes: dict[str, int]) -> float:
    """How large a training step's layer calls are: the mean float32 bytes of one task's batch at its
    convolutions and linear layers (the larger of input and output), weighted by the multiply-adds
    each does for that batch. `partc.devices.choose_threads` gives small ones one thread."""
    weighted = total = 0.0
    for task, batch in batch_sizes.items():
        for layer in route_layers(net, task):
            macs = layer_macs(layer) * batch
            if macs:
                weighted += macs * 4 * batch * max(prod(layer.in_shape), prod(layer.shape))
                total += macs
    return weighted / total if total else 0.0


def spec_layer_bytes(net: Network) -> float:
    """`activation_bytes` with every task at the spec's batch size: what a training process knows
    before its data is loaded, all the thread choice needs."""
    batch = setting_value(net.train, "batch")
    return activation_bytes(net, {t: batch for t in net.tasks})
