"""How long `partc report` takes, step by step, on a trained run.

    python3 bench/report_speed.py                   # trains split_digits for 1 epoch into a temp dir first
    python3 bench/report_speed.py --run runs/digits # an existing run directory
    python3 bench/report_speed.py --repeat 3        # best of 3 per step

Prints the machine (platform, CPUs, torch version, threads, load average)
and the seconds of each step of `build_report`, then the whole call.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import partc  # noqa: E402
from partc.report import build_report, figures  # noqa: E402
from partc.report.analysis import cka_by_level, lesion  # noqa: E402
from partc.report.evaldata import build_probes, load_test_data  # noqa: E402
from partc.report.structure import structure  # noqa: E402
from partc.run import load_checkpoint, load_trained_model, run_paths  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def best_of(repeat: int, fn):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trained run directory (default: train split_digits for 1 epoch)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    run = Path(args.run) if args.run else None
    if run is None:
        from partc.train import train

        run = Path(tmp.name) / "digits"
        print("training specs/split_digits.part for 1 epoch ...", flush=True)
        train(partc.load(ROOT / "specs" / "split_digits.part"), run, device="cpu", quiet=True, epochs=1)

    cpu = torch.device("cpu")
    rows = []
    t, (net, model, _) = best_of(args.repeat, lambda: load_trained_model(run))
    rows.append(("load spec + last.pt + compile", t))
    t, s = best_of(args.repeat, lambda: structure(net))
    rows.append(("structure (IR)", t))
    t, data = best_of(args.repeat, lambda: load_test_data(net))
    rows.append(("test data (partc.data)", t))
    probes = build_probes(net, data)
    t, _ = best_of(args.repeat, lambda: cka_by_level(net, model, probes, cpu))
    rows.append((f"CKA ({sum(p.samples for p in probes)} probe samples, {len(net.tasks)} tasks)", t))
    t, _ = best_of(args.repeat, lambda: cka_by_level(net, model, probes, cpu, permutations=5))
    rows.append(("CKA with its noise floor (5 permutations)", t))
    init = load_checkpoint(run_paths(run)["init"])["model"]
    t, _ = best_of(args.repeat, lambda: lesion(net, model, init, data, cpu))
    rows.append(("lesion (2 test evaluations per task)", t))
    out = Path(tmp.name) / "figs"
    out.mkdir(exist_ok=True)
    t, _ = best_of(args.repeat, lambda: [figures.save(f(s), out / f"{f.__name__}.png") for f in
                                         (figures.usage_map, figures.sharing_matrices, figures.sharing_by_level,
                                          figures.param_split)])
    rows.append(("4 structure figures", t))
    t, report = best_of(args.repeat, lambda: build_report(run, Path(tmp.name) / "report"))
    rows.append((f"build_report, all ({len(report.figures)} figures)", t))

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"run: {run} ({net.name}, {len(net.tasks)} tasks, {len(net.levels)} levels)")
    width = max(len(name) for name, _ in rows)
    print(f"{'step':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.2f}")


if __name__ == "__main__":
    main()
