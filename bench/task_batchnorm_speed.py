"""The cost of task_batchnorm in a fused CPU training step, against batchnorm.

    python bench/task_batchnorm_speed.py                    # specs/digit_domains.part, 3 tasks x batch 32
    python bench/task_batchnorm_speed.py --rounds 3 --steps 2  # quick

Both variants are the same spec (paths, widths, initial conv weights), one
with `task_batchnorm` (each task its own BatchNorm in every segment), one
with `batchnorm` (one per segment); the default `batchnorm per_task` runs a
shared segment's BatchNorm once per task chunk in train mode, so both split
the rows at every BatchNorm and differ in which module each chunk meets.
A step is what `partc train` does in fused mode: forward_all over every
task's batch, the weighted loss, backward, one Adam step. Synthetic inputs;
the variants alternate round by round (so machine load hits both alike),
and each round's time is the median of its steps. Printed: the median
round and the spread (min..max) of each variant, the ratio of medians and
the ratio of the fastest rounds (the least disturbed by other load).
Also an eval-mode forward_all, where batchnorm runs every row at once and
task_batchnorm still runs one chunk per task.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import partc  # noqa: E402

VARIANTS = ("batchnorm", "task_batchnorm")


def network(spec: Path, variant: str):
    text = spec.read_text(encoding="utf-8")
    return partc.loads(text if variant == "task_batchnorm" else text.replace("task_batchnorm", "batchnorm"), str(spec))


def batches(net, batch: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return {name: (torch.randn(batch, *net.inputs[t.input].shape, generator=gen),
                   torch.randint(0, t.classes, (batch,), generator=gen)) for name, t in net.tasks.items()}


def make_runs(net, data):
    """(train step, eval forward) closures for one variant."""
    torch.manual_seed(0)
    model = partc.compile(net)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = {t: x for t, (x, _) in data.items()}

    def train_step() -> None:
        model.train()
        logits = model.forward_all(inputs)
        loss = sum(F.cross_entropy(logits[t], data[t][1]) for t in data)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def eval_forward() -> None:
        model.eval()
        model.forward_all(inputs)

    return {"train step": train_step, "eval forward": eval_forward}


def timed(fn, steps: int) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "digit_domains.part")
    parser.add_argument("--batch", type=int, default=32, help="rows per task (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = {}
    for variant in VARIANTS:
        net = network(args.spec, variant)
        runs[variant] = make_runs(net, batches(net, args.batch))
        for fn in runs[variant].values():  # warm up: allocator, row plans, Adam state
            fn()
    results = {(v, what): [] for v in VARIANTS for what in runs[v]}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            for what, fn in runs[variant].items():
                results[variant, what].append(timed(fn, args.steps))
    load = os.getloadavg()
    net = network(args.spec, VARIANTS[0])
    print(f"# machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s); "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)")
    print(f"# {args.spec.name}: {len(net.tasks)} tasks x batch {args.batch}, {args.rounds} rounds x {args.steps} steps")
    print("| step | batchnorm ms (min..max) | task_batchnorm ms (min..max) | ratio of medians | ratio of minima |")
    print("|---|---:|---:|---:|---:|")
    for what in runs[VARIANTS[0]]:
        cells, medians, fastest = [], [], []
        for variant in VARIANTS:
            rounds = [1e3 * t for t in results[variant, what]]
            medians.append(statistics.median(rounds))
            fastest.append(min(rounds))
            cells.append(f"{medians[-1]:.1f} ({min(rounds):.1f}..{max(rounds):.1f})")
        print(f"| {what} | {cells[0]} | {cells[1]} | {medians[1] / medians[0]:.3f} | {fastest[1] / fastest[0]:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
