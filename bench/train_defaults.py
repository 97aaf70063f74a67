"""`partc train` with its defaults against a plain PyTorch loop over the same compiled modules, side by side.

    python3 bench/train_defaults.py [--spec specs/split_digits.part] [--rounds 5] [--variants partc,plain-1,...]

Every run is a fresh process, so each figure includes start-up (imports,
data, compile) as a user sees it. Variants:

  partc            `python -m partc train SPEC -q` as a user runs it (no thread flags, no OMP_* variables)
  partc-N          the same with --threads N (partc-N-active|-passive: and that OMP_WAIT_POLICY)
  baseline         `partc train` of another partc tree (--baseline DIR, e.g. main's), as `partc`
  plain-N          a plain loop with N torch threads and OpenMP's default wait policy
  plain-N-active   ... with OMP_WAIT_POLICY=ACTIVE (threads spin between parallel regions)
  plain-N-passive  ... with OMP_WAIT_POLICY=PASSIVE (threads sleep)

The plain loop is what one would write by hand over `partc.compile(net)`:
the same data (partc's loader), batch sizes, steps per epoch, epochs,
cosine learning rate and initial weights; each step one forward per task
(`model(x, task=t)`), the summed loss, one torch.optim.Adam step; after
each epoch each task's val and test split evaluated, as `partc train`
does. It writes no checkpoints, metrics or results.

Variants run in turn, the order rotating every round; the table gives each
one's median wall time (min..max over rounds), median CPU time of the
process (user + system), the time inside training epochs, and the ratio of
the median wall time to the fastest plain variant's. The 1-minute load
average before each run is printed with it: on a shared machine, read the
rounds, not one figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def plain_loop(spec: str, threads: int) -> dict:
    """Train SPEC the plain way in this process; seconds spent in training and in evaluation."""
    import math

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT))
    import partc
    from partc.data.load import load_all
    from partc.train import resolve_config
    from partc.train.sampling import steps_per_epoch

    net = partc.load(spec)
    cfg = resolve_config(net)
    data = load_all(net)
    train = {t: (torch.as_tensor(d.train[0]), torch.as_tensor(d.train[1])) for t, d in data.items()}
    sizes = {t: int(y.shape[0]) for t, (_, y) in train.items()}
    batch = {t: min(cfg.batch, n) for t, n in sizes.items()}
    steps = steps_per_epoch(sizes, batch, "largest")
    torch.manual_seed(cfg.seed)
    model = partc.compile(net)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = {t: torch.randperm(n, generator=gen) for t, n in sizes.items()}
    pos = dict.fromkeys(sizes, 0)

    def take(t: str):
        if pos[t] + batch[t] > sizes[t]:
            order[t], pos[t] = torch.randperm(sizes[t], generator=gen), 0
        idx = order[t][pos[t] : pos[t] + batch[t]]
        pos[t] += batch[t]
        return train[t][0][idx], train[t][1][idx]

    train_s = eval_s = 0.0
    for epoch in range(cfg.epochs):
        began = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
        model.train()
        for _ in range(steps):
            batches = {t: take(t) for t in net.tasks}
            loss = sum(F.cross_entropy(model(x, task=t), y) for t, (x, y) in batches.items())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        train_s += time.perf_counter() - began
        began = time.perf_counter()
        model.eval()
        with torch.no_grad():
            for t, d in data.items():
                for x, y in (d.val, d.test):
                    x, y = torch.as_tensor(x), torch.as_tensor(y)
                    for start in range(0, x.shape[0], 512):
                        F.cross_entropy(model(x[start : start + 512], task=t), y[start : start + 512])
        eval_s += time.perf_counter() - began
    return {"train_s": train_s, "eval_s": eval_s}


def variant_command(variant: str, spec: str, out: Path, baseline: Path | None) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(baseline if variant == "baseline" else ROOT), env.get("PYTHONPATH", "")])
    if variant == "baseline":
        return [sys.executable, "-m", "partc", "train", spec, "--out", str(out), "-q"], env
    parts = variant.split("-")  # partc[-N[-active|-passive]], plain-N[-active|-passive]
    if len(parts) == 3:
        env["OMP_WAIT_POLICY"] = parts[2].upper()
    if variant.startswith("partc"):
        cmd = [sys.executable, "-m", "partc", "train", spec, "--out", str(out), "-q"]
        return cmd + (["--threads", parts[1]] if len(parts) > 1 else []), env
    return [sys.executable, __file__, "--child", "--spec", spec, "--threads", parts[1]], env


def run_once(variant: str, spec: str, baseline: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd, env = variant_command(variant, spec, out, baseline)
        load = os.getloadavg()[0]
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=baseline if variant == "baseline" else ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        stdout, stderr = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close(), proc.stderr.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} failed ({proc.returncode}): {stderr[-2000:]}")
        result = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024, "load": load}
        if variant.startswith("partc") or variant == "baseline":
            rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
            result["train_s"] = sum({r["epoch"]: r["time_s"] for r in rows if r["split"] == "train"}.values())
            info = json.loads((out / "run.json").read_text())
            if "threads" in info:
                result["chose"] = f"{info['threads']} thread(s)"
        else:
            result.update(json.loads(stdout.strip().splitlines()[-1]))
        return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "specs" / "split_digits.part"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--variants", help="comma separated (default: partc,partc-1 and plain-N[-active|-passive] "
                                      "for N = 1 and the CPUs this process may use)")
    p.add_argument("--baseline", type=Path, help="another partc tree (e.g. `git archive main`): adds variant baseline")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(plain_loop(args.spec, args.threads)))
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    default = ["partc", "partc-1", "plain-1"] + ([f"plain-{cpus}", f"plain-{cpus}-active", f"plain-{cpus}-passive"]
                                                 if cpus > 1 else [])
    variants = args.variants.split(",") if args.variants else default + (["baseline"] if args.baseline else [])
    print(f"# train_defaults: {Path(args.spec).name}, {args.rounds} rounds, variants in rotating order")
    print(f"# machine: {platform.platform()}, {platform.processor() or platform.machine()}, {cpus} CPUs, "
          f"Python {platform.python_version()}")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for variant in order:
            res = run_once(variant, args.spec, args.baseline)
            results[variant].append(res)
            print(f"# round {r + 1} {variant}: {res['wall']:.1f} s wall, {res['cpu']:.1f} s CPU, load {res['load']:.1f}"
                  + (f", chose {res['chose']}" if "chose" in res else ""), flush=True)
    plain = [v for v in variants if v.startswith("plain")]
    best = min(plain, key=lambda v: statistics.median(x["wall"] for x in results[v])) if plain else None
    print("| variant | wall s, median (min..max) | CPU s | in training epochs s | peak RSS MiB | vs best plain |")
    print("|---|---:|---:|---:|---:|---:|")
    for v in variants:
        walls = [x["wall"] for x in results[v]]
        ratio = (f"{statistics.median(walls) / statistics.median(x['wall'] for x in results[best]):.2f}x"
                 if best else "-")
        print(f"| {v} | {statistics.median(walls):.1f} ({min(walls):.1f}..{max(walls):.1f}) | "
              f"{statistics.median(x['cpu'] for x in results[v]):.1f} | "
              f"{statistics.median(x['train_s'] for x in results[v]):.1f} | "
              f"{statistics.median(x['rss_mib'] for x in results[v]):.0f} | {ratio} |")
    loads = [x["load"] for rs in results.values() for x in rs]
    print(f"# load average before the runs: {min(loads):.1f}..{max(loads):.1f}; fastest plain variant: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
