"""The fused training step on the CPU: `forward_all` against one forward per task (why the CPU keeps forward_all).

    python3 bench/fused_step.py [--rounds 15] [--steps 3] [--threads 1] [--cases split_digits/32,large/8]

For each case (a spec and a per-task batch size) both ways run the same
training step: forward, summed cross-entropy, backward, one Adam step, on
fresh models with the same initial weights and synthetic batches. They
alternate round by round (the order flips every round), each round timing
--steps steps; a figure is the median of the rounds and the spread is
their min..max. Times are the process's CPU seconds per step (fair under a
varying load with one thread; wall-clock is printed beside). The "per
task" way is the plain loop over `model(x, task=t)`; with `batchnorm
per_task` and no dropout it computes the fused step's losses, gradients
and BatchNorm statistics up to float rounding. Where it were faster, the
CPU trainer would have a reason to run it; measured, `forward_all` was
faster in every case (docs/BENCHMARKS.md), so partc runs `forward_all` on
every device. The KiB column is `partc.train.flops.activation_bytes`.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from partc.devices import configure_cpu  # noqa: E402

DEFAULT = ",".join([*(f"split_digits/{b}" for b in (4, 8, 16, 32, 64, 128)), "digit_domains/32", "large/8", "large/32",
                    "cifar100_part/16/8", "cifar100_part/16/32"])


def spec_text(name: str) -> tuple[str, str]:
    if name == "large":
        from bench.large_spec import large_spec

        return large_spec(tasks=20, levels=10, segments=16, path=4), "large.part"
    if name.startswith("cifar100_part/"):
        scale = int(name.split("/")[1])
        text = (ROOT / "specs" / "cifar100_part.part").read_text()
        text = re.sub(r"x (\w+)\((\d+)\)", lambda m: f"x {m.group(1)}({max(2, int(m.group(2)) // scale)})", text)
        return text, str(ROOT / "specs" / "cifar100_part.part")
    path = ROOT / "specs" / f"{name}.part"
    return path.read_text(), str(path)


def make_steps(net, batch: int):
    import torch
    import torch.nn.functional as F

    import partc
    from partc.train.optim import Adam

    gen = torch.Generator().manual_seed(0)
    xs = {t: torch.randn(batch, *net.inputs[task.input].shape, generator=gen) for t, task in net.tasks.items()}
    ys = {t: torch.randint(0, task.classes, (batch,), generator=gen) for t, task in net.tasks.items()}

    def make(way: str):
        torch.manual_seed(0)
        model = partc.compile(net).train()
        opt = Adam(model.parameters(), lr=1e-3)
        forward = model.forward_all if way == "forward_all" else (lambda b: {t: model(x, task=t) for t, x in b.items()})

        def step():
            logits = forward(xs)
            loss = sum(F.cross_entropy(logits[t], ys[t]) for t in xs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    return {way: make(way) for way in ("forward_all", "per_task")}


def measure(steps: dict, rounds: int, per_round: int) -> dict[str, dict[str, list[float]]]:
    for step in steps.values():  # warm-up: row plans, allocator, oneDNN primitives
        step(), step()
    times = {way: {"cpu": [], "wall": []} for way in steps}
    order = list(steps)
    for r in range(rounds):
        for way in order if r % 2 == 0 else order[::-1]:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(per_round):
                steps[way]()
            times[way]["cpu"].append((time.process_time() - cpu) / per_round)
            times[way]["wall"].append((time.perf_counter() - wall) / per_round)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=DEFAULT, help="comma separated SPEC/BATCH (SPEC: a name in specs/, large, "
                                                    "or cifar100_part/W for widths / W)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=3, help="steps per round and way")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: CPU time is then fair)")
    args = p.parse_args(argv)
    cpu = configure_cpu(args.threads)
    import torch

    import partc
    from partc.train.flops import activation_bytes

    print(f"# fused_step: {args.rounds} rounds x {args.steps} steps per way, alternated; "
          f"threads {cpu.threads} ({cpu.wait})")
    print(f"# machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
          f"load at start {os.getloadavg()[0]:.1f}")
    print("| case | KiB per task and layer | forward_all ms (min..max) | per_task ms (min..max) | per_task / "
          "forward_all | wall ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in args.cases.split(","):
        name, batch = case.rsplit("/", 1)
        text, file = spec_text(name)
        net = partc.loads(text, file)
        batch = int(batch)
        sizes = {t: batch for t in net.tasks}
        times = measure(make_steps(net, batch), args.rounds, args.steps)
        med = {w: statistics.median(t["cpu"]) for w, t in times.items()}
        wall = {w: statistics.median(t["wall"]) for w, t in times.items()}
        cells = [f"{1e3 * med[w]:.1f} ({1e3 * min(times[w]['cpu']):.1f}..{1e3 * max(times[w]['cpu']):.1f})"
                 for w in ("forward_all", "per_task")]
        print(f"| {name}, {len(net.tasks)} tasks x {batch} | {activation_bytes(net, sizes) / 1024:.0f} | {cells[0]} | "
              f"{cells[1]} | {med['per_task'] / med['forward_all']:.2f} | {wall['per_task'] / wall['forward_all']:.2f} |",
              flush=True)
    print(f"# load at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
