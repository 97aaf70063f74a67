"""Which device a command runs on: the `--device` choices and their rules, and CPU threads (a neutral module).

Training, evaluation in the report and ONNX Runtime serving all take the
same `--device auto|cpu|cuda`. Torch is imported only when a device is
picked, so command-line parsers can list the choices cheaply.

`configure_cpu` sets torch's CPU threads for a process that trains or
evaluates (`partc train`, `partc extend`, `partc report`), before torch is
first imported; docs/train.md ("CPU threads") gives the measurements
behind it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

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


# How OpenMP's worker threads wait between parallel regions (each torch CPU op is one): PASSIVE
# sleeps, ACTIVE spins, unset (libgomp's default) spins a while, then sleeps. Measured side by side
# on 2 shared cores (bench/cpu_threads.py, docs/BENCHMARKS.md): with other processes wanting the
# cores, spinning made a 2-thread training step 5-13x slower than one thread, sleeping 3x; on a quiet
# machine spinning was the fastest (split_digits 6.0 s a run, one thread 8.1 s, sleeping 11.9 s).
# partc sleeps: it never collapses. Sleeping costs most where ops are short, which is where partc
# trains with one thread anyway (`SMALL_LAYER_BYTES`).
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# A network whose layers see less than this per call (float32 activation of one task's batch at its
# convolutions and linear layers, `partc.train.flops.activation_bytes`) trains with one thread: its
# ops are too short for a sleeping second thread to pay for waking it (split_digits, digit_domains:
# 185 KiB).
SMALL_LAYER_BYTES = 256 * 1024


@dataclass(frozen=True)
class CpuThreads:
    """The CPU thread settings of a process and why (benchmarks print them)."""

    threads: int
    chosen_by: str  # "--threads", "OMP_NUM_THREADS", or the rule that decided it
    wait: str  # the OpenMP wait settings in force, e.g. "OMP_WAIT_POLICY=PASSIVE (set by partc)"



def choose_threads(requested: int | None = None, *, chosen_by: str = "--threads", cpus: int | None = None,
                   processes: int | None = None, layer_bytes: float | None = None) -> tuple[int, str]:
    """(threads, why): `requested` when given, else OMP_NUM_THREADS when the user set it, else one thread
    for a network of small layers (`layer_bytes` < `SMALL_LAYER_BYTES`), else the CPUs this process
    may use, shared out among the processes torchrun starts on this machine (LOCAL_WORLD_SIZE).

    Never the load: the thread count changes a CPU run's floating-point sums, and the same command
    should train the same weights whatever else the machine is doing (run.json records the count and
    a resumed run takes it, `partc.train.runner`).
    """
    if requested is not None:
        return requested, chosen_by
    from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if from_env.isdigit() and int(from_env) > 0:
        return int(from_env), "OMP_NUM_THREADS"
    if layer_bytes is not None and layer_bytes < SMALL_LAYER_BYTES:
        return 1, f"small layers ({layer_bytes / 1024:.0f} KiB per task and call < {SMALL_LAYER_BYTES // 1024} KiB)"
    cpus = cpu_threads() if cpus is None else cpus
    if processes is None:
        local = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
        processes = int(local) if local.isdigit() and int(local) > 0 else 1
    if processes > 1:
        return max(1, cpus // processes), f"{cpus} CPUs shared by {processes} processes (LOCAL_WORLD_SIZE)"
    return cpus, f"the {cpus} CPUs this process may use"


_wait_in_force: list[str] = []  # what the first set_wait_policy() found or set, for later callers


def set_wait_policy() -> str:
    """The OpenMP wait policy (`WAIT_POLICY`) unless the user set one; what is in force. Effective only
    before torch is first imported: OpenMP reads its environment when torch loads it."""
    if not _wait_in_force:
        if "torch" in sys.modules:
            text = (_wait_text() or "OpenMP's default") + " (torch was imported before partc could set it)"
        elif any(k in os.environ for k in WAIT_VARIABLES):
            text = _wait_text() + " (the user's)"
        else:
            os.environ.update(WAIT_POLICY)
            text = _wait_text() + " (set by partc)"
        _wait_in_force.append(text)
    return _wait_in_force[0]


def _wait_text() -> str:
    return " ".join(f"{k}={os.environ[k]}" for k in WAIT_VARIABLES if k in os.environ)


def configure_cpu(requested: int | None = None, *, chosen_by: str = "--threads",
                  layer_bytes: float | None = None) -> CpuThreads:
    """The wait policy, then torch's thread count (`choose_threads`) for this process."""
    wait = set_wait_policy()
    threads, why = choose_threads(requested, chosen_by=chosen_by, layer_bytes=layer_bytes)
    import torch

    torch.set_num_threads(threads)
    return CpuThreads(threads, why, wait)
