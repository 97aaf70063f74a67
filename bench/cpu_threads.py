"""CPU threads and OpenMP wait policy for a training step, by network size: what partc's default rests on.

    python3 bench/cpu_threads.py [--rounds 5] [--steps 8] [--cases split_digits/32,cifar100_part/8/16]
                                 [--settings 1,2-passive,2-default,2-active]

Every (case, setting) runs in a fresh process (OpenMP reads its wait policy
once, when torch loads it): the case's training step as partc's trainer
runs it (forward_all, summed cross-entropy, backward, partc's Adam) on synthetic batches, --steps timed steps
after two warm-up steps. Settings: `N` threads with OMP_WAIT_POLICY
PASSIVE, unset (`default`: libgomp spins a while, then sleeps) or ACTIVE;
`1` is one thread. Rounds alternate the settings (the order rotates); a
figure is the median step time over rounds (min..max), with the process's
CPU time per step beside it, and the 1-minute load average is printed. The
last column gives each setting's median over the fastest one's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
USER_SETTINGS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def child(case: str, threads: int, steps: int) -> dict:
    import torch

    import partc
    from bench.fused_step import make_steps, spec_text
    from partc.train.flops import task_train_flops

    torch.set_num_threads(threads)
    name, batch = case.rsplit("/", 1)
    text, file = spec_text(name)
    net, batch = partc.loads(text, file), int(batch)
    way = "forward_all"
    step = make_steps(net, batch)[way]  # the step bench/fused_step.py times
    step(), step()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(steps):
        step()
    return {"wall": (time.perf_counter() - wall) / steps, "cpu": (time.process_time() - cpu) / steps, "way": way,
            "gflop": sum(task_train_flops(net, t) for t in net.tasks) * batch / 1e9}


def run(case: str, setting: str, steps: int) -> dict:
    threads, _, policy = setting.partition("-")
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if policy in ("passive", "active"):
        env["OMP_WAIT_POLICY"] = policy.upper()
    load = os.getloadavg()[0]
    done = subprocess.run([sys.executable, __file__, "--child", case, "--threads", threads, "--steps", str(steps)],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load": load}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="split_digits/32,digit_domains/32,cifar100_part/8/16,cifar100_part/4/16")
    p.add_argument("--settings", default="1,2-passive,2-default,2-active")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.steps)))
        return 0
    settings = args.settings.split(",")
    print(f"# cpu_threads: {args.rounds} rounds x {args.steps} steps, settings in rotating order, a process each")
    print(f"# machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("| case | GFLOP per step | setting | step ms, median (min..max) | CPU ms per step | load | vs fastest |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for case in args.cases.split(","):
        seen: dict[str, list[dict]] = {s: [] for s in settings}
        for r in range(args.rounds):
            for setting in settings[r % len(settings):] + settings[: r % len(settings)]:
                seen[setting].append(run(case, setting, args.steps))
        medians = {s: statistics.median(x["wall"] for x in seen[s]) for s in settings}
        best = min(medians.values())
        for s in settings:
            walls = sorted(1e3 * x["wall"] for x in seen[s])
            loads = [x["load"] for x in seen[s]]
            print(f"| {case} ({seen[s][0]['way']}) | {seen[s][0]['gflop']:.2f} | {s} | {statistics.median(walls):.1f} "
                  f"({walls[0]:.1f}..{walls[-1]:.1f}) | {1e3 * statistics.median(x['cpu'] for x in seen[s]):.1f} | "
                  f"{min(loads):.1f}..{max(loads):.1f} | {medians[s] / best:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
