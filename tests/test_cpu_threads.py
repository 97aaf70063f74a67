"""CPU threads and the OpenMP wait policy of a training process (partc.devices): chosen, respected, recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from partc.devices import SMALL_LAYER_BYTES, choose_threads
from tests.train_specs import TINY

ROOT = Path(__file__).resolve().parent.parent
USER_SETTINGS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS", "LOCAL_WORLD_SIZE")


def test_threads_are_asked_for_else_the_users_else_one_for_small_layers_else_the_cpus(monkeypatch):
    for name in USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert choose_threads(3, layer_bytes=1) == (3, "--threads")
    assert choose_threads(cpus=4) == (4, "the 4 CPUs this process may use")
    assert choose_threads(cpus=4, layer_bytes=SMALL_LAYER_BYTES) == (4, "the 4 CPUs this process may use")
    assert choose_threads(cpus=4, layer_bytes=185 * 1024) == (1, "small layers (185 KiB per task and call < 256 KiB)")
    assert choose_threads(cpus=4, processes=2) == (2, "4 CPUs shared by 2 processes (LOCAL_WORLD_SIZE)")
    assert choose_threads(cpus=2, processes=4)[0] == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert choose_threads(cpus=8)[0] == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert choose_threads(cpus=8, layer_bytes=1) == (5, "OMP_NUM_THREADS")
    assert choose_threads(2, cpus=8) == (2, "--threads")  # the flag over the variable


def _train(tmp_path: Path, out: str, *extra: str, env: dict[str, str] | None = None) -> dict:
    """`python -m partc train` of TINY (1 epoch unless `extra` says) in a fresh process; its run.json."""
    spec = tmp_path / "tiny.part"
    spec.write_text(TINY.replace("epochs 3", "epochs 1"))
    clean = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    clean["PYTHONPATH"] = os.pathsep.join([str(ROOT), clean.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "partc", "train", str(spec), "--out", str(tmp_path / out),
                           "--device", "cpu", "-q", *extra], cwd=ROOT, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads((tmp_path / out / "run.json").read_text())["cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("threads")
    return tmp, {"default": _train(tmp, "default"),
                 "user": _train(tmp, "user", "--threads", "2", env={"GOMP_SPINCOUNT": "1000"})}


def test_partc_train_sets_its_defaults_before_torch_and_records_them(runs):
    _, cpu = runs  # TINY's layers are small: one thread
    assert cpu["default"] == {"threads": 1, "chosen_by": "small layers (11 KiB per task and call < 256 KiB)",
                              "wait": "OMP_WAIT_POLICY=PASSIVE (set by partc)"}


def test_what_the_user_set_is_kept(runs):
    _, cpu = runs
    assert cpu["user"] == {"threads": 2, "chosen_by": "--threads", "wait": "GOMP_SPINCOUNT=1000 (the user's)"}


def test_a_resumed_run_keeps_its_thread_count(runs):
    """The thread count changes a CPU run's sums: a run started with --threads 2 resumes with two threads
    (the default for this spec would be one)."""
    tmp, _ = runs
    resumed = _train(tmp, "user", "--resume", "--epochs", "2")
    assert resumed == {"threads": 2, "chosen_by": "the run's own (resumed)", "wait": "OMP_WAIT_POLICY=PASSIVE (set by partc)"}
