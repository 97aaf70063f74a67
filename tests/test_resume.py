"""Kill `python -m partc train` with SIGKILL mid-epoch, resume it, and get the uninterrupted run's weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from partc.run import load_checkpoint, run_paths
from tests.processes import kill_at_first_checkpoint
from tests.train_specs import TINY

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 6
SPEC = TINY.replace("samples=90", "samples=400").replace("samples=120", "samples=300").replace(
    "epochs 3", f"epochs {EPOCHS}")


def command(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "partc", "train", str(spec), "--out", str(out), "--device", "cpu",
            "--threads", "1", "-q", *extra]


def environment() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    spec = tmp_path / "tiny.part"
    spec.write_text(SPEC)
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    # The uninterrupted run goes on beside the one we kill (two CPUs here).
    reference = subprocess.Popen(command(spec, straight), cwd=ROOT, env=environment(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = subprocess.Popen(command(spec, killed), cwd=ROOT, env=environment(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_at_first_checkpoint(victim, killed)

    checkpoints = run_paths(killed)["checkpoints"]
    epoch_at_kill = load_checkpoint(run_paths(killed)["last"])["epoch"]
    assert 1 <= epoch_at_kill < EPOCHS
    for f in checkpoints.glob("*.pt"):  # every checkpoint file there is complete
        assert load_checkpoint(f)["format"] == "partc-checkpoint/1"

    done = subprocess.run(command(spec, killed, "--resume"), cwd=ROOT, env=environment(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert reference.wait(timeout=120) == 0, reference.stderr.read().decode()

    a = load_checkpoint(run_paths(straight)["last"])
    b = load_checkpoint(run_paths(killed)["last"])
    assert a["epoch"] == b["epoch"] == EPOCHS
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert not [p.name for p in checkpoints.iterdir() if p.name.startswith(".") or not p.name.endswith(".pt")]
    assert run_paths(killed)["results"].read_text() == run_paths(straight)["results"].read_text()
