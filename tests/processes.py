"""Helpers for tests that start partc in a process of its own and kill it."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from partc.run import run_paths


def kill_at_first_checkpoint(victim: subprocess.Popen, run_dir: Path, timeout_s: float = 120) -> None:
    """SIGKILL `victim` as soon as RUN_DIR's first epoch checkpoint exists (mid-run, before it can finish)."""
    first = run_paths(run_dir)["checkpoints"] / "epoch_0001.pt"
    deadline = time.monotonic() + timeout_s
    while not first.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run finished before it could be killed"
