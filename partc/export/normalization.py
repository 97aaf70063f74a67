"""Export stage, input normalisation folded into the graph: `(x - mean) / std` in front of a task module.

A task module takes normalised input (what it was trained on). Wrapped in
`NormalizedInput`, the exported graph takes raw values in [0, 1] and
applies the task's per-channel mean and std itself (a Sub and a Div before
the first layer), so clients that cannot normalise (Triton's) send raw
input; the file's metadata says `normalization: in_graph`.

The wrapped module's weights keep their names under `PREFIX` and the two
statistics are the only other tensors (`BUFFERS`): the weight audit
(partc/export/verify.py) strips the one and allows the other.
"""

from __future__ import annotations

import torch

PREFIX = "module."  # the wrapped task module's initializers are named module.<its own name>
BUFFERS = ("input_mean", "input_std")


class NormalizedInput(torch.nn.Module):
    def __init__(self, module: torch.nn.Module, mean: list[float], std: list[float], rank: int):
        super().__init__()
        self.module = module
        shape = (1, -1) + (1,) * (rank - 2)  # per channel, broadcast over the batch and spatial axes
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module((x - self.input_mean) / self.input_std)
