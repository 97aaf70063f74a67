"""Experiment: does `partc extend` add tasks without forgetting, and does it transfer? (digits, CPU)

Split scikit-learn's digits into tasks; train three 3-class tasks (t012,
t345, t678), then add two binary tasks (n38, n49) that reuse some of their
classes (so there is something to transfer) in three ways:

  (a) partc extend          the base tasks' modules frozen (the claim: no forgetting)
  (b) naive fine-tuning     the grown network trained from the base weights on the new tasks' data,
                            nothing frozen (`partc extend --no-freeze`)
  (c) new tasks alone       a fresh network of the new tasks on private routes (no transfer)

for 5 training seeds (initialisation and data order; routes and splits fixed
by the network seed), with the new tasks' data full and scarce (limit=N
training samples per task). The new tasks get about 120 optimizer steps in
every regime (at least twice the base epochs): with 5 samples an epoch is
one step. Reports the base tasks' test top-1 before and
after (forgetting) and the new tasks' test top-1, mean and standard
deviation over the seeds.

    python3 experiments/extend_forgetting.py --out /tmp/extend_study      # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import partc  # noqa: E402
from partc.stats import paired  # noqa: E402
from partc.train import train  # noqa: E402
from partc.train.extend import extend  # noqa: E402

NETWORK = """network digits_grow {{
  input digit: float[1, 8, 8]
  seed 7
  segment conv_block(c) {{ conv(c, k=3, pad=1); batchnorm; relu }}
  level l1 = {m} x conv_block(16) then relu
  level l2 = {m} x conv_block(32) then relu, maxpool(2)
  level l3 = {m} x conv_block(32) then relu, avgpool
{tasks}
  train {{ epochs {epochs}; batch {batch}; optimizer adam(lr=3e-3); schedule cosine; seed {seed} }}
}}
"""
BATCH = 32
FULL_TRAIN_SAMPLES = 259  # a binary digits task's training split (72% of ~360 samples)
NEW_TASK_STEPS = 120

BASE_TASKS = {"t012": [0, 1, 2], "t345": [3, 4, 5], "t678": [6, 7, 8]}
NEW_TASKS = {"n38": [3, 8], "n49": [4, 9]}


def task_lines(tasks: dict[str, list[int]], limit: int | None) -> str:
    option = f", limit={limit}" if limit else ""
    return "\n".join(f"  task {name} {{ data digits(classes={classes}{option}) path random(2) }}"
                     for name, classes in tasks.items())


def spec(tasks_text: str, seed: int, epochs: int, m: int) -> str:
    return NETWORK.format(tasks=tasks_text, seed=seed, epochs=epochs, m=m, batch=BATCH)


def top1(results: dict, tasks) -> dict[str, float]:
    return {t: results["tasks"][t]["top1"] for t in tasks}


def new_task_epochs(limit: int | None, epochs: int) -> int:
    """Epochs that give the new tasks about NEW_TASK_STEPS optimizer steps, whatever their data: with 5
    samples an epoch is one step, and a few epochs would leave BatchNorm statistics and heads untrained."""
    samples = limit or FULL_TRAIN_SAMPLES
    return max(2 * epochs, math.ceil(NEW_TASK_STEPS / math.ceil(samples / BATCH)))


def run_seed(out: Path, seed: int, limit: int | None, epochs: int) -> dict:
    folder = out / f"limit-{limit or 'all'}" / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "result.json"
    if done.exists():  # resumable: a finished seed is not run again
        return json.loads(done.read_text())
    base_text = spec(task_lines(BASE_TASKS, None), seed, epochs, m=4)
    new_epochs = new_task_epochs(limit, epochs)
    grown_text = spec(task_lines(BASE_TASKS, None) + "\n" + task_lines(NEW_TASKS, limit), seed, new_epochs, m=6)
    (folder / "base.part").write_text(base_text)
    (folder / "grown.part").write_text(grown_text)
    base = train(partc.load(folder / "base.part"), folder / "base", device="cpu", quiet=True)
    frozen = extend(folder / "base", folder / "grown.part", folder / "extend", device="cpu", quiet=True)
    naive = extend(folder / "base", folder / "grown.part", folder / "naive", device="cpu", quiet=True, freeze=False)
    alone_text = spec(task_lines(NEW_TASKS, limit), seed, new_epochs, m=6).replace("digits_grow", "digits_new")
    (folder / "alone.part").write_text(alone_text)
    alone = train(partc.load(folder / "alone.part"), folder / "alone", device="cpu", quiet=True, no_sharing=True)
    result = {"seed": seed, "limit": limit, "base_before": top1(base, BASE_TASKS),
              "extend": {"base": top1(frozen, BASE_TASKS), "new": top1(frozen, NEW_TASKS)},
              "naive": {"base": top1(naive, BASE_TASKS), "new": top1(naive, NEW_TASKS)},
              "alone": {"new": top1(alone, NEW_TASKS)}}
    done.write_text(json.dumps(result, indent=1))
    return result


def mean_std(values: list[float]) -> str:
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * m:.2f} ± {100 * s:.2f}"


def interval(here: dict[int, float], there: dict[int, float]) -> str:
    """Paired difference here - there over seeds, in points, with its 95% t interval (partc.stats)."""
    result = paired(here, there)
    if all(v == 0 for v in result["values"]):
        return "0.00 in every seed"
    low, high = result["ci"] if result["ci"] else (result["mean"], result["mean"])
    verdict = "" if result["direction"] in ("above", "below") else " n.d."
    return f"{100 * result['mean']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]{verdict}"


def table(results: list[dict]) -> str:
    """Per data regime and variant: base tasks before/after, forgetting, new tasks, and new tasks against (c),
    paired by seed with 95% t intervals (n.d.: the interval holds zero)."""
    lines = ["| new-task data | variant | base tasks before | base tasks after | forgetting, points [95% CI] | new tasks "
             "| new tasks minus (c), points [95% CI] |", "|---|---|---:|---:|---:|---:|---:|"]
    for limit in sorted({r["limit"] or 0 for r in results}):
        group = [r for r in results if (r["limit"] or 0) == limit]
        before = {r["seed"]: statistics.mean(r["base_before"].values()) for r in group}
        alone = {r["seed"]: statistics.mean(r["alone"]["new"].values()) for r in group}
        for variant in ("extend", "naive", "alone"):
            new = {r["seed"]: statistics.mean(r[variant]["new"].values()) for r in group}
            if variant == "alone":
                after = forgetting = against = "-"
            else:
                after_values = {r["seed"]: statistics.mean(r[variant]["base"].values()) for r in group}
                after = mean_std(list(after_values.values()))
                forgetting = interval(before, after_values)
                against = interval(new, alone)
            label = {"extend": "(a) partc extend", "naive": "(b) naive fine-tuning", "alone": "(c) new tasks alone"}[variant]
            lines.append(f"| {'all' if not limit else f'limit={limit}'} | {label} | {mean_std(list(before.values()))} | "
                         f"{after} | {forgetting} | {mean_std(list(new.values()))} | {against} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/extend_study"))
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--limits", default="0,20,5", help="new tasks' training samples per task (0: all)")
    parser.add_argument("--epochs", type=int, default=6, help="base epochs (the new tasks: see new_task_epochs)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    results = []
    for limit in [int(v) or None for v in args.limits.split(",")]:
        for seed in [int(v) for v in args.seeds.split(",")]:
            results.append(run_seed(args.out, seed, limit, args.epochs))
            print(f"done: limit={limit} seed={seed}", flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
