"""Kill a training run at every write step, recover it as a user would, and compare with an uninterrupted run.

Run as `python -m tests.kill_steps WORKDIR` (tests/test_run_dir.py does): a
fresh process that imports torch and partc once and computes nothing, then
forks one child per scenario, so each costs a fork, not an interpreter
start. A child run with PARTC_TEST_KILL_AT=k SIGKILLs itself at its k-th
write step (`partc.run.write_step`); the next child recovers the directory
with `partc train --resume`, or, when that finds no run to resume, a plain
`partc train`, exactly as a user would. Prints one JSON object: the number
of write steps, and per step what was found after the kill and the
recovery.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

import partc.compiler  # noqa: F401 - everything a child needs is imported here once, before the forks
import partc.data.load  # noqa: F401
import partc.train.runner  # noqa: F401
from partc.cli import main
from partc.run import load_checkpoint, run_paths, run_state, temp_files
from partc.spec import loads

SPEC = """network kills {
  input x: float[2, 6, 6]
  seed 5
  level l1 = 3 x conv(4, k=3, pad=1) then relu
  level l2 = 3 x conv(4, k=3, pad=1) then relu, avgpool
  task a { data synthetic(classes=3, samples=36) path l1[0, 1] l2[0, 1] }
  task b { data synthetic(classes=2, samples=24) path l1[1, 2] l2[1, 2] }
  train { epochs 1; batch 8; optimizer adam(lr=0.01) }
}
"""


def in_child(argv: list[str], env: dict[str, str]) -> int:
    """`partc ARGV` in a forked child with `env` added; its exit status, or -signal when killed."""
    pid = os.fork()
    if pid == 0:
        os.environ.update(env)
        torch.set_num_threads(1)
        with open(os.devnull, "w") as quiet:
            os.dup2(quiet.fileno(), 1)
            os.dup2(quiet.fileno(), 2)
        try:
            code = main(argv)
        except BaseException:  # noqa: BLE001 - a traceback is a bug the parent reports as status 99
            code = 99
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def fingerprint(run: Path) -> dict:
    """What must equal the uninterrupted run's: the final weights and the results (timings left out)."""
    state = load_checkpoint(run_paths(run)["last"])
    weights = hashlib.sha256(b"".join(t.numpy().tobytes() for _, t in sorted(state["model"].items()))).hexdigest()
    results = json.loads(run_paths(run)["results"].read_text())
    return {"epoch": state["epoch"], "weights": weights, "results": results}


def run_scenarios(workdir: Path) -> dict:
    torch.set_num_threads(1)  # no OpenMP pool in the parent: a forked child starts its own
    loads(SPEC)  # the parser's tables, loaded once
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # its first use imports torch._dynamo: seconds
    spec = workdir / "kills.part"
    spec.write_text(SPEC)
    log = workdir / "steps.log"
    train = ["train", str(spec), "-q", "--device", "cpu", "--threads", "1", "--out"]
    assert in_child(train + [str(workdir / "straight")], {"PARTC_TEST_WRITE_LOG": str(log)}) == 0
    steps = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    reference = fingerprint(workdir / "straight")
    report = {"steps": steps, "scenarios": []}
    for k in range(1, len(steps) + 1):
        run = workdir / f"killed_{k}"
        killed = in_child(train + [str(run)], {"PARTC_TEST_KILL_AT": str(k)})
        after_kill = run_state(run)
        resumed = in_child(train + [str(run), "--resume"], {})
        fresh = None
        if resumed == 2:  # "not a partc run": a kill before anything but the folder was written
            fresh = in_child(train + [str(run)], {})
        leftovers = sorted(p.name for p in temp_files(run)) + ([".lock"] if (run / ".lock").exists() else [])
        same = run_state(run) == "run" and fingerprint(run) == reference
        report["scenarios"].append({"step": k, "name": steps[k - 1], "killed": killed, "state": after_kill,
                                    "resume": resumed, "fresh": fresh, "same": same, "leftovers": leftovers})
    return report


if __name__ == "__main__":
    print(json.dumps(run_scenarios(Path(sys.argv[1]))))
