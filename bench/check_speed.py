"""Benchmark: `partc check` on a large generated spec, end to end and per pass.

Generates a spec of 200 tasks over 50 levels of 64 segments (random(8)
paths, some explicit paths, a few share/private constraints) into a temp
file, then times

- the real command, `python -m partc check FILE` as a subprocess with its
  output sent to /dev/null (median of 3 runs), and
- `partc.load` in-process, split by stage: parse, then every pass of
  `partc.passes.PASSES` in its order; plus the summary `check` prints and
  the IR dump.

Target: the whole command under 2 seconds. Then the rate on big specs:
generated specs of 25,000, 50,000 and 100,000 tasks (the last about 6 MB,
4 levels x 16 segments, random(4) paths) are parsed and checked in process,
and parse and check MB/s are printed per size: equal rates at every size
mean time linear in spec size.

Run: python3 bench/check_speed.py [--runs 3] [--tasks 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.large_spec import large_spec  # noqa: E402
from partc.ir import Network  # noqa: E402
from partc.ir_text import dump  # noqa: E402
from partc.language import parse  # noqa: E402
from partc.language.parser import paused_gc  # noqa: E402
from partc.passes import PASSES  # noqa: E402
from partc.summary import summary  # noqa: E402

TARGET_S = 2.0


def time_command(spec: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "partc", "check", str(spec)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def time_stages(text: str, file: str) -> dict[str, float]:
    """One in-process check, timed stage by stage (the order of partc.passes.check)."""
    stages: dict[str, float] = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - start
        return result

    tree = timed("parse", parse, text, file)
    net = Network(tree.name, tree.file, tree.source)
    with paused_gc():  # as partc.passes.check runs them
        for name, run_pass in PASSES:
            errors = timed(name, run_pass, net, tree)
            assert not errors, errors[0].render()
    timed("summary", summary, net)
    timed("dump", dump, net)
    return stages


def rates(tasks: int) -> list[tuple[int, float, float, float]]:
    """(tasks, MB, parse MB/s, check MB/s) at a quarter, half and all of `tasks` (check: every pass)."""
    rows = []
    for count in (tasks // 4, tasks // 2, tasks):
        text = large_spec(tasks=count, levels=4, segments=16, path=4, name="big")
        megabytes = len(text.encode()) / 1e6
        stages = time_stages(text, "big.part")
        check = sum(v for k, v in stages.items() if k not in ("parse", "summary", "dump"))
        rows.append((count, megabytes, megabytes / stages["parse"], megabytes / check))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (median reported)")
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks of the largest generated spec")
    args = parser.parse_args()

    text = large_spec()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "bench.part"
        spec.write_text(text, encoding="utf-8")
        command = time_command(spec, args.runs)
        stage_runs = [time_stages(text, str(spec)) for _ in range(args.runs)]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import partc.cli"], cwd=ROOT, check=True)
        startup = time.perf_counter() - start

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"python:  {platform.python_implementation()} {platform.python_version()}")
    print(f"spec:    200 tasks, 50 levels x 64 segments, random(8) paths, {len(text.splitlines())} lines")
    print()
    print(f"{'measure':<34}{'median s':>10}{'min s':>9}")
    print("-" * 53)
    median = statistics.median(command)
    print(f"{'partc check (subprocess, e2e)':<34}{median:>10.3f}{min(command):>9.3f}")
    print(f"{'  python start + import partc.cli':<34}{startup:>10.3f}{'':>9}")
    total = [sum(v for k, v in run.items() if k not in ("summary", "dump")) for run in stage_runs]
    print(f"{'load() in-process':<34}{statistics.median(total):>10.3f}{min(total):>9.3f}")
    for stage in stage_runs[0]:
        values = [run[stage] for run in stage_runs]
        label = f"  {stage}" if stage not in ("summary", "dump") else f"{stage} (text output)"
        print(f"{label:<34}{statistics.median(values):>10.3f}{min(values):>9.3f}")
    print()
    print(f"{'big spec':<22}{'MB':>8}{'parse MB/s':>12}{'check MB/s':>12}   (load average {os.getloadavg()[0]:.1f})")
    print("-" * 54)
    for count, megabytes, parse_rate, check_rate in rates(args.tasks):
        print(f"{f'{count:,} tasks':<22}{megabytes:>8.2f}{parse_rate:>12.2f}{check_rate:>12.2f}")
    print()
    verdict = "OK" if median < TARGET_S else "TOO SLOW"
    print(f"target: partc check under {TARGET_S:.1f} s -> {verdict} ({median:.2f} s)")
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
