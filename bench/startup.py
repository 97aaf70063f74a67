"""Start-up and memory of partc's commands: what each imports, how long it takes, its peak RSS.

    python3 bench/startup.py [--rounds 7] [--baseline DIR] [--no-train]

Commands, each a fresh process (`python -m partc ...`, from the tree it
belongs to), the floor being `python -c pass`:

  --help          `partc --help`
  check           `partc check specs/split_digits.part`
  train           `partc train specs/split_digits.part -q` (one round per --train-rounds: ~15 s each)

With --baseline DIR (another partc tree, e.g. `git archive main | tar -x -C DIR`)
every command also runs from there, beside this tree's, in the same round.
Rounds alternate the variants (the order rotates); a figure is the median
wall time over the rounds, with min..max. One more run of each command,
in-process under runpy with `sys.modules` read afterwards, says which
heavy packages it imported and its peak RSS (ru_maxrss of that process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.timing import load_note, spread  # noqa: E402

SPEC = ROOT / "specs" / "split_digits.part"
HEAVY = ("torch", "torch._dynamo", "networkx", "lark", "jinja2", "numpy", "sklearn", "scipy", "pandas", "onnx",
         "onnxruntime", "matplotlib")
CHILD = """
import json, resource, runpy, sys
sys.argv = ["partc", *sys.argv[1:]]
try:
    runpy.run_module("partc", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
heavy = [m for m in {heavy!r} if m in sys.modules]
rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sys.stderr.write("\\nSTARTUP " + json.dumps({{"heavy": heavy, "rss_mib": rss_mib}}) + "\\n")
"""


def commands(out: Path) -> dict[str, list[str]]:
    return {"--help": ["--help"], "check": ["check", str(SPEC)], "train": ["train", str(SPEC), "--out", str(out), "-q"]}


def environment(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tree)
    return env


def timed(argv: list[str], tree: Path) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=tree, env=environment(tree), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - began


def inspect(args: list[str], tree: Path) -> dict:
    """Which heavy packages `partc ARGS` imports and its peak RSS (run in-process by runpy)."""
    proc = subprocess.run([sys.executable, "-c", CHILD.format(heavy=HEAVY), *args], cwd=tree,
                          env=environment(tree), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=True)
    line = [x for x in proc.stderr.splitlines() if x.startswith("STARTUP ")][-1]
    return json.loads(line[len("STARTUP "):])


def row(name: str, tag: str | None, walls: list[float], seen: dict | None) -> str:
    """A table row: the floor (`seen` None) or a partc command with what it imported."""
    if seen is None:
        return f"| {name} | - | {spread(walls)} | - | - |"
    return f"| partc {name} | {tag} | {spread(walls)} | {seen['rss_mib']:.0f} | {', '.join(seen['heavy']) or 'none'} |"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--train-rounds", type=int, default=2)
    p.add_argument("--baseline", type=Path, help="another partc tree, run beside this one")
    p.add_argument("--no-train", action="store_true", help="leave out `partc train`")
    args = p.parse_args(argv)
    trees = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    names = ["--help", "check"] + ([] if args.no_train else ["train"])
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"# startup: {args.rounds} rounds ({args.train_rounds} for train), order rotating; trees: "
          + ", ".join(f"{k} = {v}" for k, v in trees.items()))
    print(f"# machine: {platform.platform()}, {cpus} CPUs, Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        variants = [("python -c pass", None, None)] + [(n, t, tree) for n in names for t, tree in trees.items()]
        walls: dict[tuple, list[float]] = {(n, t): [] for n, t, _ in variants}
        for r in range(args.rounds):
            for name, tag, tree in variants[r % len(variants):] + variants[: r % len(variants)]:
                if name == "train" and r >= args.train_rounds:
                    continue
                if tree is None:
                    walls[name, tag].append(timed(["-c", "pass"], ROOT))
                    continue
                out = Path(tmp) / f"run-{tag}-{r}"
                walls[name, tag].append(timed(["-m", "partc", *commands(out)[name]], tree))
        print("| command | tree | wall s, median (min..max) | peak RSS MiB | heavy packages imported |")
        print("|---|---|---:|---:|---|")
        for name, tag, tree in variants:
            seen = inspect(commands(Path(tmp) / f"inspect-{tag}")[name], tree) if tree is not None else None
            print(row(name, tag, walls[name, tag], seen), flush=True)
    print(load_note("after"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
