"""Train stage, batching policy: which samples of which task each step takes.

- Each task reads an endless stream of its training indices made of fresh
  shuffles back to back (`TaskStream`). A batch that reaches the end of a
  shuffle continues into the next one, so every batch has the same size
  (static shapes: good for cuDNN autotuning and CUDA graphs), no sample is
  dropped, and each pass over a task's data sees every sample once.
- A task's batch size is `batch x sampling` (its `sampling` setting,
  default 1), rounded, at least 1, at most the task's training set size.
- An epoch is a number of steps per task: ceil(n / b) of the task whose
  data lasts longest (`epoch_policy largest`, default) or shortest
  (`smallest`). The other tasks cycle through their streams.
- Interleaved mode (the paper's schedule): each round shuffles the task
  order and gives each task `steps_per_task` consecutive steps, until every
  task has had its epoch's steps (so both modes train each task on the same
  number of batches per epoch).

Every random draw comes from a `torch.Generator` whose state is saved in
each checkpoint; generator seeds derive from the train seed and the task
name, so adding a task changes no other task's data order.
"""

from __future__ import annotations

import math

import torch

from partc.seeds import derived_seed


def make_generator(seed: int, *parts: str) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(derived_seed(seed, *parts))
    return gen


class TaskStream:
    """An endless stream of one task's sample indices: shuffle after shuffle.

    Shuffles are drawn on the CPU (a checkpointable generator) and copied to
    `device` once per pass, so taking a batch costs no host-device copy.
    """

    def __init__(self, size: int, generator: torch.Generator, device: torch.device | str = "cpu"):
        if size < 1:
            raise ValueError("a task stream needs at least one sample")
        self.size = size
        self.generator = generator
        self.device = torch.device(device)
        self.perm = torch.arange(size)
        self._on_device = None
        self.pos = size  # exhausted: the first take draws a shuffle

    def _device_perm(self) -> torch.Tensor:
        if self._on_device is None or self._on_device.device != self.device:
            self._on_device = self.perm.to(self.device)
        return self._on_device

    def take(self, count: int) -> torch.Tensor:
        parts = []
        while count > 0:
            if self.pos >= self.size:
                self.perm = torch.randperm(self.size, generator=self.generator)
                self._on_device = None
                self.pos = 0
            n = min(count, self.size - self.pos)
            parts.append(self._device_perm()[self.pos : self.pos + n])
            self.pos += n
            count -= n
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def state_dict(self) -> dict:
        return {"perm": self.perm.clone(), "pos": self.pos, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if state["perm"].numel() != self.size:
            raise ValueError(f"stream state has {state['perm'].numel()} samples, data has {self.size}")
        self.perm = state["perm"].clone()
        self._on_device = None
        self.pos = int(state["pos"])
        self.generator.set_state(state["generator"])


def task_batch_sizes(batch: int, sampling: dict[str, float], sizes: dict[str, int]) -> dict[str, int]:
    """Each task's batch: `batch x sampling`, rounded, within 1..(its training samples)."""
    return {t: max(1, min(sizes[t], round(batch * sampling[t]))) for t in sizes}


def steps_per_epoch(sizes: dict[str, int], batches: dict[str, int], policy: str) -> int:
    """Steps (per task) in one epoch: one pass of the largest or the smallest task."""
    passes = [math.ceil(sizes[t] / batches[t]) for t in sizes]
    return max(passes) if policy == "largest" else min(passes)


def interleaved_schedule(tasks: list[str], steps: int, steps_per_task: int,
                         generator: torch.Generator) -> list[tuple[str, int]]:
    """(task, consecutive steps) runs of one interleaved epoch; every task gets `steps` steps."""
    runs = []
    for done in range(0, steps, steps_per_task):
        count = min(steps_per_task, steps - done)
        for i in torch.randperm(len(tasks), generator=generator).tolist():
            runs.append((tasks[i], count))
    return runs
