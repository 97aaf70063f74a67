"""Report, analyses that need weights: CKA between tasks, accuracy, the lesion test.

`cka_by_level` runs the common probe through every task's path and compares
the tasks' outputs at each level with linear CKA; with `permutations`, also
the noise floor: the same pairs with the rows of one side shuffled (what CKA
gives for representations of *unrelated* samples of these shapes). Run on
the untrained weights (init.pt) and on a no-sharing baseline, the same call
gives the references a trained value must be read against (`partc.report.compare`).

`lesion` measures how much each task relies on what it shares: its test
accuracy with trained weights versus with its shared segments put back to
their initial weights (checkpoints/init.pt), everything else trained (its own
per-task layers, task_batchnorm, inside those segments included: they are
the task's own). That
is how much of the route is shared, not what the task gains from the other
tasks; the transfer measure is the comparison with a no-sharing baseline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from partc.compiler.model import PartModel
from partc.compiler.modules import is_task_owned
from partc.ir import Network
from partc.report.cka import centered_gram, cka_from_grams, cka_noise_floor
from partc.report.evaldata import EvalData, Probe

BATCH = 256


@torch.no_grad()
def level_grams(model: PartModel, x: Tensor, task: str, device: torch.device) -> dict[str, np.ndarray]:
    """The centered Gram matrix of `task`'s output at every level, over the samples x."""
    outputs: dict[str, list[Tensor]] = {}
    for start in range(0, len(x), BATCH):
        for level, h in model.features(x[start:start + BATCH].to(device), task).items():
            outputs.setdefault(level, []).append(h.reshape(h.shape[0], -1).cpu())
    return {level: centered_gram(torch.cat(chunks)) for level, chunks in outputs.items()}


def cka_by_level(net: Network, model: PartModel, probes: list[Probe], device: torch.device, *,
                 permutations: int = 0, seed: int = 0) -> dict[str, Any]:
    """{level: task x task CKA matrix}; pairs of tasks on different inputs are None (no common samples).

    With permutations > 0, "noise_floor" holds the same matrices with the second task's rows
    shuffled (the mean over that many seeded permutations).
    """
    tasks = list(net.tasks)
    levels = [lv.name for lv in net.levels]
    matrices = {lv: [[None] * len(tasks) for _ in tasks] for lv in levels}
    noise = {lv: [[None] * len(tasks) for _ in tasks] for lv in levels}
    gen = np.random.default_rng(seed)
    for probe in probes:
        grams = {t: level_grams(model, probe.per_task[t], t, device) for t in probe.tasks}
        shuffles = [gen.permutation(probe.samples) for _ in range(permutations)]
        for lv in levels:
            level = [grams[t][lv] for t in probe.tasks]
            values = cka_from_grams(level)
            floor = cka_noise_floor(level, shuffles) if shuffles else None
            for a, ta in enumerate(probe.tasks):
                for b, tb in enumerate(probe.tasks):
                    i, j = tasks.index(ta), tasks.index(tb)
                    matrices[lv][i][j] = _value(values[a][b])
                    if floor is not None:
                        noise[lv][i][j] = _value(floor[a][b])
    out = {
        "tasks": tasks,
        "levels": levels,
        "matrices": matrices,
        "mean_between_tasks": mean_between_tasks(matrices),
        "probes": [
            {"input": p.input, "tasks": p.tasks, "kind": p.kind, "samples": p.samples, "from_tasks": p.origin}
            for p in probes
        ],
    }
    if permutations:
        out["noise_floor"] = {"matrices": noise, "mean_between_tasks": mean_between_tasks(noise),
                              "permutations": permutations}
    return out


def mean_between_tasks(matrices: dict[str, list[list[float | None]]]) -> dict[str, float | None]:
    """Mean CKA over distinct task pairs at each level: how alike the tasks' representations are."""
    means = {}
    for level, matrix in matrices.items():
        values = [v for i, row in enumerate(matrix) for j, v in enumerate(row) if i < j and v is not None]
        means[level] = sum(values) / len(values) if values else None
    return means


def _value(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


@torch.no_grad()
def accuracy(model: PartModel, task: str, x: Tensor, y: Tensor, device: torch.device) -> dict[str, float]:
    """Top-1 and top-5 (top-k with k = min(5, classes)) of one task on labelled samples."""
    top1 = top5 = 0
    for start in range(0, len(y), BATCH):
        logits = model(x[start:start + BATCH].to(device), task=task).cpu()
        target = y[start:start + BATCH].long()
        k = min(5, logits.shape[1])
        best = logits.topk(k, dim=1).indices
        top1 += int((best[:, 0] == target).sum())
        top5 += int((best == target[:, None]).any(dim=1).sum())
    n = len(y)
    return {"top1": top1 / n, "top5": top5 / n, "samples": n}


def shared_on_path(net: Network, task: str) -> list[tuple[str, int]]:
    """The (level, index) segments on `task`'s path that another task also uses."""
    return [(lv, i) for lv, ix in net.tasks[task].path.items() for i in ix if len(net.segment_users(lv, i)) > 1]


def _segment_state(state: dict[str, Tensor], level: str, index: int) -> dict[str, Tensor]:
    prefix = f"levels.{level}.{index}."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _reset_shared_layers(segment: torch.nn.Sequential, init: dict[str, Tensor]) -> None:
    """Put the segment's shared layers back to `init` (its state in init.pt); per-task layers stay as they are."""
    for position, layer in enumerate(segment):
        if not is_task_owned(layer):
            prefix = f"{position}."
            layer.load_state_dict({k[len(prefix):]: v for k, v in init.items() if k.startswith(prefix)})


@torch.no_grad()
def lesion(net: Network, model: PartModel, init_state: dict[str, Tensor], data: EvalData,
           device: torch.device) -> dict[str, Any]:
    """Per task: test accuracy trained, and with its shared segments reset to init.pt (the rest trained)."""
    out = {}
    for task in net.tasks:
        test = data.tests.get(task)
        if test is None:
            continue
        trained = accuracy(model, task, test.x, test.y, device)
        shared = shared_on_path(net, task)
        saved = {}
        for lv, i in shared:
            segment = model.segment(lv, i)
            saved[(lv, i)] = {k: v.clone() for k, v in segment.state_dict().items()}
            _reset_shared_layers(segment, _segment_state(init_state, lv, i))
        try:
            reset = accuracy(model, task, test.x, test.y, device) if shared else trained
        finally:
            for (lv, i), state in saved.items():
                model.segment(lv, i).load_state_dict(state)
        out[task] = {
            "shared_segments": len(shared),
            "trained_top1": trained["top1"],
            "reset_top1": reset["top1"],
            "change": reset["top1"] - trained["top1"],
            "trained_top5": trained["top5"],
            "reset_top5": reset["top5"],
            "samples": trained["samples"],
        }
    return out
