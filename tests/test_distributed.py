"""`partc train` under torchrun: 2 processes (gloo, CPU) train the run 1 process trains.

The processes are started by torchrun itself (`python -m torch.distributed.run`, loopback rendezvous on
a free port) or by `partc train --nproc 2`, which runs torchrun's launcher; each test kills what it
started in `finally`. Checked: the weights of 2 processes equal 1 process's (fused and interleaved, a
spec without BatchNorm), metrics.jsonl has one row per task, split and epoch, evaluation figures equal
a single-process evaluation to the bit, a SIGKILLed rank under `--max-restarts` ends with the
uninterrupted run's weights, a 2-process run resumes on 1 process, and bad input (a batch the world
size does not divide, ranks with different specs, an unreachable rendezvous) stops every rank with
exit 2 before the run directory exists. `partc extend --nproc 2` keeps the old routes bit-identical and
trains the new task as one process does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import partc
from partc.cli import build_parser
from partc.data.augment import augment_batch, perspective_batch
from partc.errors import TrainError
from partc.run import load_checkpoint, lock_run, read_info, read_metrics, run_paths
from partc.train import train
from partc.train.cli import worker_argv
from partc.train.distributed import World

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 3
TIMEOUT_S = 120

# No BatchNorm or dropout (nothing couples rows or draws per rank); augmentation on a, a sampling ratio
# and a loss weight on b; c has 700 test samples, two evaluation batches of 512 to share out; segment 3
# of every level is on no route (DDP must not wait for its gradients).
SPEC = f"""network dist {{
  input img: float[2, 8, 8]
  seed 3
  segment blk(c) {{ conv(c, k=3, pad=1); relu }}
  level l1 = 4 x blk(6)
  level l2 = 4 x blk(6) residual then maxpool(2)
  level l3 = 4 x blk(8) then avgpool
  task a {{ data synthetic(classes=3, samples=150, augment=true) path l1[0, 1] l2[0, 1] l3[0, 1] }}
  task b {{ data synthetic(classes=2, samples=100) path l1[1, 2] l2[1, 2] l3[1, 2] sampling 2 weight 0.5 }}
  task c {{ data synthetic(classes=4, samples=1400, test=0.5, limit=120) path l1[2] l2[0, 2] l3[2] }}
  train {{ epochs {EPOCHS}; batch 8; optimizer adam(lr=0.01) }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               **extra)
    return env


def torchrun(*args: str, restarts: int = 0) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--max-restarts", str(restarts),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "-m", "partc", *args]


def partc_train(spec: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(spec), "--out", str(out), "--device", "cpu", "-q", *extra]


def start(command: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=environment(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    """Exit code and stderr of `process`; it and its workers are killed if still running after TIMEOUT_S."""
    try:
        _, err = process.communicate(timeout=TIMEOUT_S)
        return process.returncode, err
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run(command: list[str], **env: str) -> tuple[int, str]:
    return finish(start(command, **env))


def weights(run_dir: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return load_checkpoint(run_paths(run_dir)["checkpoints"] / name)["model"]


def assert_close(a: dict, b: dict, rel: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).norm() <= rel * a[k].norm() + 1e-12, f"{k} differs by more than {rel} relative"


def assert_one_row_each(run_dir: Path, epochs: int) -> None:
    rows, problems = read_metrics(run_dir)
    assert not problems
    keys = [(r["epoch"], r["task"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys)) == epochs * 3 * 3  # tasks a, b, c; train, val, test


@pytest.fixture(scope="session")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dist") / "dist.part"
    path.write_text(SPEC, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def one_process(spec, tmp_path_factory) -> dict[str, Path]:
    """The reference: each mode trained by one process (this one)."""
    base = tmp_path_factory.mktemp("one")
    runs, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 processes has (OMP_NUM_THREADS=1), and quick on a shared machine
    try:
        for mode in ("fused", "interleaved"):
            train(partc.load(spec), base / mode, device="cpu", mode=mode, quiet=True)
            runs[mode] = base / mode
    finally:
        torch.set_num_threads(threads)
    return runs


@pytest.fixture(scope="session")
def fused_two(spec, tmp_path_factory) -> Path:
    """Fused mode on 2 processes started by torchrun, uninterrupted."""
    out = tmp_path_factory.mktemp("two") / "fused"
    code, err = run(torchrun(*partc_train(spec, out)))
    assert code == 0, err
    return out


def test_two_processes_fused_equal_one_process(fused_two, one_process):
    assert_close(weights(one_process["fused"]), weights(fused_two))
    assert_one_row_each(fused_two, EPOCHS)
    info, _ = read_info(fused_two)
    assert info["world_size"] == 2 and info["task_batch"] == {"a": 8, "b": 16, "c": 8}  # the global batches
    one, _ = read_metrics(one_process["fused"])
    two, _ = read_metrics(fused_two)
    assert [r["samples"] for r in one] == [r["samples"] for r in two]  # train rows count the global batches


def test_two_processes_interleaved_then_one_process_resumes(spec, one_process, tmp_path):
    """`partc train --nproc 2` (torchrun's launcher) for all but the last epoch, then --resume on 1 process."""
    out = tmp_path / "interleaved"
    code, err = run([sys.executable, "-m", "partc", *partc_train(spec, out, "--mode", "interleaved", "--nproc", "2",
                                                                 "--epochs", str(EPOCHS - 1))])
    assert code == 0, err
    done = f"epoch_{EPOCHS - 1:04d}.pt"
    assert_close(weights(one_process["interleaved"], done), weights(out, done))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(partc.load(spec), out, device="cpu", resume=True, epochs=EPOCHS, quiet=True)
    finally:
        torch.set_num_threads(threads)
    assert_close(weights(one_process["interleaved"]), weights(out))
    assert_one_row_each(out, EPOCHS)
    assert read_info(out)[0]["world_size"] == 1


def test_evaluation_equals_a_single_process_evaluation_to_the_bit(spec, fused_two):
    """The val/test rows 2 processes wrote are what one process computes from the same checkpoint."""
    from partc.data.load import load_all
    from partc.train.config import resolve_config
    from partc.train.device import Runtime
    from partc.train.session import Trainer

    net = partc.load(spec)
    trainer = Trainer(net, resolve_config(net), Runtime(torch.device("cpu")), load_all(net))
    trainer.model.load_state_dict(weights(fused_two))
    rows = {(r["task"], r["split"]): r for r in read_metrics(fused_two)[0] if r["epoch"] == EPOCHS}
    assert trainer.eval_data["c", "test"][0].shape[0] > 512  # shared out as two batches
    for key, (x, y) in trainer.eval_data.items():
        want = trainer.evaluate_one(key, x, y)
        assert {k: rows[key][k] for k in want} == want, key


def test_a_killed_rank_is_restarted_by_torchrun_and_ends_with_the_uninterrupted_weights(spec, fused_two, tmp_path):
    out = tmp_path / "killed"
    launcher = start(torchrun(*partc_train(spec, out), restarts=1))
    try:
        first = run_paths(out)["checkpoints"] / "epoch_0001.pt"
        deadline = time.monotonic() + TIMEOUT_S
        while not first.exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        victim = next(pid for pid in _children(launcher.pid) if _rank_of(pid) == 1)
        os.kill(victim, signal.SIGKILL)
        killed_at = load_checkpoint(run_paths(out)["last"])["epoch"]
        code, err = finish(launcher)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert 1 <= killed_at < EPOCHS, "the run ended before a rank could be killed"
    assert code == 0, err
    assert "closing signal SIGTERM" in err  # torchrun stopped the group and started it again
    a, b = weights(fused_two), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert_one_row_each(out, EPOCHS)
    tasks = lambda run_dir: json.loads(run_paths(run_dir)["results"].read_text())["tasks"]  # noqa: E731
    assert tasks(out) == tasks(fused_two)


def _children(pid: int) -> list[int]:
    return [int(k) for task in Path(f"/proc/{pid}/task").iterdir() for k in (task / "children").read_text().split()]


def _rank_of(pid: int) -> int | None:
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if entry.startswith(b"RANK="):
            return int(entry[5:])
    return None


# ---- bad input: every rank stops with exit 2, nothing written --------------------------------------

def test_a_world_size_that_does_not_divide_a_batch_stops_every_rank(spec, tmp_path):
    odd = tmp_path / "odd.part"
    odd.write_text(SPEC.replace("batch 8;", "batch 6;").replace("sampling 2", "sampling 1.5"), encoding="utf-8")
    out = tmp_path / "run"
    code, err = run([sys.executable, "-m", "partc", *partc_train(odd, out, "--nproc", "2")])
    assert code == 2, err  # the launcher returns 2 only when every process exited with 2
    assert "task 'b' has a batch of 9 (batch 6 x sampling 1.5), which 2 processes cannot share equally" in err
    assert err.count("cannot share equally") == 1  # rank 0 says it for all
    assert "Traceback" not in err and not out.exists()


def test_ranks_with_different_specs_stop_before_writing(spec, tmp_path):
    other = tmp_path / "other.part"
    other.write_text(SPEC.replace("lr=0.01", "lr=0.02"), encoding="utf-8")
    out, port = tmp_path / "run", str(free_port())
    ranks = [start([sys.executable, "-m", "partc", *partc_train(path, out, "--dist-timeout", "60")],
                   RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
             for rank, path in enumerate([spec, other])]
    results = [finish(p) for p in ranks]
    assert [code for code, _ in results] == [2, 2], results
    assert "rank 1 has another spec hash than rank 0" in results[0][1]
    assert not out.exists()


def test_a_nan_loss_and_a_held_lock_stop_every_rank_with_one_message(tmp_path):
    """Rank 0 records the stop (run.json, results) before any rank exits; a held lock stops every rank."""
    diverging = tmp_path / "nan.part"
    diverging.write_text(SPEC.replace("adam(lr=0.01)", "sgd(lr=1e30)"), encoding="utf-8")
    out = tmp_path / "run"
    code, err = run([sys.executable, "-m", "partc", *partc_train(diverging, out, "--nproc", "2")])
    assert code == 2 and err.count("error: training stopped: the train loss of task") == 1, err
    info, problems = read_info(out)
    assert not problems and info["world_size"] == 2 and info["stopped"]["kept_epoch"] == 0
    assert json.loads(run_paths(out)["results"].read_text())["stopped"] == info["stopped"]["reason"]
    with lock_run(out):
        code, err = run([sys.executable, "-m", "partc", *partc_train(diverging, out, "--resume", "--nproc", "2")])
    assert code == 2 and err.count(f"run directory '{out}' is in use by another partc process (pid ") == 1, err
    assert "Traceback" not in err and read_info(out)[0] == info


def test_an_unreachable_rendezvous_is_a_clear_error(spec, tmp_path):
    out = tmp_path / "run"
    code, err = run([sys.executable, "-m", "partc", *partc_train(spec, out, "--dist-timeout", "1")],
                    RANK="1", LOCAL_RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    assert code == 2, err
    assert "error: rank 1 of 2 could not join the others at 127.0.0.1:" in err and "within 1 s" in err
    assert "Traceback" not in err and not out.exists()


# ---- without processes -----------------------------------------------------------------------------

def test_batches_the_world_does_not_divide_are_refused_with_the_sizes_that_would_do():
    world = World(rank=1, size=3)
    with pytest.raises(TrainError) as e:
        world.check_batches({"a": 8, "b": 12}, {"a": "batch 8", "b": "batch 8 x sampling 1.5"})
    assert "task 'a' has a batch of 8, which 3 processes cannot share equally" in e.value.message
    assert "divide every task's batch: 2, 4" in e.value.hint
    world.check_batches({"a": 9, "b": 12}, {"a": "batch 9", "b": "batch 12"})
    assert world.share(9) == slice(3, 6)


def test_nproc_launches_the_same_command_line():
    parser = build_parser()
    for argv in (["train", "s.part", "--out", "r", "--resume", "--epochs", "3", "--mode", "interleaved", "-q",
                  "--nproc", "2", "--threads", "1", "--dist-timeout", "30"],
                 ["extend", "base", "grown.part", "--out", "new", "--no-freeze", "--nproc", "4"]):
        args = parser.parse_args(argv)
        again = parser.parse_args(worker_argv(args))
        strip = lambda ns: {k: v for k, v in vars(ns).items() if k not in ("nproc", "func", "parser")}  # noqa: E731
        assert again.nproc is None and strip(again) == strip(args)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_shares_of_a_batch_are_augmented_as_the_whole_batch(rows, parts, seed):
    """Each process augments its rows of a batch with the whole batch's draws: the same images (CPU)."""
    total = rows * parts
    x = torch.rand(total, 3, 10, 10, generator=torch.Generator().manual_seed(seed))

    def augmented(batch, generator, part=None):
        out = augment_batch(batch, generator, fill=[0.5, 0.0, 1.0], part=part)
        return perspective_batch(out, generator, 0.5, fill=[0.5, 0.0, 1.0], part=part)

    whole = augmented(x, torch.Generator().manual_seed(seed))
    pieces = [augmented(x[i * rows:(i + 1) * rows], torch.Generator().manual_seed(seed), (i * rows, total))
              for i in range(parts)]
    assert torch.equal(torch.cat(pieces), whole)



# ---- GPUs (skipped without them) -------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (NCCL, one per process)")
@pytest.mark.parametrize("mode", ["fused", "interleaved"])
def test_two_gpus_train_one_run_over_nccl(spec, tmp_path, mode):
    out = tmp_path / mode
    code, err = run(torchrun("train", str(spec), "--out", str(out), "--device", "cuda", "-q", "--mode", mode))
    assert code == 0, err
    assert read_info(out)[0]["world_size"] == 2 and read_info(out)[0]["device"] == "cuda:0"
    assert_one_row_each(out, EPOCHS)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torchrun_with_one_process_is_a_plain_run(spec, tmp_path):
    out = tmp_path / "one"
    command = torchrun("train", str(spec), "--out", str(out), "--device", "cuda", "-q")
    command[command.index("--nproc-per-node") + 1] = "1"
    code, err = run(command)
    assert code == 0, err
    assert read_info(out)[0]["world_size"] == 1
    assert_one_row_each(out, EPOCHS)


def test_extend_on_two_processes_keeps_old_tasks_and_equals_one_process(spec, one_process, tmp_path):
    """`partc extend --nproc 2`: the old routes stay bit-identical, the new task trains as on 1 process."""
    from partc.train.extend import extend

    grown = tmp_path / "grown.part"
    grown.write_text(SPEC.replace("  train {", "  task d { data synthetic(classes=2, samples=100, seed=5) "
                                               "path l1[3] l2[0, 3] l3[3] }\n  train {"), encoding="utf-8")
    base = one_process["fused"]
    code, err = run([sys.executable, "-m", "partc", "extend", str(base), str(grown), "--out", str(tmp_path / "two"),
                     "--device", "cpu", "-q", "--nproc", "2"])
    assert code == 0, err
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        extend(base, grown, tmp_path / "one", device="cpu", quiet=True)
    finally:
        torch.set_num_threads(threads)
    old, two = weights(base), weights(tmp_path / "two")
    on_old_routes = [k for k in old if not k.startswith(("levels.l1.3.", "levels.l2.3.", "levels.l3.3."))]
    assert len(on_old_routes) < len(old)
    for k in on_old_routes:  # segment 3 of every level was on no route: d trains it
        assert torch.equal(old[k], two[k]), k
    assert_close(weights(tmp_path / "one"), two)
    rows, problems = read_metrics(tmp_path / "two")
    assert not problems and {r["task"] for r in rows if r["split"] == "train"} == {"d"}  # old tasks: evaluated only
