"""Training throughput of the PaRT network: the reference way against partc's fused step.

    python bench/train_speed.py                      # on the GPU when there is one (10 tasks x batch 16 and 64)
    python bench/train_speed.py --device cpu --levels-scale small --batches 8 --rounds 7 --steps 5   # CPU

Synthetic 32x32 data already on the device, one pool of batches per task.
Variants (each on a fresh model with the same initial weights):

  reference       one task's batch at a time (model(x, task=t)), that task's own Adam, eager fp32:
                  what the PaRT reference code does
  fused-fp32      partc fused mode: forward_all over every task's batch, one Adam, eager fp32
  fused-per-task  the same step with one forward per task (model(x, task=t) for each task, one
                  Adam): measured slower than forward_all on the CPU too (docs/BENCHMARKS.md)
  fused-bf16      + bf16 autocast, channels_last, fused Adam (what `partc train` does on CUDA)
  fused-compile   + torch.compile of forward and loss (--compile-mode: default, or e.g.
                  max-autotune-no-cudagraphs, which autotunes every conv shape: many minutes)
  fused-graph     + the whole step (forward, backward, Adam) captured as one CUDA graph

Every variant is built and warmed up first; then --rounds rounds each time
--steps steps of every variant, the order rotating round by round, and a
short matrix product is timed just before each variant's steps (its FLOP/s
is the peak that variant's MFU is read against: on a shared machine the
peak moves with the load). A figure is the median over rounds, with the
min..max spread beside it. images/s counts the images of all tasks; MFU is
model FLOPs (conv and linear multiply-adds x2, x3 for a training step,
counted from the IR per task path) per second over that peak (bf16 on CUDA,
fp32 on CPU). Peak memory: torch.cuda.max_memory_allocated above what was
allocated before the variant was built. The CPU threads are what `partc
train` would choose for the first batch size (`partc.devices.configure_cpu`,
printed) unless --threads is given.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.timing import load_note, spread  # noqa: E402
from partc.devices import configure_cpu, set_wait_policy  # noqa: E402

set_wait_policy()  # before torch is imported, as `partc train` does

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import partc  # noqa: E402
from partc.train import fast  # noqa: E402
from partc.train.flops import activation_bytes, task_train_flops  # noqa: E402

CUDA_VARIANTS = ["reference", "fused-fp32", "fused-bf16", "fused-compile", "fused-graph"]
CPU_VARIANTS = ["reference", "fused-fp32", "fused-per-task"]
POOL = 4  # distinct batches per task, cycled


def load_network(spec: Path, scale: str):
    text = spec.read_text(encoding="utf-8")
    if scale == "small":  # same levels, segments and paths; widths / 16 (64 -> 4, 512 -> 32)
        text = re.sub(r"x (\w+)\((\d+)\)", lambda m: f"x {m.group(1)}({max(2, int(m.group(2)) // 16)})", text)
    return partc.loads(text, str(spec))


def synthetic_pool(net, batch: int, device) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(0)
    pools = {}
    for name, task in net.tasks.items():
        shape = net.inputs[task.input].shape
        pools[name] = [(torch.randn(batch, *shape, generator=gen).to(device),
                        torch.randint(0, task.classes, (batch,), generator=gen).to(device)) for _ in range(POOL)]
    return pools


def fresh_model(net, device, channels_last: bool):
    torch.manual_seed(0)
    model = partc.compile(net).to(device).train()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_step(variant: str, net, device, pools, compile_mode: str = "default"):
    """(model, step(i) -> None) for one variant; step i trains on batch i of each task's pool."""
    tasks = list(net.tasks)
    cuda = device.type == "cuda"
    if variant == "reference":
        model = fresh_model(net, device, channels_last=False)
        opts = {t: torch.optim.Adam(model.task_parameters(t), lr=1e-3) for t in tasks}

        def step(i):
            for t in tasks:
                x, y = pools[t][i % POOL]
                loss = F.cross_entropy(model(x, task=t), y)
                opts[t].zero_grad(set_to_none=True)
                loss.backward()
                opts[t].step()
        return model, step

    if variant in ("fused-bf16", "fused-graph") and not cuda:
        raise RuntimeError(f"{variant} needs CUDA")
    bf16 = cuda and variant != "fused-fp32"  # fused-compile on a CPU compiles the fp32 step
    model = fresh_model(net, device, channels_last=bf16)
    if bf16:
        fast.configure_cuda()
        pools = {t: [(x.contiguous(memory_format=torch.channels_last), y) for x, y in p] for t, p in pools.items()}
    options = {"fused": True} if cuda else {}
    if variant == "fused-graph":
        options["capturable"] = True
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, **options)
    weights = {t: 1.0 for t in tasks}

    if variant == "fused-graph":
        graphed = fast.GraphedFusedStep(model, opt, tasks, weights, {t: pools[t][0] for t in tasks})

        def step(i):
            graphed({t: pools[t][i % POOL] for t in tasks})
        return model, step

    forward = ((lambda xs: {t: model(x, task=t) for t, x in xs.items()}) if variant == "fused-per-task"
               else model.forward_all)

    def loss_of(xs, ys):
        logits = forward(xs)
        return sum(F.cross_entropy(logits[t].float(), ys[t]) for t in tasks)

    model.forward_all({t: pools[t][0][0] for t in tasks})  # cache the row plan before any tracing
    if variant == "fused-compile":
        loss_of = torch.compile(loss_of, mode=compile_mode)

    def step(i):
        xs = {t: pools[t][i % POOL][0] for t in tasks}
        ys = {t: pools[t][i % POOL][1] for t in tasks}
        with fast.autocast() if bf16 else torch.autocast("cpu", enabled=False):
            loss = loss_of(xs, ys)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model, step


def measure(variants, net, device, batch, steps, warmup, rounds, compile_mode="default") -> dict:
    """{variant: {"images_s": [per round], "peak": [FLOP/s per round], "peak_mib"} | {"error": text}}."""
    pools = synthetic_pool(net, batch, device)
    built, results = {}, {}
    for variant in variants:
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() if device.type == "cuda" else 0
        try:
            model, step = make_step(variant, net, device, pools, compile_mode)
            for i in range(max(1, warmup)):
                step(i)
            sync(device)
        except Exception as e:  # a variant that cannot run here (no compiler, no CUDA) is reported, not fatal
            results[variant] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"}
            continue
        built[variant] = (model, step)
        peak_mib = (torch.cuda.max_memory_allocated() - before) / 2**20 if device.type == "cuda" else None
        results[variant] = {"images_s": [], "peak": [], "peak_mib": peak_mib}
    names = list(built)
    for r in range(rounds):
        for variant in names[r % len(names):] + names[: r % len(names)]:
            results[variant]["peak"].append(matmul_rate(device, quick=True)[0])
            step = built[variant][1]
            sync(device)
            began = time.perf_counter()
            for i in range(steps):
                step(i)
            sync(device)
            results[variant]["images_s"].append(steps * batch * len(net.tasks) / (time.perf_counter() - began))
    built.clear()
    gc.collect()
    return results


def matmul_rate(device, quick: bool = False) -> tuple[float, str]:
    """FLOP/s of a large matrix product: bf16 8192^3 on CUDA, fp32 2048^3 (quick: 1024^3) on CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024 if quick else 2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(1 if quick else 3):
        a @ b
    sync(device)
    reps = 20 if device.type == "cuda" else 3
    began = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - began), f"{'bf16' if dtype == torch.bfloat16 else 'fp32'} {n}^3"


def machine(device) -> str:
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}{gpu}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "specs" / "cifar100_part.part"))
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--levels-scale", choices=["full", "small"], default="full",
                   help="small: every segment width / 16 (a CPU smoke run)")
    p.add_argument("--batches", default="16,64", help="per-task batch sizes, comma separated")
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant and round (a step = one batch "
                                                          "of every task)")
    p.add_argument("--rounds", type=int, default=7, help="rounds; the figures are medians over them")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="CPU threads (default: partc's, as `partc train` chooses)")
    p.add_argument("--variants", help=f"comma separated (default on CUDA: {','.join(CUDA_VARIANTS)}; "
                                      f"on CPU: {','.join(CPU_VARIANTS)})")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode of fused-compile (default, reduce-overhead, max-autotune-no-cudagraphs)")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    variants = args.variants.split(",") if args.variants else (CUDA_VARIANTS if device.type == "cuda"
                                                                 else CPU_VARIANTS)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # for every variant, the reference included (it only helps it)
    net = load_network(Path(args.spec), args.levels_scale)
    batches = [int(b) for b in args.batches.split(",")]
    layer_bytes = activation_bytes(net, {t: batches[0] for t in net.tasks})  # as `partc train` at that batch
    cpu = configure_cpu(args.threads, layer_bytes=layer_bytes) if device.type == "cpu" else None
    flops = sum(task_train_flops(net, t) for t in net.tasks) / len(net.tasks)  # per training image

    print(f"# train_speed: {net.name} ({args.levels_scale}), {len(net.tasks)} tasks, device {device}, "
          f"{args.rounds} rounds x {args.steps} steps per variant, order rotating")
    print(f"# machine: {machine(device)}; load average {os.getloadavg()[0]:.1f}")
    if cpu is not None:
        print(f"# threads: torch {torch.get_num_threads()} ({cpu.chosen_by}), interop {torch.get_num_interop_threads()}"
              f", {cpu.wait}")
    print(f"# model FLOPs per training image (mean task path, x3 forward): {flops / 1e9:.3f} GFLOP")
    print("| batch/task | variant | images/s, median (min..max) | vs reference | matmul TFLOP/s beside it | MFU "
          "| peak memory |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for batch in batches:
        results = measure(variants, net, device, batch, args.steps, args.warmup, args.rounds, args.compile_mode)
        reference = results.get("reference", {}).get("images_s")
        for variant, r in results.items():
            if "error" in r:
                print(f"| {batch} | {variant} | failed: {r['error']} | | | | |")
                continue
            ratio = (f"{statistics.median(r['images_s']) / statistics.median(reference):.2f}x" if reference else "-")
            mfu = [ips * flops / peak for ips, peak in zip(r["images_s"], r["peak"])]
            memory = f"{r['peak_mib']:.0f} MiB" if r["peak_mib"] is not None else "-"
            print(f"| {batch} | {variant} | {spread(r['images_s'], digits=1)} | {ratio} | {spread(r['peak'], 1e-12, 3)} | "
                  f"{spread(mfu, 100, 2)}% | {memory} |", flush=True)
    print(load_note("after"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
