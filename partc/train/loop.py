"""Train stage, the two training modes and evaluation.

fused (default): every step takes one batch of every task, runs them
together through `PartModel.forward_all` (each segment once over the rows
of all its tasks), sums the task losses times each task's `weight`, and
takes one step of one optimizer over every parameter on some task's route.
A shared segment's gradient is the sum of its tasks' gradients. Its
BatchNorm normalises each task's rows with that task's own batch statistics
(`batchnorm per_task`, the default: the step computes what one forward per
task would, and no task's loss reaches another's private segments), or all
the rows together (`batchnorm joint`).

interleaved (the paper's schedule): runs of `steps_per_task` steps of one
task at a time (`model(x, task=t)`), each step taken by that task's own
optimizer, which holds only `model.task_parameters(t)`; a shared segment
is moved by each of its tasks' optimizers in turn, with separate Adam
moments per task, and its BatchNorm sees one task's batch at a time.

Running metrics stay on the device as tensors (no host sync per step);
they are read once per epoch, or when the progress bar redraws.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from partc.train.device import Runtime
from partc.train.sampling import TaskStream


class Meter:
    """Loss, top-1 and top-k hits of one task on one split, summed on the device."""

    def __init__(self, classes: int, device: torch.device):
        self.k = min(5, classes)  # top-5 of a task with fewer classes is top-(classes)
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss x n, top-1 hits, top-k hits
        self.samples = 0

    @torch.no_grad()
    def batch_sums(self, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """What one batch adds to `sums`."""
        n = y.shape[0]
        hits = logits.topk(self.k, dim=1).indices.eq(y[:, None])
        return torch.stack([loss.detach().double() * n, hits[:, 0].sum().double(), hits.any(dim=1).sum().double()])

    def update(self, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        self.add(self.batch_sums(logits, y, loss), y.shape[0])

    def add(self, sums: torch.Tensor, samples: int) -> None:
        self.sums += sums.to(self.sums.device)
        self.samples += samples

    def result(self) -> dict:
        if self.samples == 0:
            return {"loss": None, "top1": None, "top5": None, "samples": 0}
        loss, top1, topk = (v / self.samples for v in self.sums.tolist())
        return {"loss": loss, "top1": top1, "top5": topk, "samples": self.samples}


class TaskFeed:
    """One task's training data and the generators that draw its batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch: int, stream: TaskStream,
                 augment: Callable | None, augment_generator: torch.Generator, runtime: Runtime,
                 share: slice | None = None):
        self.x, self.y = runtime.place([x, y])
        self.batch = batch
        self.stream = stream
        stream.device = self.x.device
        self.augment = augment
        self.augment_generator = augment_generator
        self.runtime = runtime
        self.share = share  # distributed: this process's rows of each batch (`partc.train.distributed`)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.stream.take(self.batch)  # on the data's device already: no copy per step
        if self.share is not None:
            idx = idx[self.share]
        x, y = self.x[idx], self.y[idx]
        if self.augment is not None:
            if self.share is None:
                x = self.augment(x, self.augment_generator)
            else:  # the whole batch's draws, this share's rows of them
                x = self.augment(x, self.augment_generator, (self.share.start, self.batch))
        return self.runtime.input(x), y.to(self.runtime.device, non_blocking=True)


def fused_epoch(model, optimizer, feeds: dict[str, TaskFeed], weights: dict[str, float], steps: int,
                meters: dict[str, Meter], runtime: Runtime, tick: Callable[[], None]) -> None:
    model.train()
    for _ in range(steps):
        batches = {t: feed.next() for t, feed in feeds.items()}
        with runtime.autocast():
            logits = model.forward_all({t: x for t, (x, _) in batches.items()})
            losses = {t: F.cross_entropy(logits[t].float(), batches[t][1]) for t in batches}
            total = sum(weights[t] * losses[t] for t in batches)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        for t in batches:
            meters[t].update(logits[t], batches[t][1], losses[t])
        tick()


def interleaved_epoch(model, optimizers: dict[str, torch.optim.Optimizer], feeds: dict[str, TaskFeed],
                      weights: dict[str, float], schedule: list[tuple[str, int]], meters: dict[str, Meter],
                      runtime: Runtime, tick: Callable[[], None]) -> None:
    model.train()
    for task, count in schedule:
        optimizer = optimizers[task]
        for _ in range(count):
            x, y = feeds[task].next()
            with runtime.autocast():
                logits = model(x, task=task)
                loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            (weights[task] * loss).backward()
            optimizer.step()
            meters[task].update(logits, y, loss)
            tick()


@torch.no_grad()
def evaluate_batches(model, task: str, x: torch.Tensor, y: torch.Tensor, classes: int, runtime: Runtime,
                     batch: int = 512, rank: int = 0, size: int = 1) -> list[tuple[int, torch.Tensor, int]]:
    """(batch number, the sums it adds to a `Meter`, samples) of batches rank, rank + size, ... of (x, y)
    in `batch`-row pieces: eval mode, no gradients. A single process evaluates them all."""
    was_training = model.training
    model.eval()
    meter = Meter(classes, runtime.device)
    found = []
    for number, start in enumerate(range(0, x.shape[0], batch)):
        if number % size != rank:
            continue
        xb = runtime.input(x[start : start + batch])
        yb = y[start : start + batch].to(runtime.device, non_blocking=True)
        with runtime.autocast():
            logits = model(xb, task=task)
        found.append((number, meter.batch_sums(logits, yb, F.cross_entropy(logits.float(), yb)), yb.shape[0]))
    model.train(was_training)
    return found


def summed(found: list[tuple[int, torch.Tensor, int]], classes: int, device: torch.device) -> dict:
    """Loss/top1/top5/samples from `evaluate_batches` rows, added in batch order (one result to the bit,
    however the batches were shared out)."""
    meter = Meter(classes, device)
    for _number, sums, samples in sorted(found, key=lambda row: row[0]):
        meter.add(sums, samples)
    return meter.result()


def evaluate(model, task: str, x: torch.Tensor, y: torch.Tensor, classes: int, runtime: Runtime,
             batch: int = 512) -> dict:
    """Loss, top-1 and top-5 of `task` on (x, y): eval mode, batched, no gradients."""
    return summed(evaluate_batches(model, task, x, y, classes, runtime, batch), classes, runtime.device)
