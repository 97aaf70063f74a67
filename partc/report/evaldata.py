"""Report, evaluation data: the labelled test sets and the common CKA probe.

Default: each task's test split from the data stage (`partc.data.load`).
The CKA probe is one batch every task sees: a few test samples of each task
that reads the same input, so all tasks' representations describe the same
images. Samples are stored as the data stage hands them (normalised with
their own task's mean/std); before a sample enters another task's path it is
moved to that task's normalisation (x * std_a + mean_a - mean_b) / std_b.

Fallback, clearly marked in the report: when no task of an input has test
data (its files are missing, say), the probe of that input is random normal
noise in the input's shape (the model's normalised input space), and the
accuracy-based section (transfer) skips the tasks without data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from partc.errors import PartError
from partc.ir import Network

RANDOM_PROBE = "random normal inputs (no test data available)"
TEST_PROBE = "test samples of every task reading this input"


@dataclass
class TaskTest:
    """One task's labelled test data, as the model takes it."""

    x: Tensor
    y: Tensor
    mean: Tensor | None = None
    std: Tensor | None = None


@dataclass
class EvalData:
    tests: dict[str, TaskTest] = field(default_factory=dict)
    source: str = ""
    problems: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)  # task -> TaskData.split_digest(), to check runs against


def load_test_data(net: Network, data_root: str | None = None) -> EvalData:
    """Every task's test split through the data stage; a problem for each task it cannot load."""
    from partc.data.load import load_all, load_task_data

    data = EvalData(source="test split (partc.data)")
    try:
        loaded = load_all(net, data_root=data_root)  # reads each source once
    except PartError:
        loaded = {}
        for name in net.tasks:  # one by one, to know which tasks fail and why
            try:
                loaded[name] = load_task_data(net, name, data_root=data_root)
            except PartError as e:
                data.problems.append(f"task '{name}': test data not loaded: {e.message}")
    for name, task_data in loaded.items():
        x, y = task_data.test
        if len(y) == 0:
            data.problems.append(f"task '{name}': the test split is empty")
            continue
        data.tests[name] = TaskTest(x, y, _stat(task_data.mean), _stat(task_data.std))
        digest = task_data.split_digest()
        if digest is not None:
            data.digests[name] = digest
    return data


def from_tensors(pairs: dict[str, tuple[Tensor, Tensor]], source: str) -> EvalData:
    """Evaluation data given directly (API use: a notebook's own held-out data)."""
    return EvalData({t: TaskTest(x, y) for t, (x, y) in pairs.items()}, source=source)


def _stat(value: Any) -> Tensor | None:
    if value is None:
        return None
    return torch.as_tensor(value, dtype=torch.float32)


def _broadcastable(stat: Tensor, x: Tensor) -> Tensor:
    # Per-channel statistics of images (C,) broadcast over (N, C, H, W).
    if stat.dim() == 1 and x.dim() == 4 and stat.numel() == x.shape[1]:
        return stat.view(1, -1, 1, 1)
    return stat


def renormalise(x: Tensor, source: TaskTest, target: TaskTest | None) -> Tensor:
    """Samples normalised for `source`'s task, re-normalised for `target`'s."""
    if target is None or target is source:
        return x
    if source.mean is None or source.std is None or target.mean is None or target.std is None:
        return x
    raw = x * _broadcastable(source.std, x) + _broadcastable(source.mean, x)
    return (raw - _broadcastable(target.mean, x)) / _broadcastable(target.std, x)


@dataclass
class Probe:
    """The common CKA batch of one input, as each of its tasks sees it."""

    input: str
    tasks: list[str]
    per_task: dict[str, Tensor]
    kind: str  # TEST_PROBE or RANDOM_PROBE
    samples: int
    origin: dict[str, int] = field(default_factory=dict)  # task -> samples it contributed


def build_probes(net: Network, data: EvalData, size: int = 256, seed: int = 0) -> list[Probe]:
    """One probe per input that two or more tasks read (CKA compares tasks on the same samples)."""
    by_input: dict[str, list[str]] = {}
    for name, task in net.tasks.items():
        by_input.setdefault(task.input, []).append(name)
    probes = []
    gen = torch.Generator().manual_seed(seed)
    for input_name, tasks in by_input.items():
        if len(tasks) < 2:
            continue
        have = [t for t in tasks if t in data.tests]
        if have:
            per = max(1, size // len(have))
            parts, origin = [], {}
            for t in have:
                test = data.tests[t]
                take = torch.randperm(len(test.y), generator=gen)[:per]
                parts.append((test, test.x[take]))
                origin[t] = len(take)
            per_task = {
                t: torch.cat([renormalise(x, src, data.tests.get(t)) for src, x in parts]).float() for t in tasks
            }
            probes.append(Probe(input_name, tasks, per_task, TEST_PROBE, sum(origin.values()), origin))
        else:
            shape = net.inputs[input_name].shape
            x = torch.randn((size, *shape), generator=gen)
            probes.append(Probe(input_name, tasks, {t: x for t in tasks}, RANDOM_PROBE, size))
    return probes
