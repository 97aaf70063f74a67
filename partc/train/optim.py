"""Train stage, CPU optimizers: Adam, AdamW and SGD without torch.optim's start-up cost.

torch.optim's optimizers import torch._dynamo the first time one is built
and on every step (their methods are wrapped to be skipped by the compiler):
1.5-2.5 s and about 70 MiB for a process that never compiles anything. On
the CPU, partc trains with these instead. They do the same arithmetic, op
for op, as torch's single-tensor implementations (what torch runs on CPU
tensors), so the weights are bit-identical to torch.optim's
(tests/test_optim.py compares them step by step), and they read and write
torch's state_dict format, so a checkpoint moves between the two: a CPU run
resumes on a GPU, where partc uses torch's fused optimizers.

Only the arguments a spec can give exist here (partc.train.settings):
lr, betas, eps, weight_decay; SGD's momentum, dampening, nesterov.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch


class Optimizer:
    """One parameter group; `param_groups` and `state` as torch.optim keeps them (partc's lr schedule and
    checkpoints read and write them).

    `group` holds the group's entries in torch's order, including torch's flags that do not apply here
    (foreach, fused, ...: written so a checkpoint reads as torch's); `SETTINGS` are the entries that
    configure the update, the ones `load_state_dict` restores.
    """

    SETTINGS: tuple[str, ...] = ()

    def __init__(self, params: Iterable[torch.nn.Parameter], group: dict[str, Any]):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self.param_groups: list[dict[str, Any]] = [{**group, "params": params}]
        self.state: dict[torch.Tensor, dict[str, Any]] = {}
        self._step_pre_hooks: OrderedDict[int, Any] = OrderedDict()  # RemovableHandle needs a weak reference

    def register_step_pre_hook(self, hook):
        """As torch.optim's: `hook(optimizer, args, kwargs)` before every step (several processes average
        gradients there, `partc.train.distributed`); a handle whose `remove()` drops it."""
        from torch.utils.hooks import RemovableHandle

        handle = RemovableHandle(self._step_pre_hooks)
        self._step_pre_hooks[handle.id] = hook
        return handle

    def _params(self) -> list[torch.nn.Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._params():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_()
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for hook in list(self._step_pre_hooks.values()):
            hook(self, (), {})
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group)

    def _update(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> None:
        raise NotImplementedError

    # ---- checkpoints, in torch.optim's format ----
    def state_dict(self) -> dict[str, Any]:
        index = {id(p): i for i, p in enumerate(self._params())}
        groups, start = [], 0
        for group in self.param_groups:
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": list(range(start, start + len(group["params"])))})
            start += len(group["params"])
        return {"state": {index[id(p)]: s for p, s in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups)):
            raise ValueError("loaded state dict has a different number of parameters or parameter groups")
        params = self._params()
        state: dict[torch.Tensor, dict[str, Any]] = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            # As torch.optim: moments follow the parameter's device and dtype, `step` stays as saved.
            state[p] = {k: v if k == "step" or not torch.is_tensor(v) else v.to(dtype=p.dtype, device=p.device)
                        for k, v in s.items()}
        self.state = state
        for group, s in zip(self.param_groups, saved):
            group.update({k: v for k, v in s.items() if k in self.SETTINGS})


class Adam(Optimizer):
    """torch.optim.Adam(params, lr, betas, eps, weight_decay) on CPU tensors; `decoupled` gives AdamW."""

    SETTINGS = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay")

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, decoupled: bool = False):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                                  "differentiable": False, "fused": None, "decoupled_weight_decay": decoupled})

    def _update(self, p, grad, group) -> None:
        state = self.state.setdefault(p, {})
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        state["step"] += 1
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                p.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(p, alpha=weight_decay)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = state["step"].item()
        step_size = lr / (1 - beta1**step)
        denom = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
        p.addcdiv_(exp_avg, denom, value=-step_size)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default 0.01)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled=True)


class SGD(Optimizer):
    """torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov) on CPU tensors."""

    SETTINGS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov, "maximize": False,
                                  "foreach": None, "differentiable": False, "fused": None})

    def _update(self, p, grad, group) -> None:
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if weight_decay != 0:
            grad = grad.add(p, alpha=weight_decay)
        if momentum != 0:  # without momentum, torch keeps no state at all
            state = self.state.setdefault(p, {})
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.detach().clone()
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
        p.add_(grad, alpha=-group["lr"])


OPTIMIZERS = {"adam": Adam, "adamw": AdamW, "sgd": SGD}
