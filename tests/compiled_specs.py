"""Shared by the compile and codegen tests: the shipped specs, compiled once per session.

The paper's CIFAR-100 network has 132M parameters and a task's forward at
batch 2 takes about a second on CPU, so its model, inputs and per-task
outputs are built once and reused by every test that needs them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import partc

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.part"))
SLOW_SPECS = {"cifar100_part"}  # seconds per task on CPU


def spec_params(specs=SPECS):
    """pytest parameters over the shipped specs; the paper-sized ones marked slow."""
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW_SPECS else []) for p in specs]


def batch_size(spec: Path) -> int:
    return 2 if spec.stem in SLOW_SPECS else 4


@cache
def compiled(spec: Path):
    """(net, model in eval mode, {task: input batch}), seeded."""
    torch.manual_seed(0)
    net = partc.load(spec)
    model = partc.compile(net).eval()
    gen = torch.Generator().manual_seed(1)
    inputs = {name: torch.randn(batch_size(spec), *net.inputs[t.input].shape, generator=gen)
              for name, t in net.tasks.items()}
    return net, model, inputs


@cache
def task_outputs(spec: Path) -> dict[str, torch.Tensor]:
    """Each task's logits through `model(x, task=...)`, eval mode, no grad."""
    net, model, inputs = compiled(spec)
    with torch.no_grad():
        return {t: model(inputs[t], task=t) for t in net.tasks}


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rel: float, what: str = "",
                     floor: float = 0.0) -> None:
    """max |actual - expected| <= rel * max(max |expected|, floor): a relative bound that zeros cannot break."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual - expected).abs().max().item()
    scale = max(expected.abs().max().item(), floor)
    assert err <= rel * max(scale, 1e-30), f"{what}: max error {err:.3g} > {rel:g} x max |expected| {scale:.3g}"


# ---- an eager reference, written from the IR, independent of PartModel's routing ----

def apply_then(layers, h: torch.Tensor, training: bool) -> torch.Tensor:
    """A level's parameter-free `then` ops through torch.nn.functional."""
    for layer in layers:
        a = layer.args
        if layer.op == "relu":
            h = F.relu(h)
        elif layer.op == "gelu":
            h = F.gelu(h)
        elif layer.op == "maxpool":
            h = F.max_pool2d(h, a["k"], a["stride"] or a["k"])
        elif layer.op == "avgpool":
            h = h.mean(dim=(2, 3), keepdim=True) if a["k"] is None else F.avg_pool2d(h, a["k"], a["stride"] or a["k"])
        elif layer.op == "dropout":
            h = F.dropout(h, a["p"], training)
        elif layer.op == "flatten":
            h = torch.flatten(h, 1)
        else:
            raise AssertionError(f"no reference for 'then' op {layer.op}")
    return h


def run_segment(model, level, index: int, task: str, h: torch.Tensor) -> torch.Tensor:
    """One segment for `task`, layer by layer from the IR: a per-task layer through the task's own copy."""
    segment = model.segment(level.name, index)
    for position, layer in enumerate(level.group_of(index).layers):
        h = segment[position][task](h) if layer.per_task else segment[position](h)
    return h


def eager_forward(model, net, task: str, x: torch.Tensor, features: dict | None = None) -> torch.Tensor:
    """Task `task` computed step by step: stem, per level sum of path segments (+ input), then ops; head."""
    t = net.tasks[task]
    h = model.stems[task](x) if t.stem is not None else x
    for level in net.levels:
        total = None
        for i in t.path[level.name]:
            y = run_segment(model, level, i, task, h)
            total = y if total is None else total + y
        if level.residual:
            total = total + h
        h = apply_then(level.then, total, model.training)
        if features is not None:
            features[level.name] = h
    return model.heads[task](h)
