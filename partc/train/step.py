"""Train stage, how a fused step runs its forward: `forward_all`, or one forward per task.

Both give the same step (logits, losses, gradients, BatchNorm statistics; up
to float rounding, since a shared segment's rows are summed in another
order) when BatchNorm statistics are per task (`batchnorm per_task`, the
default) and no layer draws random numbers (dropout would draw its masks in
another order): see `PartModel.forward_tasks`. With `batchnorm joint` a
shared segment normalises all its tasks' rows together, which only
`forward_all` computes.

Which is faster depends on the device and on the work per layer call:
- CUDA: `forward_all`, one kernel per segment over the rows of all its
  tasks; launches are what a small batch costs there.
- CPU: `forward_all` saves layer calls (a segment shared by k tasks runs
  once, not k times) and pays for gathering each segment's rows, splitting
  them at every BatchNorm and scattering the sums back, and a convolution
  over several tasks' rows runs no faster per row than over one task's
  (slower once they outgrow the core's cache). So it wins when calls are
  many and small and loses when they are large: `per_task` is chosen when
  a task's activations at the layers that do most of the work (a mean over
  its convolutions and linear layers, weighted by their multiply-adds)
  reach `PER_TASK_BYTES` (bench/fused_step.py, docs/BENCHMARKS.md).

The choice depends only on the network, the batch sizes and the device
type, so a run makes it the same way every time; run.json records it and a
resumed run keeps the one its checkpoint was trained with.
"""

from __future__ import annotations

from math import prod

from partc.ir import Network
from partc.layers import PRIMITIVES
from partc.train.flops import layer_macs, route_layers
from partc.train.settings import setting_value

FUSED_STEPS = ("forward_all", "per_task")
PER_TASK_BYTES = 96 * 1024  # float32 activation of one task's batch at one layer (see the docstring)


def choose_fused_step(net: Network, batch_sizes: dict[str, int], device_type: str,
                      batchnorm: str) -> tuple[str, str]:
    """("forward_all" | "per_task", why) for a fused step of the tasks in `batch_sizes`."""
    if device_type != "cpu":
        return "forward_all", f"{device_type}: one kernel per segment over all its tasks' rows"
    unlike = per_task_differs(net, list(batch_sizes), batchnorm)
    if unlike:
        return "forward_all", unlike
    size = activation_bytes(net, batch_sizes)
    if size >= PER_TASK_BYTES:
        return "per_task", f"cpu, {size / 1024:.0f} KiB per task and layer (>= {PER_TASK_BYTES // 1024} KiB)"
    return "forward_all", f"cpu, {size / 1024:.0f} KiB per task and layer (< {PER_TASK_BYTES // 1024} KiB)"


def per_task_differs(net: Network, tasks: list[str], batchnorm: str) -> str | None:
    """Why per-task forwards would not compute the fused step of `tasks`; None when they do."""
    if batchnorm != "per_task":
        return f"batchnorm {batchnorm}: a shared segment normalises all its tasks' rows together"
    if any(PRIMITIVES[layer.op].random for task in tasks for layer in route_layers(net, task)):
        return "a layer draws random numbers (dropout): per-task forwards would draw them in another order"
    return None


def activation_bytes(net: Network, batch_sizes: dict[str, int]) -> float:
    """Mean float32 bytes of one task's batch at its convolutions and linear layers (the larger of
    input and output), weighted by the multiply-adds each does for that batch."""
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
    before its data is loaded, and all `partc.devices.choose_threads` needs to pick a thread count."""
    batch = setting_value(net.train, "batch")
    return activation_bytes(net, {t: batch for t in net.tasks})
