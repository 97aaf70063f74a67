"""Benchmark: training-time augmentation of one CIFAR-sized batch.

Times `TaskData.augment_batch`'s work on a (256, 3, 32, 32) float32 batch:
crop+flip alone (`augment_batch`) against crop+flip then the paper's random
perspective (`perspective_batch`, distortion 0.5, p=0.5), median of 20 runs
after 3 warm-ups, on the CPU (and on CUDA when there is one).

Run: python3 bench/augment_speed.py [--batch 256] [--runs 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from partc.data.augment import augment_batch, perspective_batch  # noqa: E402

FILL = [-1.9, -1.9, -1.7]  # CIFAR black after normalisation, roughly


def median_ms(fn, device: str, runs: int) -> float:
    times = []
    for i in range(runs + 3):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    print(f"machine: {platform.platform()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"batch ({args.batch}, 3, 32, 32) float32, median of {args.runs}\n")
    print("| device | crop+flip ms | crop+flip+perspective ms | perspective alone ms |")
    print("|---|---|---|---|")
    for device in devices:
        print(row(device, args.batch, args.runs))


def row(device: str, batch: int, runs: int) -> str:
    """One table row: the three timings on `device`."""
    x = torch.rand(batch, 3, 32, 32, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    base = median_ms(lambda: augment_batch(x, g, fill=FILL), device, runs)
    full = median_ms(lambda: perspective_batch(augment_batch(x, g, fill=FILL), g, 0.5, fill=FILL), device, runs)
    alone = median_ms(lambda: perspective_batch(x, g, 0.5, fill=FILL), device, runs)
    return f"| {device} | {base:.2f} | {full:.2f} | {alone:.2f} |"

if __name__ == "__main__":
    main()
