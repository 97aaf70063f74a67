"""Train stage, memory: what training a network takes, against what the device has, before anything is built.

The estimate (bytes) is the parameters with their gradients and optimizer
state (Adam and AdamW keep two moments: 16 bytes per parameter; SGD with
momentum 12, without 8), plus every task's activations per sample
(`partc.passes.resources`, which `partc check` already bounds) times its
batch, twice (the backward pass keeps as much again). A run that needs more
than the device's memory (available RAM on the CPU, the GPU's total memory
on CUDA) is refused with both numbers; an allocation that fails anyway (the
estimate is a floor: data, workspaces and fragmentation come on top)
becomes the same clean error instead of an allocator traceback.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from partc.errors import TrainError
from partc.ir import Network
from partc.passes.resources import FLOAT_BYTES, task_activation_elements
from partc.train.config import TrainConfig
from partc.train.device import Runtime
from partc.train.sampling import task_batch_sizes
from partc.values import byte_text


def training_bytes(net: Network, cfg: TrainConfig, data: dict[str, Any]) -> int:
    """Estimated bytes to train `net` with `cfg`: parameters, gradients, optimizer state and activations."""
    momentum = cfg.optimizer in ("adam", "adamw") or float(cfg.optimizer_kwargs.get("momentum", 0)) > 0
    per_param = FLOAT_BYTES * (2 + (2 if cfg.optimizer in ("adam", "adamw") else 1 if momentum else 0))
    sizes = {t: len(data[t].train[1]) for t in net.tasks}
    batches = task_batch_sizes(cfg.batch, {t: net.tasks[t].sampling for t in net.tasks}, sizes)
    activations = sum(task_activation_elements(net, t)[0] * batches[t] for t in net.tasks)
    if cfg.mode == "interleaved":  # one task's batch at a time
        activations = max(task_activation_elements(net, t)[0] * batches[t] for t in net.tasks)
    return net.total_params * per_param + 2 * FLOAT_BYTES * activations


def device_bytes(runtime: Runtime) -> int | None:
    """Memory the device offers: available RAM on the CPU (Linux), the GPU's total memory on CUDA."""
    if runtime.cuda:
        return int(torch.cuda.mem_get_info(runtime.device)[1])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _too_big(net: Network, cfg: TrainConfig, runtime: Runtime, need: int, have: int | None, what: str) -> TrainError:
    where = f"{runtime.device}" + (f", which has {byte_text(have)}" if have else "")
    return TrainError(
        f"training '{net.name}' {what} about {byte_text(need)} ({net.total_params:,} parameters with gradients and "
        f"{cfg.optimizer} state, and activations for batch {cfg.batch}) on {where}",
        hint="lower batch (train { batch ... }), use fewer or narrower segments, or train on a larger device")


def check_memory(net: Network, cfg: TrainConfig, runtime: Runtime, data: dict[str, Any]) -> None:
    need, have = training_bytes(net, cfg, data), device_bytes(runtime)
    if have is not None and need > have:
        raise _too_big(net, cfg, runtime, need, have, "needs")


@contextlib.contextmanager
def allocation_errors(net: Network, cfg: TrainConfig, runtime: Runtime, data: dict[str, Any]):
    """An allocator's out-of-memory error inside becomes a TrainError with the estimate."""
    try:
        yield
    except RuntimeError as e:  # torch.OutOfMemoryError (CUDA) is one; the CPU allocator raises a plain one
        text = str(e)
        if not isinstance(e, torch.OutOfMemoryError) and "can't allocate memory" not in text \
                and "out of memory" not in text:
            raise
        raise _too_big(net, cfg, runtime, training_bytes(net, cfg, data), device_bytes(runtime),
                       "ran out of memory; it needs at least") from None
