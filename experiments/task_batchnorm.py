"""batchnorm against task_batchnorm on specs/digit_domains.part: test accuracy and train/eval gap, 3 seeds.

The spec's segments hold `task_batchnorm` (each task its own BatchNorm in
every segment it routes through); the other variant is the same spec with
`batchnorm` (one BatchNorm per segment, its running statistics updated by
each of its tasks in turn). Everything else is equal: paths (the network's
seed), data, schedule; each run sets the training seed (`seed N` in the
train block), and the two variants alternate within each seed.

Two input settings: `normalized`, the spec as shipped (each task's inputs
standardised with its own training mean and sd, partc's default), and
`raw` (`normalize=false` on every task: the three looks keep their own
brightness and contrast, as data from different sources would).

For every run and task it measures on the test split:
- eval: top-1 in eval mode, BatchNorm with its running statistics (what
  `partc train` reports and what an exported file computes);
- batch: top-1 with BatchNorm in train mode, normalising with the test
  batch's own statistics (the task's whole test split as one batch, on a
  copy of the model), as training normalised each task's rows;
- gap = batch - eval: what normalising with the running statistics costs.

    python3 experiments/digit_domains_data.py   # the data, once
    python3 experiments/task_batchnorm.py       # 12 runs, 5-10 minutes on 2 busy CPU cores

It prints a markdown table (mean and sample standard deviation over seeds)
and writes every number to --json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import partc
from partc.data import load_all
from partc.run import load_trained_model
from partc.train import train

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "digit_domains.part"
VARIANTS = ("batchnorm", "task_batchnorm")
INPUTS = ("normalized", "raw")


def variant_spec(text: str, variant: str, seed: int, inputs: str = "normalized") -> str:
    """The spec with `variant` for every BatchNorm, training seed `seed`, and raw or normalised inputs."""
    body = text if variant == "task_batchnorm" else text.replace("task_batchnorm", "batchnorm")
    if inputs == "raw":
        body = body.replace("classes=10)", "classes=10, normalize=false)")
    return body.replace("train { ", f"train {{ seed {seed}; ", 1)


@torch.no_grad()
def top1(model, task: str, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x, task=task).argmax(dim=1) == y).float().mean())


def measure(run_dir: Path, data: dict) -> dict[str, dict[str, float]]:
    _net, model, _ = load_trained_model(run_dir)
    out = {}
    for task, d in data.items():
        x = torch.as_tensor(d.test[0], dtype=torch.float32)
        y = torch.as_tensor(d.test[1], dtype=torch.int64)
        evaluated = top1(model.eval(), task, x, y)
        batch = top1(copy.deepcopy(model).train(), task, x, y)  # the copy's running statistics move; no matter
        out[task] = {"eval": evaluated, "batch": batch, "gap": batch - evaluated}
    return out


def summarise(runs: list[dict]) -> list[str]:
    """Markdown rows: inputs, variant, task, eval top-1, batch-statistics top-1, gap (mean +- sd over seeds)."""
    def cell(values: list[float]) -> str:
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * mean:.1f} ± {100 * sd:.1f}"

    def values(mine: list[dict], task: str, key: str) -> list[float]:
        if task == "mean":
            return [statistics.fmean(r["tasks"][t][key] for t in tasks) for r in mine]
        return [r["tasks"][task][key] for r in mine]

    tasks = list(runs[0]["tasks"])
    lines = ["| inputs | variant | task | test top-1, eval mode (%) | test top-1, batch statistics (%) | gap (points) |",
             "|---|---|---|---:|---:|---:|"]
    for inputs in dict.fromkeys(r["inputs"] for r in runs):
        for variant in VARIANTS:
            mine = [r for r in runs if r["variant"] == variant and r["inputs"] == inputs]
            for task in tasks + ["mean"]:
                name = "**mean**" if task == "mean" else task
                cells = " | ".join(cell(values(mine, task, key)) for key in ("eval", "batch", "gap"))
                lines.append(f"| {inputs} | {variant} | {name} | {cells} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, help="override the spec's epochs")
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    parser.add_argument("--data-root", type=Path, default=Path.cwd(),
                        help="where data/digit_domains/*.npz lie (default: the current directory)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: small batches)")
    parser.add_argument("--json", type=Path, help="write every measured number here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    text = SPEC.read_text(encoding="utf-8")
    runs = []
    with tempfile.TemporaryDirectory(prefix="task_batchnorm_") as scratch:
        for inputs in args.inputs:
            # the same samples and splits for every run of a setting
            data = load_all(partc.loads(variant_spec(text, "task_batchnorm", 0, inputs), str(SPEC)),
                            data_root=args.data_root)
            for seed in args.seeds:
                for variant in VARIANTS:
                    net = partc.loads(variant_spec(text, variant, seed, inputs), str(SPEC))
                    run_dir = Path(scratch) / f"{inputs}_{variant}_{seed}"
                    start = time.perf_counter()
                    train(net, run_dir, device="cpu", epochs=args.epochs, quiet=True, data=data)
                    result = {"inputs": inputs, "variant": variant, "seed": seed,
                              "train_s": time.perf_counter() - start, "tasks": measure(run_dir, data)}
                    runs.append(result)
                    shown = ", ".join(f"{t} {100 * m['eval']:.1f}/{100 * m['batch']:.1f}"
                                      for t, m in result["tasks"].items())
                    print(f"# {inputs} {variant} seed {seed}: eval/batch top-1 {shown} ({result['train_s']:.0f} s)",
                          file=sys.stderr)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} thread(s); load average {load[0]:.1f} at the end" if load else "")
    print("\n".join(summarise(runs)))
    if args.json:
        args.json.write_text(json.dumps({"spec": str(SPEC.relative_to(ROOT)), "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
