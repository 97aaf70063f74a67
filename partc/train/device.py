"""Train stage, devices: pick cpu or cuda and apply what each needs.

CPU: fp32, nothing else. CUDA: the settings in `partc.train.fast` (bf16
autocast, channels_last, cuDNN autotuning, fused optimizers, data kept on
the GPU when it fits). The training loop only talks to a `Runtime`, so it
reads the same on both.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from partc.devices import cpu_threads, pick_device

__all__ = ["Runtime", "cpu_threads", "pick_device"]


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
        """The CUDA generator of this process's GPU (as a list of one; older checkpoints hold every GPU's,
        device 0 first). Only its own: under torchrun, touching every GPU would open a context on each."""
        return [torch.cuda.get_rng_state(self.device)] if self.cuda else None

    def set_rng_state(self, states) -> None:
        if self.cuda and states:
            torch.cuda.set_rng_state(states[0], self.device)
