"""Train stage, GPU speed: everything the trainer does differently on CUDA.

Kept apart so the training loop reads the same on every device. Used only
when the device is CUDA (never imported on a CPU run):

- `configure_cuda`: cuDNN autotuning (batch shapes are static, see
  `partc.train.sampling`) and TF32 for the fp32 parts;
- `prepare_model`: the model on the GPU in channels_last (faster NHWC
  convolutions under bf16);
- `autocast`: bf16 autocast for forward and loss (no loss scaling needed);
- `optimizer_options`: the fused (single-kernel) Adam/AdamW/SGD;
- `place_data`: whole data sets on the GPU when they take under a third of
  its free memory, so a step does no host-device copy but its indices;
- `GraphedFusedStep`: a fused training step (forward_all, backward, Adam)
  captured once as a CUDA graph and replayed, for launch-bound small
  batches (used by bench/train_speed.py; see its notes).

None of this can run on the CPU-only machines this project is tested on;
`tests/test_train_gpu.py` exercises it where a GPU is present.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DATA_FRACTION_OF_FREE_MEMORY = 1 / 3


def configure_cuda() -> None:
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return model.to(device=device, memory_format=torch.channels_last)


def autocast():
    return torch.autocast("cuda", dtype=torch.bfloat16)


def optimizer_options() -> dict:
    return {"fused": True}


def place_data(tensors: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """All `tensors` on the GPU if they fit comfortably, else pinned host memory."""
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    free, _total = torch.cuda.mem_get_info(device)
    if nbytes < free * DATA_FRACTION_OF_FREE_MEMORY:
        return [t.to(device) for t in tensors]
    return [t.pin_memory() for t in tensors]


class GraphedFusedStep:
    """One fused training step captured as a CUDA graph.

    Inputs are copied into static buffers, then the graph replays
    forward_all, the weighted loss, backward and the optimizer step
    without a single host synchronisation or Python dispatch. Needs an
    optimizer built with `capturable=True` (Adam/AdamW), static batch
    shapes, and a model whose row plans are cached before capture.
    """

    def __init__(self, model, optimizer, tasks: list[str], weights: dict[str, float],
                 example: dict[str, tuple[torch.Tensor, torch.Tensor]], warmup: int = 3):
        self.model, self.optimizer, self.tasks = model, optimizer, tasks
        self.weights = weights
        self.static_x = {t: example[t][0].clone() for t in tasks}
        self.static_y = {t: example[t][1].clone() for t in tasks}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up (cuDNN autotune, lazy state) outside the graph
            for _ in range(warmup):
                self.optimizer.zero_grad(set_to_none=True)
                self._loss().backward()
                self.optimizer.step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.static_loss = self._loss()
            self.static_loss.backward()
            self.optimizer.step()

    def _loss(self) -> torch.Tensor:
        with autocast():
            logits = self.model.forward_all(self.static_x)
            return sum(self.weights[t] * F.cross_entropy(logits[t].float(), self.static_y[t]) for t in self.tasks)

    def __call__(self, batches: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        for t in self.tasks:
            self.static_x[t].copy_(batches[t][0], non_blocking=True)
            self.static_y[t].copy_(batches[t][1], non_blocking=True)
        self.graph.replay()
        return self.static_loss
