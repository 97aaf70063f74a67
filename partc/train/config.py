"""Train stage, settings: the spec's `train { }` block plus CLI overrides -> `TrainConfig`.

The checker validated every setting against `partc.train.settings`; this
module fills in defaults from the same table, applies command-line
overrides, and turns the result into a torch optimizer and a per-epoch
learning-rate factor.

The schedule is a pure function of the epoch index, not a torch scheduler
object: resuming then needs no scheduler state, and the lr of epoch k is
the same whether the run was interrupted or not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from partc.ir import Network
from partc.train.settings import (
    DEFAULT_GAMMA,
    DEFAULT_LR,
    OPTIMIZERS,
    SCHEDULES,
    SETTINGS,
    call_arguments,
    setting_value,
)
from partc.values import is_number


@dataclass(frozen=True)
class TrainConfig:
    """Every setting training needs, resolved; stored in run.json and each checkpoint."""

    epochs: int = 10
    batch: int = 32
    optimizer: str = "adam"
    optimizer_kwargs: dict[str, Any] = field(default_factory=lambda: {"lr": DEFAULT_LR})
    schedule: str = "constant"  # constant | cosine | step
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    mode: str = "fused"  # fused | interleaved
    batchnorm: str = "per_task"  # per_task | joint: BatchNorm statistics of a shared segment in fused mode
    steps_per_task: int = 10
    epoch_policy: str = "largest"  # largest | smallest
    seed: int = 0

    @property
    def lr(self) -> float:
        return float(self.optimizer_kwargs["lr"])

    def lr_factor(self, epoch_index: int) -> float:
        """Multiplier of the base lr during epoch `epoch_index` (0-based)."""
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * epoch_index / self.epochs))
        if self.schedule == "step":
            return self.gamma ** sum(epoch_index >= m for m in self.milestones)
        return 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config a checkpoint or run.json holds; ValueError naming the entry when it is damaged."""
        d = dict(d)
        d.setdefault("batchnorm", "joint")  # runs saved before the setting existed trained with joint statistics
        unknown = sorted(set(d) - set(_FIELD_CHECKS))
        if unknown:
            raise ValueError(f"unknown entry '{unknown[0]}'")
        for key, value in d.items():
            accepts, expect = _FIELD_CHECKS[key]
            if not accepts(value):
                raise ValueError(f"'{key}' is {value!r}, not {expect}")
        d["milestones"] = tuple(d.get("milestones", ()))
        return cls(**d)


def _whole(lo: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _rule(name: str) -> tuple[Any, str]:
    rule = SETTINGS[name].rule
    return rule.accepts, rule.expect


# What each entry of a stored config may be (the settings table's rules where a setting has one;
# epochs is unbounded, as --epochs is).
_FIELD_CHECKS: dict[str, tuple[Any, str]] = {
    "epochs": (_whole(1), "a positive whole number"), "batch": _rule("batch"),
    "optimizer": (lambda v: v in OPTIMIZERS, " or ".join(OPTIMIZERS)),
    "optimizer_kwargs": (lambda v: isinstance(v, dict) and is_number(v.get("lr")), "arguments with a finite lr"),
    "schedule": (lambda v: v in SCHEDULES, " or ".join(SCHEDULES)),
    "milestones": (lambda v: isinstance(v, (list, tuple)) and all(_whole(1)(m) for m in v), "a list of epochs"),
    "gamma": (is_number, "a number"), "mode": _rule("mode"), "batchnorm": _rule("batchnorm"),
    "steps_per_task": _rule("steps_per_task"), "epoch_policy": _rule("epoch_policy"), "seed": _rule("seed"),
}


def resolve_config(net: Network, *, epochs: int | None = None, mode: str | None = None,
                   seed: int | None = None) -> TrainConfig:
    """The spec's train block (checked by `partc check`) with defaults filled in and CLI overrides applied.

    `seed` (a seed group's member) replaces the train seed: initial weights, data order, augmentation.

    Nothing here can refuse a checked spec: the values were validated against
    `partc.train.settings` at check time; this only converts them.
    """
    t = net.train
    opt_name, opt_kwargs = call_arguments(setting_value(t, "optimizer"), OPTIMIZERS)
    opt_kwargs = {k: tuple(float(b) for b in v) if k == "betas" else v if isinstance(v, bool) else float(v)
                  for k, v in opt_kwargs.items()}
    opt_kwargs.setdefault("lr", DEFAULT_LR)
    schedule, schedule_kwargs = call_arguments(setting_value(t, "schedule"), SCHEDULES)
    if seed is None:
        seed = setting_value(t, "seed")
    return TrainConfig(
        epochs=epochs if epochs is not None else setting_value(t, "epochs"),
        batch=setting_value(t, "batch"),
        optimizer=opt_name,
        optimizer_kwargs=opt_kwargs,
        schedule=schedule,
        milestones=tuple(sorted(schedule_kwargs.get("milestones", ()))),
        gamma=float(schedule_kwargs.get("gamma", DEFAULT_GAMMA)),
        mode=mode if mode is not None else setting_value(t, "mode"),
        batchnorm=setting_value(t, "batchnorm"),
        steps_per_task=setting_value(t, "steps_per_task"),
        epoch_policy=setting_value(t, "epoch_policy"),
        seed=net.seed if seed is None else seed,
    )


def build_optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter], extra: dict[str, Any] | None = None):
    """The optimizer over `params`; `extra` holds device options (e.g. fused=True on CUDA).

    With device options, torch's own optimizer; without (the CPU), partc's equivalent
    (`partc.train.optim`: the same arithmetic and state, without torch.optim's import of torch._dynamo).
    """
    if extra:
        classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
        return classes[cfg.optimizer](params, **cfg.optimizer_kwargs, **extra)
    from partc.train.optim import OPTIMIZERS

    return OPTIMIZERS[cfg.optimizer](params, **cfg.optimizer_kwargs)


def set_lr(optimizers, cfg: TrainConfig, epoch_index: int) -> float:
    lr = cfg.lr * cfg.lr_factor(epoch_index)
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr
    return lr
