"""Benchmark: one fused file (`partc export --fused`) against the task files run one after another.

    python3 bench/fused_speed.py [--budget SECONDS] [--rounds N] [--cifar-tasks N] [--no-cifar] [--no-spinning]

ONNX Runtime, CPU provider, default threads (--no-spinning: its intra-op
threads do not spin-wait after a run, which on a busy 2-core machine keeps
one session's idle threads from taking the cores of the next), on the same
raw input at batch 1 and 64:
- "fused": one `session.run` of the fused file, every task's logits;
- "task files": each task's own file (exported with --normalize-in-graph, so
  that both take raw input), one `session.run` after another.
The two take turns over --rounds rounds; each keeps its best round's median
(a shared machine stalls threads now and then). Beside the measured ratio,
the ideal one if time followed FLOPs: the fused pass's FLOPs (counted from
the IR by the union rule, docs/export.md) over the sum of the tasks'.

split_digits: a 1-epoch trained run (each task normalises with its own
statistics, as trained runs do). cifar100_part: straight from the spec, random
weights (the speed does not depend on them; every task normalises alike
there, so the first level is shared) and, at batch 64, a single timed call
per variant (each takes tens of seconds on 2 cores); --cifar-tasks picks how
many of its tasks (default 3, a few minutes in all; all 10 take about 10).
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def calls(fn, seconds: float, at_least: int = 1, at_most: int = 200) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < at_least or (len(times) < at_most and time.perf_counter() - start < seconds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def compare(variants: dict, rounds: int, seconds: float) -> dict[str, float]:
    """Median seconds per call of each variant's best round, the variants taking turns."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, fn in variants.items():
            median = statistics.median(calls(fn, seconds))
            best[name] = min(best.get(name, median), median)
    return best


def export_both(source: Path, tasks: list[str] | None, out: Path) -> dict:
    """The fused file and the task files (run in a child process, so that the torch model's memory goes back)."""
    from partc.export import export_fused, export_tasks

    fused = export_fused(source, out, tasks=tasks)
    files = export_tasks(source, out, tasks=fused.tasks, normalize_in_graph=True)
    return {"fused": fused.path, "files": [r.path for r in files], "input": fused.info.input_name,
            "shape": fused.info.input_shape, "flops": fused.flops, "task_flops": fused.task_flops,
            "bytes": fused.bytes, "task_bytes": sum(r.bytes for r in files), "tasks": fused.tasks}


def bench(name: str, source: Path, tasks: list[str] | None, out: Path, batches: dict[int, tuple[int, float]],
          spinning: bool) -> list:
    import multiprocessing

    import onnxruntime as ort

    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        e = pool.apply(export_both, (source, tasks, out))
    exported = time.perf_counter() - t0
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    open_ = lambda path: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])  # noqa: E731
    fused_session = open_(e["fused"])
    task_sessions = [open_(path) for path in e["files"]]
    ideal = e["flops"] / e["task_flops"]
    rows = []
    for batch, (rounds, seconds) in batches.items():
        x = np.random.default_rng(batch).random((batch, *e["shape"]), dtype=np.float32)
        feeds = {e["input"]: x}
        variants = {"fused": lambda feeds=feeds: fused_session.run(None, feeds),
                    "task files": lambda feeds=feeds: [s.run(None, feeds) for s in task_sessions]}
        if batch == min(batches):
            for fn in variants.values():
                fn()  # warm-up: weight prepacking, buffers
        best = compare(variants, rounds, seconds)
        rows.append((name, len(e["tasks"]), batch, best["fused"], best["task files"], ideal))
    print(f"{name}: fused file {e['bytes'] / 1e6:.1f} MB against {len(e['files'])} task files "
          f"{e['task_bytes'] / 1e6:.1f} MB; {e['flops'] / 1e9:.2f} GFLOPs per sample against "
          f"{e['task_flops'] / 1e9:.2f}; exports took {exported:.0f} s", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per variant, batch and round (default 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cifar-tasks", type=int, default=3,
                        help="cifar100_part's first N tasks (default 3: about 3 minutes on 2 cores; 10 take about 10)")
    parser.add_argument("--no-cifar", action="store_true")
    parser.add_argument("--no-spinning", action="store_true", help="ONNX Runtime's threads do not spin after a run")
    args = parser.parse_args()

    import onnxruntime as ort

    from tests.export_helpers import make_trained_run

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; python {platform.python_version()}, "
          f"onnxruntime {ort.__version__} (CPU provider{', no spinning' if args.no_spinning else ''}); "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="fused_speed_"))
    atexit.register(shutil.rmtree, tmp, True)  # cifar100_part's files are gigabytes
    run_dir = make_trained_run(ROOT / "specs" / "split_digits.part", tmp / "digits_run")
    small = {1: (args.rounds, args.budget), 64: (args.rounds, args.budget)}
    rows = bench("split_digits", run_dir, None, tmp / "digits", small, not args.no_spinning)
    if not args.no_cifar:
        import partc

        spec = ROOT / "specs" / "cifar100_part.part"
        tasks = list(partc.load(spec).tasks)[: args.cifar_tasks]
        rows += bench("cifar100_part", spec, tasks, tmp / "cifar", {1: (args.rounds, args.budget), 64: (1, 0.0)},
                      not args.no_spinning)

    print("\n| spec | tasks | batch | fused ms | task files ms | measured ratio | ideal ratio (FLOPs) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n, batch, fused, loop, ideal in rows:
        print(f"| {name} | {n} | {batch} | {fused * 1e3:.2f} | {loop * 1e3:.2f} | {fused / loop:.2f} | {ideal:.3f} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
