"""Benchmark: ONNX Runtime against torch eager for one task of each shipped spec, and `partc serve` under load.

    python3 bench/serve_speed.py [--budget SECONDS] [--requests N] [--clients N]

For one task of each spec in specs/ (exported straight from the spec:
untrained weights, which do not change the speed), on this machine's CPU:
- the task's ONNX file size against the whole network's fp32 size;
- latency at batch 1 (median, p90) and throughput at batch 64, ONNX Runtime
  (CPU provider) against the same task's torch module (eval, inference_mode),
  each library's default threads; the two take turns over 3 rounds and each
  keeps its fastest round (see `best_rounds`);
then `partc serve` (a real server process on loopback) under a bounded load:
N concurrent httpx clients sending batch-1 requests, until --requests are
done or 20 s pass; requests/s and p50/p99 latency. The load generator runs on
the same machine as the server, so both share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed_runs(fn, seconds: float, max_runs: int = 300) -> list[float]:
    """Seconds per call, calling `fn` until `seconds` have passed (at least once)."""
    times: list[float] = []
    start = time.perf_counter()
    while not times or (len(times) < max_runs and time.perf_counter() - start < seconds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def best_rounds(fns: dict, budget: float, rounds: int = 3) -> dict[str, list[float]]:
    """Per function, the call times of its fastest round (lowest median).

    The functions take turns, round by round, so that they see the same
    machine; keeping each one's best round filters out stalls caused by other
    processes (on a shared 2-core machine torch's OpenMP threads can stall for
    hundreds of milliseconds when a core is taken away).
    """
    for fn in fns.values():
        fn()  # warm-up: allocations, weight packing, lazy initialisation
    best: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            times = timed_runs(fn, budget / rounds)
            if name not in best or statistics.median(times) < statistics.median(best[name]):
                best[name] = times
    return best


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_spec(spec: Path, task: str | None, out_dir: Path, budget: float) -> dict:
    import torch

    import partc
    from partc.export import export_tasks
    from partc.serve.models import load_task

    net = partc.load(spec)
    task = task or next(iter(net.tasks))
    t0 = time.perf_counter()
    (result,) = export_tasks(spec, out_dir / net.name, tasks=[task])
    export_s = time.perf_counter() - t0
    torch.manual_seed(net.seed)
    module = partc.compile(net).eval().task(task)
    ort_model = load_task(result.path, task, device="cpu")
    shape = result.info.input_shape
    row = {"spec": spec.stem, "task": task, "route_params": net.task_params(task), "file_bytes": result.bytes,
           "whole_bytes": net.total_params * 4, "export_s": export_s, "diff": result.max_abs_diff}
    for batch in (1, 64):
        x = torch.randn(batch, *shape)
        feed = {result.info.input_name: x.numpy()}

        def run_torch(x=x):
            with torch.inference_mode():
                module(x)

        times = best_rounds({"ort": lambda feed=feed: ort_model.session.run(None, feed), "torch": run_torch}, budget)
        for name, t in times.items():
            if batch == 1:
                row[f"{name}_p50"], row[f"{name}_p90"] = pct(t, 50) * 1e3, pct(t, 90) * 1e3
            else:
                row[f"{name}_tput"] = batch / statistics.median(t)
    return row


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load_test(base: str, task: str, sample: list, clients: int, requests: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    issued = 0

    async def worker():
        nonlocal issued, errors
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                t0 = time.perf_counter()
                reply = await client.post(f"/tasks/{task}/predict", json={"inputs": [sample], "top": 1})
                latencies.append(time.perf_counter() - t0)
                errors += reply.status_code != 200

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - start
    return {"requests": len(latencies), "errors": errors, "wall": wall, "rps": len(latencies) / wall,
            "p50": pct(latencies, 50) * 1e3, "p99": pct(latencies, 99) * 1e3}


def bench_server(export_dir: Path, task: str, shape: tuple[int, ...], clients: int, requests: int, seconds: float) -> dict:
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "partc", "serve", str(export_dir), "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        sample = np.random.default_rng(0).random(shape, dtype=np.float32).tolist()
        asyncio.run(load_test(base, task, sample, clients, 2 * clients, 5))  # warm-up
        return asyncio.run(load_test(base, task, sample, clients, requests, seconds))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    import onnxruntime
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=6.0,
                        help="seconds per measurement and library, split over 3 rounds (at least one call per round)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--specs", nargs="*", default=["split_digits", "mixed_inputs", "cifar100_part"])
    args = parser.parse_args()

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__} (CPUExecutionProvider); "
          f"load average at start {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.specs:
            print(f"  exporting and timing one task of {name} ...", flush=True)
            rows.append(bench_spec(ROOT / "specs" / f"{name}.part", None, Path(tmp), args.budget))
        print()
        print("| spec | task | route params | task file | whole net fp32 | file/whole | export s | max diff "
              "| ORT b1 p50 / p90 ms | torch b1 p50 / p90 ms | ORT b64 samples/s | torch b64 samples/s |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['spec']} | {r['task']} | {r['route_params']:,} | {r['file_bytes'] / 1e6:.2f} MB "
                  f"| {r['whole_bytes'] / 1e6:.2f} MB | {r['file_bytes'] / r['whole_bytes']:.0%} | {r['export_s']:.1f} "
                  f"| {r['diff']:.1e} | {r['ort_p50']:.3f} / {r['ort_p90']:.3f} | {r['torch_p50']:.3f} / {r['torch_p90']:.3f} "
                  f"| {r['ort_tput']:,.0f} | {r['torch_tput']:,.0f} |")
        digits = next((r for r in rows if r["spec"] == "split_digits"), rows[0])
        export_dir = Path(tmp) / digits["spec"]
        import partc

        shape = tuple(partc.load(ROOT / "specs" / f"{digits['spec']}.part").trunk_input.shape)
        print(f"\n  load test: partc serve on loopback, {args.clients} concurrent httpx clients, batch-1 requests, "
              f"{args.requests} requests or {args.seconds:.0f} s ...", flush=True)
        s = bench_server(export_dir, digits["task"], shape, args.clients, args.requests, args.seconds)
    print()
    print("| server | task | clients | requests | errors | seconds | requests/s | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| partc serve (uvicorn, 1 process) | {digits['spec']}/{digits['task']} | {args.clients} | {s['requests']} "
          f"| {s['errors']} | {s['wall']:.1f} | {s['rps']:,.0f} | {s['p50']:.1f} | {s['p99']:.1f} |")
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (other processes on this machine distort the figures)")


if __name__ == "__main__":
    main()
