"""CPU threads and the OpenMP wait policy of a training process (partc.devices): chosen, respected, recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return {**env, **extra}


PROBE = ("import os, sys\n"
         "from partc.devices import configure_cpu\n"
         "cpu = configure_cpu(layer_bytes=float(sys.argv[1]))\n"
         "import torch\n"
         "print(cpu.threads, torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY'), '|', cpu.wait)")


def _probe(layer_bytes: float, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, str(layer_bytes)], cwd=ROOT, env=_clean_env(**env),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_wait_policy_is_set_before_torch_loads_unless_the_user_set_one():
    assert _probe(1024) == "1 1 PASSIVE | OMP_WAIT_POLICY=PASSIVE (set by partc)"
    assert _probe(1e9, GOMP_SPINCOUNT="1000").endswith("None | GOMP_SPINCOUNT=1000 (the user's)")
    assert _probe(1024, OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="2") == (
        "2 2 ACTIVE | OMP_WAIT_POLICY=ACTIVE (the user's)")


def test_partc_train_trains_a_network_of_small_layers_with_one_thread(tmp_path):
    """TINY's layers are small (11 KiB per task and call): one thread, recorded in run.json, unless asked."""
    spec = tmp_path / "tiny.part"
    spec.write_text(TINY.replace("epochs 3", "epochs 1"))
    for out, extra in (("default", []), ("two", ["--threads", "2"])):
        done = subprocess.run([sys.executable, "-m", "partc", "train", str(spec), "--out", str(tmp_path / out),
                               "--device", "cpu", "-q", *extra], cwd=ROOT, env=_clean_env(), capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "default" / "run.json").read_text())["threads"] == 1
    assert json.loads((tmp_path / "two" / "run.json").read_text())["threads"] == 2
