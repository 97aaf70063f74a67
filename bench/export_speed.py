"""Benchmark: export time, torch's exporter (before) against ONNX emitted straight from the IR (after).

    python3 bench/export_speed.py [--rounds 3] [--before-rev REV] [--no-cifar]

1. split_digits, a 1-epoch trained run (made in a temporary folder), its 5
   tasks, in one process, the variants taking turns round by round:
   - "torch.onnx": per task, `torch.onnx.export(dynamo=True)` of the task's fx
     module with its optimizer on (what `partc export` did up to 82b3d36),
     then the checks export makes today (check_model, weight audit, ONNX
     Runtime against torch at batch 1 and 3), the file written;
   - "IR emitter": `export_tasks`, what `partc export` does now;
   - "IR emitter, --fused": `export_fused`, one file for the 5 tasks.
   Every variant loads the run itself (checkpoint, compile). The first round
   of torch.onnx pays the exporter's one-off set-up in a process; the table
   shows the first round and the best.
2. `partc export RUN -o DIR` end to end (a subprocess: interpreter start,
   imports, load, 5 files), best of --rounds; beside it the interpreter
   start and the imports alone (torch, onnx, onnxruntime, partc's export
   stage), the floor of any `partc export`; with --before-rev, the same
   command from that revision of this repository (`git archive`); all
   alternated.
3. cifar100_part's task t0 (44M parameters, 176 MB), straight from the spec:
   random weights, which do not change the time. torch.onnx once, the IR
   emitter once (single rounds: each takes seconds to minutes on 2 cores).

torch.onnx needs onnxscript (`pip install onnxscript`), which partc itself
no longer needs; without it that column is skipped. Prints the machine and
its load average before and after.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BEFORE_REV = "82b3d36"  # the last commit exporting through torch.onnx


@contextlib.contextmanager
def quiet_exporter():
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def torch_onnx_export(source, out_dir: Path, tasks: list[str] | None = None) -> None:
    """The torch.onnx path, with the checks today's export makes: the 'before' variant."""
    import torch

    from partc.export.metadata import ModelInfo
    from partc.export.pipeline import _common, _verify_in_runtime
    from partc.export.source import load_source
    from partc.export.verify import audit_weights, check_onnx
    from partc.run import atomic_write_bytes

    src = load_source(source)
    tensors, params = src.tensors(), src.parameter_names()
    for name in tasks or list(src.net.tasks):
        stats = src.stats[name]
        info = ModelInfo.for_task(task=name, labels=stats["labels"], mean=stats["mean"], std=stats["std"],
                                  **_common(src, src.net.tasks[name].input, 64))
        module = src.model.task(name).eval()
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        with quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(module, (torch.randn(2, *info.input_shape),), None, dynamo=True, verbose=False,
                                        external_data=False, input_names=[info.input_name], output_names=["logits"],
                                        dynamic_shapes=({0: batch},), opset_version=18, optimize=True)
        model = program.model_proto
        for node in model.graph.node:  # the stack traces the exporter records (as 82b3d36 stripped them)
            del node.metadata_props[:]
        for key, value in info.to_metadata().items():
            model.metadata_props.add(key=key, value=value)
        check_onnx(model, name)
        audit_weights(model, src.net, [name], tensors, params, name)
        data = model.SerializeToString()
        diff = _verify_in_runtime(data, info, {"logits": module})["logits"]
        assert diff <= 1e-4, diff
        atomic_write_bytes(out_dir / f"{name}.onnx", data)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


IMPORTS = "import torch, onnx, onnxruntime, partc.compiler, partc.run, partc.export.pipeline"


def cli_seconds(tree: Path, source: Path | None, out: Path) -> float:
    """Wall time of `partc export SOURCE -o OUT` from `tree`; without a source, of its imports alone (the floor)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = ["-m", "partc", "export", str(source), "-o", str(out)] if source else ["-c", IMPORTS]
    start = time.perf_counter()
    subprocess.run([sys.executable, *command], env=env, check=True, stdout=subprocess.DEVNULL, cwd=tree)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before-rev", default=None, metavar="REV",
                        help=f"also time `partc export` from this revision (the torch exporter: {BEFORE_REV})")
    parser.add_argument("--no-cifar", action="store_true", help="skip cifar100_part")
    args = parser.parse_args()

    import torch

    import partc
    from partc.export import export_fused, export_tasks
    from tests.export_helpers import make_trained_run

    try:
        import onnxscript  # noqa: F401 - torch.onnx's dynamo exporter needs it
        have_torch_onnx = True
    except ImportError:
        have_torch_onnx = False
        print("onnxscript is not installed: torch.onnx is skipped (pip install onnxscript)")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; python {platform.python_version()}, "
          f"torch {torch.__version__}; load average at start {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="export_speed_"))
    atexit.register(shutil.rmtree, tmp, True)  # cifar100_part's files are gigabytes
    run_dir = make_trained_run(ROOT / "specs" / "split_digits.part", tmp / "run")

    variants = {"IR emitter": lambda out: export_tasks(run_dir, out),
                "IR emitter, --fused": lambda out: export_fused(run_dir, out)}
    if have_torch_onnx:
        variants = {"torch.onnx": lambda out: torch_onnx_export(run_dir, out), **variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for i, (name, fn) in enumerate(variants.items()):
            times[name].append(timed(lambda fn=fn, out=tmp / f"out_{r}_{i}": fn(out)))
    print("\nsplit_digits, 5 tasks, in process (load + export + checks), seconds per round")
    print("| variant | first round | best round | rounds |")
    print("|---|---:|---:|---|")
    for name, ts in times.items():
        print(f"| {name} | {ts[0]:.2f} | {min(ts):.2f} | {', '.join(f'{t:.2f}' for t in ts)} |")

    trees = {"now": ROOT}
    if args.before_rev:
        before = tmp / "before"
        before.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before_rev], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        trees = {f"at {args.before_rev} (torch.onnx)": before, **trees}
    commands = {name: (tree, run_dir) for name, tree in trees.items()}
    commands["now, imports only"] = (ROOT, None)
    cli: dict[str, list[float]] = {name: [] for name in commands}
    for r in range(args.rounds):
        for i, (name, (tree, source)) in enumerate(commands.items()):
            cli[name].append(cli_seconds(tree, source, tmp / f"cli_{r}_{i}"))
    print("\n`partc export RUN -o DIR` (split_digits, 5 tasks), wall seconds")
    print("| tree | best | rounds |")
    print("|---|---:|---|")
    for name, ts in cli.items():
        print(f"| {name} | {min(ts):.2f} | {', '.join(f'{t:.2f}' for t in ts)} |")

    if not args.no_cifar:
        spec = ROOT / "specs" / "cifar100_part.part"
        partc.load(spec)
        rows = {"IR emitter": lambda: export_tasks(spec, tmp / "cifar_ir", tasks=["t0"])}
        if have_torch_onnx:
            rows["torch.onnx"] = lambda: torch_onnx_export(spec, tmp / "cifar_torch", tasks=["t0"])
        (tmp / "cifar_torch").mkdir()
        print("\ncifar100_part t0 (44,000,778 parameters, random weights), in process, seconds")
        print("| variant | seconds |")
        print("|---|---:|")
        for name, fn in rows.items():
            print(f"| {name} | {timed(fn):.1f} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
