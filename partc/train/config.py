"""Train stage, settings: the spec's `train { }` block plus CLI overrides -> `TrainConfig`.

The checker (`partc.passes.resolve`) already knows which settings exist and
their basic types; this module gives them defaults, checks the arguments of
`optimizer` and `schedule` (which the checker keeps as plain calls), and
turns them into a torch optimizer and a per-epoch learning-rate factor.

The schedule is a pure function of the epoch index, not a torch scheduler
object: resuming then needs no scheduler state, and the lr of epoch k is
the same whether the run was interrupted or not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from partc.errors import SpecError
from partc.ir import Network

DEFAULT_LR = 1e-3

# Keyword arguments each optimizer accepts, with their torch names.
OPTIMIZER_KWARGS = {
    "adam": ("lr", "weight_decay", "betas", "eps"),
    "adamw": ("lr", "weight_decay", "betas", "eps"),
    "sgd": ("lr", "weight_decay", "momentum", "nesterov", "dampening"),
}


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
        d = dict(d)
        d["milestones"] = tuple(d.get("milestones", ()))
        d.setdefault("batchnorm", "joint")  # runs saved before the setting existed trained with joint statistics
        return cls(**d)


def resolve_config(net: Network, *, epochs: int | None = None, mode: str | None = None) -> TrainConfig:
    """The spec's train block with defaults filled in and CLI overrides applied."""
    t = net.train
    loc = net.train_locs.get
    opt_name, opt_kwargs = _optimizer(t.get("optimizer"), loc("optimizer"))
    schedule, milestones, gamma = _schedule(t.get("schedule", "constant"), loc("schedule"))
    cfg = TrainConfig(
        epochs=epochs if epochs is not None else t.get("epochs", 10),
        batch=t.get("batch", 32),
        optimizer=opt_name,
        optimizer_kwargs=opt_kwargs,
        schedule=schedule,
        milestones=milestones,
        gamma=gamma,
        mode=mode if mode is not None else t.get("mode", "fused"),
        batchnorm=t.get("batchnorm", "per_task"),
        steps_per_task=t.get("steps_per_task", 10),
        epoch_policy=t.get("epoch_policy", "largest"),
        seed=t.get("seed", net.seed),
    )
    if cfg.epochs < 1:
        raise SpecError(f"epochs must be at least 1, got {cfg.epochs}")
    if cfg.mode not in ("fused", "interleaved"):
        raise SpecError(f"unknown training mode '{cfg.mode}'", hint="fused or interleaved")
    if cfg.batchnorm not in ("per_task", "joint"):
        raise SpecError(f"unknown batchnorm setting '{cfg.batchnorm}'", hint="per_task or joint")
    return cfg


def _optimizer(value: Any, where) -> tuple[str, dict[str, Any]]:
    if value is None:
        return "adam", {"lr": DEFAULT_LR}
    if isinstance(value, str):  # `optimizer adam`
        value = {"name": value, "args": [], "kwargs": {}}
    name, args, kwargs = value["name"], value["args"], dict(value["kwargs"])
    allowed = OPTIMIZER_KWARGS[name]
    if len(args) > 1:
        raise SpecError(f"{name} takes at most one positional argument (lr), got {len(args)}", where,
                        f"write {name}(lr=..., {', '.join(allowed[1:])}=...)")
    if args:
        if "lr" in kwargs:
            raise SpecError(f"{name} got lr twice", where)
        kwargs["lr"] = args[0]
    for key, v in kwargs.items():
        if key not in allowed:
            raise SpecError(f"optimizer {name} has no argument '{key}'", where, f"its arguments: {', '.join(allowed)}")
        if key == "betas":
            if not (isinstance(v, list) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v)):
                raise SpecError(f"{name} betas must be a list of two numbers in [0, 1), got {v!r}", where)
            kwargs[key] = tuple(float(b) for b in v)
        elif key == "nesterov":
            if not isinstance(v, bool):
                raise SpecError(f"sgd nesterov must be true or false, got {v!r}", where)
        elif not _is_number(v) or v < 0 or (key in ("lr", "eps") and v == 0):
            raise SpecError(f"{name} {key} must be a {'positive' if key in ('lr', 'eps') else 'non-negative'} number,"
                            f" got {v!r}", where)
        else:
            kwargs[key] = float(v)
    kwargs.setdefault("lr", DEFAULT_LR)
    return name, kwargs


def _schedule(value: Any, where) -> tuple[str, tuple[int, ...], float]:
    if isinstance(value, str):
        value = {"name": value, "args": [], "kwargs": {}}
    name, args, kwargs = value["name"], value["args"], value["kwargs"]
    if name in ("constant", "cosine"):
        if args or kwargs:
            raise SpecError(f"schedule {name} takes no arguments", where, f"write 'schedule {name}'")
        return name, (), 0.1
    # step([milestones], gamma=0.1)
    milestones = args[0] if args else kwargs.get("milestones")
    unknown = set(kwargs) - {"milestones", "gamma"}
    if unknown or len(args) > 1:
        raise SpecError("schedule step takes a list of epochs and gamma", where, "write step([20, 30], gamma=0.5)")
    if not (isinstance(milestones, list) and milestones
            and all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in milestones)):
        raise SpecError(f"schedule step needs a list of positive epoch numbers, got {milestones!r}", where,
                        "write step([20, 30], gamma=0.5)")
    gamma = kwargs.get("gamma", 0.1)
    if not _is_number(gamma) or gamma <= 0:
        raise SpecError(f"schedule step gamma must be a positive number, got {gamma!r}", where)
    return "step", tuple(sorted(milestones)), float(gamma)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def build_optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter], extra: dict[str, Any] | None = None):
    """A torch optimizer over `params`; `extra` holds device options (e.g. fused=True on CUDA)."""
    kwargs = {**cfg.optimizer_kwargs, **(extra or {})}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, **kwargs)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    return torch.optim.SGD(params, **kwargs)


def set_lr(optimizers, cfg: TrainConfig, epoch_index: int) -> float:
    lr = cfg.lr * cfg.lr_factor(epoch_index)
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr
    return lr
