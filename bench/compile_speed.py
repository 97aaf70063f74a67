"""Compile-stage speed: a large spec through load, compile, fx and codegen; fused vs per-task forward.

    python3 bench/compile_speed.py [--tasks 200 --levels 50 --segments 64 --path 8] [--runs 30] [--threads N]

Part 1 times each step on a generated spec (bench/large_spec.py): `partc.load`,
`partc.compile`, `model.task(t)` for every task (the fx modules), and codegen
(`generate` into a temporary folder). Part 2 times one multi-task step on
specs/split_digits.part, batch 32 per task: `forward_all` against a loop of
`model(x, task=t)`, in eval and train mode, forward only and forward+backward;
then the cost of per-task BatchNorm statistics in the fused train step
(`batchnorm per_task`, the default) against one statistic over all rows (`joint`).
Each figure is the median of --runs after warm-up, the two ways measured in
alternation so that drift in machine load hits both alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's partc, not an installed one

import torch  # noqa: E402

import partc  # noqa: E402
from bench.large_spec import large_spec  # noqa: E402
from partc.codegen import generate  # noqa: E402


def machine() -> str:
    return (f"{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def large(args) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, str]]]:
    text = large_spec(tasks=args.tasks, levels=args.levels, segments=args.segments, path=args.path)
    net, t_load = timed(lambda: partc.loads(text, "large.part"))
    model, t_compile = timed(lambda: partc.compile(net))
    _, t_fx = timed(lambda: [model.task(t) for t in net.tasks])
    with tempfile.TemporaryDirectory() as out:
        paths, t_gen = timed(lambda: generate(net, out))
        size = sum(p.stat().st_size for p in paths)
    shape = f"{args.tasks} tasks, {args.levels} levels x {args.segments} segments, path random({args.path})"
    # Many tiny segments: here the per-call overhead, which the fused forward saves, dominates.
    model.eval()
    some = list(net.tasks)[: args.large_forward_tasks]
    batches = {t: torch.randn(8, *net.trunk_input.shape) for t in some}
    with torch.no_grad():
        fused, loop = alternate(lambda: model.forward_all(batches),
                                lambda: [model(x, task=t) for t, x in batches.items()], runs=3, warmup=1)
    forward = [(f"large spec, {len(some)} tasks x 8, eval forward", f"{fused * 1e3:.0f}", f"{loop * 1e3:.0f}",
                f"{loop / fused:.2f}")]
    return [
        ("large spec", shape),
        ("partc.load", f"{t_load:.2f} s"),
        ("partc.compile", f"{t_compile:.2f} s ({net.total_params:,} parameters)"),
        (f"model.task(t), all {args.tasks}", f"{t_fx:.2f} s ({t_fx / args.tasks * 1e3:.1f} ms per task)"),
        ("codegen (generate)", f"{t_gen:.2f} s ({size / 1e6:.1f} MB written)"),
    ], forward


def alternate(a, b, runs: int, warmup: int = 3) -> tuple[float, float]:
    """Median seconds of a() and b(), measured in turn."""
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for _ in range(runs):
        ta.append(timed(a)[1])
        tb.append(timed(b)[1])
    return statistics.median(ta), statistics.median(tb)


def fused_vs_loop(args) -> list[tuple[str, str, str, str]]:
    net = partc.load(ROOT / "specs" / "split_digits.part")
    torch.manual_seed(0)
    model = partc.compile(net)
    batches = {t: torch.randn(args.batch, *net.inputs[task.input].shape) for t, task in net.tasks.items()}

    def fused_forward():
        return model.forward_all(batches)

    def loop_forward():
        return {t: model(x, task=t) for t, x in batches.items()}

    def step(forward):
        def run():
            model.zero_grad(set_to_none=True)
            sum(y.square().mean() for y in forward().values()).backward()
        return run

    rows = []
    for mode in ("eval", "train"):
        name = f"split_digits, 5 tasks x {args.batch}, {mode}"
        model.train(mode == "train")
        with torch.no_grad():
            fused, loop = alternate(fused_forward, loop_forward, args.runs)
        rows.append((f"{name} forward", f"{fused * 1e3:.1f}", f"{loop * 1e3:.1f}", f"{loop / fused:.2f}"))
        fused, loop = alternate(step(fused_forward), step(loop_forward), args.runs)
        rows.append((f"{name} forward+backward", f"{fused * 1e3:.1f}", f"{loop * 1e3:.1f}", f"{loop / fused:.2f}"))
    return rows


def batchnorm_cost(args) -> list[tuple[str, str, str, str]]:
    """Fused train-mode step on split_digits with per-task BatchNorm statistics against joint ones."""
    net = partc.load(ROOT / "specs" / "split_digits.part")
    torch.manual_seed(0)
    model = partc.compile(net).train()
    batches = {t: torch.randn(args.batch, *net.inputs[task.input].shape) for t, task in net.tasks.items()}

    def fused(batchnorm: str, backward: bool):
        def run():
            model.batchnorm = batchnorm
            if not backward:
                with torch.no_grad():
                    return model.forward_all(batches)
            model.zero_grad(set_to_none=True)
            sum(y.square().mean() for y in model.forward_all(batches).values()).backward()
        return run

    rows = []
    for backward in (False, True):
        per_task, joint = alternate(fused("per_task", backward), fused("joint", backward), args.runs)
        name = f"split_digits, 5 tasks x {args.batch}, train {'forward+backward' if backward else 'forward'}"
        rows.append((name, f"{per_task * 1e3:.1f}", f"{joint * 1e3:.1f}", f"{per_task / joint:.2f}"))
    return rows


def table(header, rows) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--levels", type=int, default=50)
    parser.add_argument("--segments", type=int, default=64)
    parser.add_argument("--path", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32, help="samples per task in the forward timings")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--large-forward-tasks", type=int, default=50,
                        help="tasks of the large spec in its fused-vs-loop timing (3 runs)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}\n")
    steps, large_forward = large(args)
    print(table(["step", "time"], steps))
    print(f"\nforward_all against a loop of model(x, task=t): median ms of {args.runs} runs (3 for the large "
          "spec);\nratio = loop / fused, above 1: fused is faster")
    print(table(["case", "forward_all", "loop", "ratio"], fused_vs_loop(args) + large_forward))
    print(f"\nforward_all in train mode, BatchNorm statistics per task against joint: median ms of {args.runs} runs;"
          "\nratio = per_task / joint, the cost of per-task statistics")
    print(table(["case", "per_task", "joint", "ratio"], batchnorm_cost(args)))


if __name__ == "__main__":
    main()
