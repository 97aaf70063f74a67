"""The shipped default (specs/split_digits.part) as seed groups: the numbers README.md and docs/BENCHMARKS.md state.

    python3 experiments/default_run.py            # trains what runs/default/ lacks, then prints the tables

Three seed groups of seeds 7, 8, 9 through the real commands (`partc train
--seeds`, `partc report --baseline`): the spec as written (fused), its
`--no-sharing` baseline, and `--mode interleaved`. Seed 7 is the spec's own
train seed, so `seed-7` of the first group is exactly what
`partc train specs/split_digits.part --out runs/split_digits` trains.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RUNS = ROOT / "runs" / "default"
SEEDS = "7,8,9"
VARIANTS = {"shared": [], "nosharing": ["--no-sharing"], "interleaved": ["--mode", "interleaved"]}


def partc(*args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "partc", *args], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - began


def main() -> None:
    from partc.run import is_group

    seconds = {}
    for name, flags in VARIANTS.items():
        out = RUNS / name
        resume = ["--resume"] if is_group(out) else []
        seconds[name] = partc("train", "specs/split_digits.part", "--seeds", SEEDS, "--out", str(out), "-q", *flags,
                              *resume)
    for name in ("shared", "interleaved"):
        partc("report", str(RUNS / name), "--baseline", str(RUNS / "nosharing"), "-o", str(RUNS / f"report_{name}"))
    print(f"\nload average {os.getloadavg()[0]:.1f}; wall seconds per group of 3: "
          + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    for name in ("shared", "interleaved"):
        d = json.loads((RUNS / f"report_{name}" / "report.json").read_text())
        r, t = d["results"], d["transfer"]
        print(f"\n{name}: mean test top-1 {100 * r['mean_top1']:.2f}% +- {100 * r['mean_top1_std']:.2f} "
              f"(seeds: {', '.join(f'{k} {100 * v:.2f}%' for k, v in r['mean_top1_by_seed'].items())})")
        base = d["baseline"]["results"]
        print(f"no sharing: {100 * base['mean_top1']:.2f}% +- {100 * base['mean_top1_std']:.2f} "
              f"(seeds: {', '.join(f'{k} {100 * v:.2f}%' for k, v in base['mean_top1_by_seed'].items())})")
        o = t["overall"]
        print(f"{name} - no sharing: {100 * o['mean']:+.2f} pt [{100 * o['ci'][0]:+.2f}, {100 * o['ci'][1]:+.2f}]: "
              f"{o['verdict']}")
        for task, m in t["tasks"].items():
            print(f"  {task}: {100 * m['top1']:.2f} vs {100 * m['baseline_top1']:.2f}: {m['verdict']}")
        for line in d["cka"]["comparison"]["statements"]:
            print(f"  CKA: {line}")


if __name__ == "__main__":
    main()
