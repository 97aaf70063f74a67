"""Benchmark: ONNX Runtime against torch for one task of each shipped spec, and `partc serve` under load.

    python3 bench/serve_speed.py [--parts models,json,serve] [--seconds S] [--clients 1,16,64]

models: for one task of each spec in specs/ (exported straight from the
  spec: untrained weights, which do not change the speed), the task file's
  size against the whole network's, and latency at batch 1 (p50, p90) and
  throughput at batch 64, ONNX Runtime (CPU) against the same task's torch
  module; the two take turns over 3 rounds and each keeps its best round.
json: what the bounded JSON reader (partc/serve/jsonbody.py: value count
  while reading, digit-run and depth checks, then json.loads) costs against
  json.loads alone, on request bodies of several sizes.
serve: `partc serve` (a real server process on loopback) with 1, 16 and 64
  concurrent keep-alive clients sending batch-1 v2 requests to
  split_digits/d01, for each server configuration (batching off, batching
  on with 0 and 1 ms queue delay, and with 2 ONNX Runtime threads), the
  configurations taking turns for each client count, --rounds times, each
  keeping its best round (most requests/s; other processes on a shared
  machine only ever slow a round down): requests/s, p50, p99 and the mean
  batch the server ran (from /metrics), and the server process's CPU time
  per request (user + system, all its threads, from /proc: unlike
  requests/s this barely moves when other processes take the CPUs). Beside it, in-process
  ONNX Runtime on the same batch-1 input: what HTTP costs per request.
  With --baseline DIR (the source tree of another partc, e.g. `git archive
  main | tar -x -C DIR`), that version's server runs beside them, sent the
  same sample through the first API (/tasks/d01/predict), which both have.
  The load generator is a minimal asyncio HTTP/1.1 client (pre-built
  request bytes, one connection per client) so that it takes as little of
  the shared CPUs as possible; it still runs on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
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

SERVER_CONFIGS = {  # name -> extra `partc serve` options
    "batching off": ["--no-batching", "--threads", "1"],
    "batching, 0 ms delay": ["--threads", "1"],
    "batching, 1 ms delay": ["--max-queue-delay", "1", "--threads", "1"],
    "batching, 2 threads": ["--threads", "2"],
}


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


# ---- models: ONNX Runtime against torch ----

def bench_spec(spec: Path, out_dir: Path, budget: float) -> dict:
    import torch

    import partc
    from partc.export import export_tasks
    from partc.serve.models import load_task

    net = partc.load(spec)
    task = next(iter(net.tasks))
    t0 = time.perf_counter()
    (result,) = export_tasks(spec, out_dir / net.name, tasks=[task])
    export_s = time.perf_counter() - t0
    torch.manual_seed(net.seed)
    module = partc.compile(net).eval().task(task)
    ort_model = load_task(result.path, task, device="cpu")
    row = {"spec": spec.stem, "task": task, "route_params": net.task_params(task), "file_bytes": result.bytes,
           "whole_bytes": net.total_params * 4, "export_s": export_s, "diff": result.max_abs_diff}
    for batch in (1, 64):
        x = torch.randn(batch, *result.info.input_shape)
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


def models_part(args, tmp: Path) -> None:
    rows = []
    for name in args.specs:
        print(f"  exporting and timing one task of {name} ...", flush=True)
        rows.append(bench_spec(ROOT / "specs" / f"{name}.part", tmp, args.budget))
    print("\n| spec | task | route params | task file | whole net fp32 | file/whole | export s | max diff "
          "| ORT b1 p50 / p90 ms | torch b1 p50 / p90 ms | ORT b64 samples/s | torch b64 samples/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['spec']} | {r['task']} | {r['route_params']:,} | {r['file_bytes'] / 1e6:.2f} MB "
              f"| {r['whole_bytes'] / 1e6:.2f} MB | {r['file_bytes'] / r['whole_bytes']:.0%} | {r['export_s']:.1f} "
              f"| {r['diff']:.1e} | {r['ort_p50']:.3f} / {r['ort_p90']:.3f} | {r['torch_p50']:.3f} / {r['torch_p90']:.3f} "
              f"| {r['ort_tput']:,.0f} | {r['torch_tput']:,.0f} |")


# ---- json: the bounded reader against json.loads ----

def json_part(args) -> None:
    from partc.serve.jsonbody import BodyReader, loads

    rng = np.random.default_rng(0)

    def body(shape, nested: bool) -> bytes:
        data = rng.random(shape, dtype=np.float32)
        return json.dumps({"inputs": [{"name": "x", "shape": list(shape), "datatype": "FP32",
                                       "data": data.tolist() if nested else data.ravel().tolist()}]}).encode()

    cases = [("digits, batch 1, flat", body((1, 1, 8, 8), False)),
             ("digits, batch 64, nested", body((64, 1, 8, 8), True)),
             ("cifar, batch 64, flat", body((64, 3, 32, 32), False)),
             ("cifar, batch 64, nested", body((64, 3, 32, 32), True))]

    def read(data: bytes) -> None:
        reader = BodyReader(1 << 30)
        for start in range(0, len(data), 65536):
            reader.feed(data[start:start + 65536])
        loads(reader.body())

    print("\n| body | bytes | json.loads ms | partc reader + loads ms | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, data in cases:
        runs = 2000 if len(data) < 1e5 else 20
        times = best_rounds({"json": lambda data=data: json.loads(data), "partc": lambda data=data: read(data)},
                            budget=max(0.3, runs * 5e-5), rounds=3)
        plain, bounded = statistics.median(times["json"]), statistics.median(times["partc"])
        print(f"| {name} | {len(data):,} | {plain * 1e3:.3f} | {bounded * 1e3:.3f} | {bounded / plain:.2f} |")


# ---- serve: the HTTP server under load ----

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(export_dir: Path, options: list[str], source: Path = ROOT,
                 ready: str = "/v2/health/ready") -> tuple[subprocess.Popen, int]:
    """`partc serve` of the partc in `source` on a free port, once `ready` answers 200."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "partc", "serve", str(export_dir), "--port", str(port), *options],
                            cwd=source, env={**os.environ, "PYTHONPATH": str(source)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {ready} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("partc serve did not start")


async def _exchange(reader, writer, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head).group(1))
    await reader.readexactly(length)
    return int(head[9:12])


async def load(port: int, request: bytes, clients: int, seconds: float, max_requests: int) -> dict:
    """`clients` keep-alive connections sending `request` back to back for `seconds` (or `max_requests` in all)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline and len(latencies) < max_requests:
                t0 = time.perf_counter()
                status = await _exchange(reader, writer, request)
                latencies.append(time.perf_counter() - t0)
                errors += status != 200
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - start
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / wall,
            "p50": pct(latencies, 50) * 1e3, "p99": pct(latencies, 99) * 1e3}


def batch_counts(port: int) -> tuple[float, float]:
    """(samples inferred, ONNX Runtime calls) of d01 so far, from /metrics."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        text = b""
        while chunk := s.recv(65536):
            text += chunk
    values = dict(re.findall(rb'^(partc_(?:inferences|executions)_total)\{model="d01"\} (\S+)$', text, re.M))
    return float(values.get(b"partc_inferences_total", 0)), float(values.get(b"partc_executions_total", 0))


def http_request(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_part(args, tmp: Path) -> None:
    from partc.export import export_tasks
    from partc.serve.models import load_task

    export_dir = tmp / "serve"
    export_tasks(ROOT / "specs" / "split_digits.part", export_dir, tasks=["d01"])
    model = load_task(export_dir, "d01", device="cpu", threads=1)
    sample = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    body = json.dumps({"inputs": [{"name": "digit", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                   "data": sample.ravel().tolist()}],
                       "outputs": [{"name": "logits"}, {"name": "logits.top_k", "parameters": {"top_k": 1}}]}).encode()
    requests = {name: http_request("/v2/models/d01/infer", body) for name in SERVER_CONFIGS}
    x = model.normalise(sample)
    in_process = best_rounds({"ort": lambda: model.run_graph(x)}, budget=3.0)["ort"]
    cpu_start = time.process_time()
    for _ in range(2000):
        model.run_graph(x)
    in_process_cpu_ms = (time.process_time() - cpu_start) / 2000 * 1e3
    servers = {name: start_server(export_dir, options) for name, options in SERVER_CONFIGS.items()}
    if args.baseline:
        name = f"baseline {args.baseline.name} (first API)"
        servers[name] = start_server(export_dir, ["--threads", "1"], args.baseline.resolve(), ready="/health")
        requests[name] = http_request("/tasks/d01/predict", json.dumps({"inputs": sample.tolist(), "top": 1}).encode())
    results: dict[tuple[str, int], dict] = {}
    try:
        for name, (_, port) in servers.items():
            asyncio.run(load(port, requests[name], 8, 1.0, 10_000))  # warm-up: connections, sessions, allocations
        for clients in args.clients:
            for round_ in range(args.rounds):
                for name, (proc, port) in servers.items():
                    print(f"  {clients} client(s), {name}, round {round_ + 1} ...", flush=True)
                    before, cpu = batch_counts(port), cpu_seconds(proc.pid)
                    result = asyncio.run(load(port, requests[name], clients, args.seconds, args.max_requests))
                    result["cpu_ms"] = (cpu_seconds(proc.pid) - cpu) / max(1, result["requests"]) * 1e3
                    after = batch_counts(port)
                    calls = after[1] - before[1]
                    result["batch"] = f"{(after[0] - before[0]) / calls:.1f}" if calls else "n/a"
                    if (name, clients) not in results or result["rps"] > results[(name, clients)]["rps"]:
                        results[(name, clients)] = result
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print("\n| clients | server | requests | errors | requests/s | p50 ms | p99 ms | mean batch | server CPU ms/request |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for clients in args.clients:
        for name in servers:
            r = results[(name, clients)]
            print(f"| {clients} | {name} | {r['requests']:,} | {r['errors']} | {r['rps']:,.0f} | {r['p50']:.2f} "
                  f"| {r['p99']:.2f} | {r['batch']} | {r['cpu_ms']:.3f} |")
    ort_p50 = pct(in_process, 50) * 1e3
    one = results[("batching, 0 ms delay", args.clients[0])]
    print(f"\n| measure | value |\n|---|---:|\n| in-process ONNX Runtime, batch 1, p50 | {ort_p50:.3f} ms "
          f"({1e3 / ort_p50:,.0f} calls/s) |")
    print(f"| over HTTP, {args.clients[0]} client, batching on, p50 | {one['p50']:.3f} ms ({one['rps']:,.0f} requests/s) |")
    print(f"| HTTP cost per request (p50 difference) | {one['p50'] - ort_p50:.3f} ms |")
    print(f"| in-process ONNX Runtime CPU per call | {in_process_cpu_ms:.3f} ms |")
    print(f"| server CPU per request, {args.clients[0]} client, batching on | {one['cpu_ms']:.3f} ms |")
    print(f"| HTTP CPU cost per request (difference) | {one['cpu_ms'] - in_process_cpu_ms:.3f} ms |")
    print(f"| one HTTP client's throughput / in-process ONNX Runtime | {one['rps'] / (1e3 / ort_p50):.2f} |")
    best = max(results.values(), key=lambda r: r["rps"])
    print(f"| best server throughput / in-process ONNX Runtime at batch 1 | {best['rps'] / (1e3 / ort_p50):.2f} |")


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="models,json,serve", help="comma-separated: models, json, serve")
    parser.add_argument("--budget", type=float, default=6.0, help="models: seconds per measurement and library")
    parser.add_argument("--specs", nargs="*", default=["split_digits", "mixed_inputs", "cifar100_part"])
    parser.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=5.0, help="serve: seconds per measurement")
    parser.add_argument("--max-requests", type=int, default=100_000, help="serve: requests per measurement at most")
    parser.add_argument("--rounds", type=int, default=2, help="serve: rounds per configuration, the best kept")
    parser.add_argument("--baseline", type=Path, help="serve: the source tree of another partc to run beside (first API)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"python {platform.python_version()}, numpy {np.__version__}, onnxruntime {onnxruntime.__version__} "
          f"(CPUExecutionProvider); load average at start {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        if "models" in parts:
            models_part(args, Path(tmp))
        if "json" in parts:
            json_part(args)
        if "serve" in parts:
            serve_part(args, Path(tmp))
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (other processes on this machine distort the figures)")


if __name__ == "__main__":
    main()
