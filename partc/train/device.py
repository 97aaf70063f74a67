"""Train stage, devices: pick cpu or cuda and apply what each needs.

CPU: fp32, nothing else. CUDA: the settings in `partc.train.fast` (bf16
autocast, channels_last, cuDNN autotuning, fused optimizers, data kept on
the GPU when it fits). The training loop only talks to a `Runtime`, so it
reads the same on both.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from partc.errors import TrainError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda was asked for, but this torch build sees no CUDA GPU",
                             hint="use --device cpu, or --device auto to take a GPU only when there is one")
        return torch.device("cuda")
    raise TrainError(f"unknown device '{name}'", hint="cpu, cuda or auto")


def cpu_threads() -> int:
    """CPUs this process may run on (respects container limits, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Runtime:
    """Device-specific behaviour of the training loop."""

    device: torch.device

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def setup(self) -> None:
        if self.cuda:
            from partc.train import fast

            fast.configure_cuda()

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.cuda:
            from partc.train import fast

            return fast.prepare_model(model, self.device)
        return model.to(self.device)

    def autocast(self):
        if self.cuda:
            from partc.train import fast

            return fast.autocast()
        return contextlib.nullcontext()

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as the model wants it (on the device; channels_last images on CUDA)."""
        if x.device != self.device:
            x = x.to(self.device, non_blocking=True)
        if self.cuda and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def place(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Data tensors on the device when they fit, else left in (pinned) host memory."""
        if not self.cuda:
            return tensors
        from partc.train import fast

        return fast.place_data(tensors, self.device)

    def optimizer_options(self) -> dict:
        if self.cuda:
            from partc.train import fast

            return fast.optimizer_options()
        return {}

    def rng_state(self) -> list[torch.Tensor] | None:
        return torch.cuda.get_rng_state_all() if self.cuda else None

    def set_rng_state(self, states) -> None:
        if self.cuda and states:
            torch.cuda.set_rng_state_all(states)
