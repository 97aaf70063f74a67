"""Training throughput on 1 and N processes (torchrun, DDP), and the interleaved-mode reductions compared.

    python bench/dist_speed.py                          # CPU: 1 process against 2, interleaved reductions
    python bench/dist_speed.py --device cuda --nproc 1  # GPU: plain run against torchrun --nproc-per-node 1
    python bench/dist_speed.py --skip-reductions --repeats 5

Part 1, images/s of `partc train SPEC` (default specs/split_digits.part, --epochs 3) run as
  plain      python -m partc train ...                 (one process, every core)
  plain-1t   the same with one thread (what each of 2 processes has on a 2-core machine)
  torchrunK  python -m torch.distributed.run --nproc-per-node K -m partc train ...
for each K of --nproc, the variants alternated `--repeats` times. images/s = training images of all
tasks in an epoch / that epoch's training time (metrics.jsonl time_s), epochs 2.. (the first warms up),
median over repeats; start-up is not counted. On CPU each process gets cores / K threads.

Part 2 (interleaved mode, 2 processes): ms per step of one task's route, three ways to average its
gradients: `all-reduce` (one flat all-reduce of the route's gradients after backward, before the
task's optimizer steps: what partc does, the fastest measured), `route-ddp` (a DDP per task route,
overlapping the reduction with backward), `find-unused` (one DDP over the model with
find_unused_parameters, which reduces every parameter every step). The script starts itself under
torchrun for it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ---- part 1: end to end ----------------------------------------------------------------------------

def command(variant: str, spec: Path, out: Path, device: str, epochs: int) -> list[str]:
    train = ["-m", "partc", "train", str(spec), "--out", str(out), "--device", device, "--epochs", str(epochs), "-q"]
    if variant.startswith("plain"):
        return [sys.executable, *train]
    k = variant.removeprefix("torchrun")
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", k, "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{free_port()}", *train]


def images_per_second(out: Path) -> float:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = []
    for epoch in sorted({r["epoch"] for r in rows})[1:]:
        train = [r for r in rows if r["epoch"] == epoch and r["split"] == "train"]
        rates.append(sum(r["samples"] for r in train) / train[0]["time_s"])
    return statistics.median(rates)


def end_to_end(args) -> None:
    from partc.devices import cpu_threads

    variants = ["plain"] + (["plain-1t"] if args.device == "cpu" else []) + [f"torchrun{k}" for k in args.nproc]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for variant in variants:
                out = Path(tmp) / f"{variant}_{repeat}"
                k = 1 if variant == "plain" else cpu_threads() if variant == "plain-1t" else int(variant[8:])
                env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(max(1, cpu_threads() // k)))
                subprocess.run(command(variant, Path(args.spec), out, args.device, args.epochs), cwd=ROOT, env=env,
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
                rates[variant].append(images_per_second(out))
                print(f"  {variant} repeat {repeat + 1}: {rates[variant][-1]:.0f} images/s (load {load()})", flush=True)
    base = statistics.median(rates["plain"])
    print(f"\n{Path(args.spec).name}, --device {args.device}, --epochs {args.epochs}, median of {args.repeats}\n")
    print("| variant | images/s | vs plain |\n|---|---:|---:|")
    for variant in variants:
        rate = statistics.median(rates[variant])
        print(f"| {variant} | {rate:.0f} | {rate / base:.2f} |")


# ---- part 2: interleaved reductions (runs under torchrun) ------------------------------------------

def reductions_worker(spec: str, steps: int, repeats: int) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    import partc
    from partc.compiler import compile_network

    dist.init_process_group("gloo")
    net = partc.load(spec)
    tasks = list(net.tasks)

    class Entry(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, task):
            return self.model(x, task=task)

    def build(variant):
        torch.manual_seed(0)
        model = compile_network(net)
        if variant == "route-ddp":
            routes = {t: DDP(model.task(t)) for t in tasks}
            step = lambda x, t: routes[t](x)  # noqa: E731
        elif variant == "find-unused":
            whole = DDP(Entry(model), find_unused_parameters=True)
            step = lambda x, t: whole(x, t)  # noqa: E731
        else:
            step = lambda x, t: model(x, task=t)  # noqa: E731
        optimizers = {t: torch.optim.Adam(model.task_parameters(t), lr=1e-3) for t in tasks}
        return model, step, optimizers

    def run(variant, model, step, optimizers, count):
        g = torch.Generator().manual_seed(1)
        shape = net.inputs[net.tasks[tasks[0]].input].shape
        x = torch.randn(16, *shape, generator=g)  # this rank's half of a batch of 32
        for i in range(count):
            t = tasks[(i // 4) % len(tasks)]
            y = torch.randint(0, net.tasks[t].classes, (16,), generator=g)
            loss = F.cross_entropy(step(x, t), y)
            optimizers[t].zero_grad(set_to_none=True)
            loss.backward()
            if variant == "all-reduce":
                grads = [p.grad for p in model.task_parameters(t)]
                flat = torch.cat([gr.reshape(-1) for gr in grads])
                dist.all_reduce(flat)
                flat /= dist.get_world_size()
                for gr, v in zip(grads, flat.split([gr.numel() for gr in grads])):
                    gr.copy_(v.view_as(gr))
            optimizers[t].step()

    variants = ["all-reduce", "route-ddp", "find-unused"]
    built = {v: build(v) for v in variants}
    for v in variants:
        run(v, *built[v], 8)
    times = {v: [] for v in variants}
    for _ in range(repeats):
        for v in variants:
            dist.barrier()
            began = time.perf_counter()
            run(v, *built[v], steps)
            dist.barrier()
            times[v].append((time.perf_counter() - began) / steps * 1000)
    if dist.get_rank() == 0:
        print(f"\ninterleaved, 2 processes (gloo), {Path(spec).name}, 16 rows per rank, median of {repeats} x "
              f"{steps} steps\n")
        print("| reduction | ms/step |\n|---|---:|")
        for v in variants:
            print(f"| {v} | {statistics.median(times[v]):.1f} |")
    dist.destroy_process_group()


def reductions(args) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
                    "--rdzv-endpoint", f"127.0.0.1:{free_port()}", __file__, "--worker", "--spec", args.spec,
                    "--steps", str(args.steps), "--repeats", str(args.repeats)], env=env, check=True, timeout=1800)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "split_digits.part"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--nproc", type=int, nargs="+", default=[2], help="process counts to run under torchrun")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="part 2: steps per timing")
    parser.add_argument("--skip-reductions", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        reductions_worker(args.spec, args.steps, args.repeats)
        return
    import torch

    print(f"{platform.node()}: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"load {load()} at start")
    end_to_end(args)
    if not args.skip_reductions and args.device == "cpu":
        reductions(args)
    print(f"\nload {load()} at the end")


if __name__ == "__main__":
    main()
