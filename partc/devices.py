"""Which device a command runs on: the `--device` choices and their rules (a neutral module).

Training, evaluation in the report and ONNX Runtime serving all take the
same `--device auto|cpu|cuda`. Torch is imported only when a device is
picked, so command-line parsers can list the choices cheaply.
"""

from __future__ import annotations

import os

from partc.errors import TrainError

DEVICE_CHOICES = ("auto", "cpu", "cuda")  # auto: CUDA when usable, else the CPU


def pick_device(name: str = "auto"):
    """The torch device for `--device NAME`; a clear error when CUDA is asked for and absent."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda was asked for, but this torch build sees no CUDA GPU",
                             hint="use --device cpu, or --device auto to take a GPU only when there is one")
        return torch.device("cuda")
    raise TrainError(f"unknown device '{name}'", hint=", ".join(DEVICE_CHOICES))


def cpu_threads() -> int:
    """CPUs this process may run on (respects container limits, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
