"""The run directory under hostile conditions: kills at every write step, a second process, broken file systems,
damaged checkpoints and run files, a loss that turns NaN. Each ends in a clean error or a correct run."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import partc
import partc.run
from partc.cli import main
from partc.data.load import load_all
from partc.errors import CheckpointError, RunDirError, TrainError
from partc.run import (
    load_checkpoint,
    load_trained_model,
    lock_run,
    read_info,
    read_metrics,
    read_results,
    run_paths,
    run_state,
    save_checkpoint,
)
from partc.train import train
from tests.kill_steps import SPEC  # two tasks on two levels, one epoch

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    net = partc.loads(SPEC, "kills.part")
    return net, load_all(net)


def run(out: Path, net, data, **kw):
    kw.setdefault("device", "cpu")
    return train(net, out, quiet=True, data=data, **kw)


def files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    return code, err


# ---- kills ----

def test_a_kill_at_any_write_step_leaves_a_run_that_resumes_or_restarts_to_the_same_result(tmp_path):
    """tests/kill_steps.py: SIGKILL at each of a run's write steps, then --resume (or a fresh start)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "tests.kill_steps", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    names = report["steps"]
    assert names[:7] == ["write spec.part", "rename spec.part", "write init.pt", "rename init.pt", "link last.pt",
                         "write run.json", "rename run.json"], "run.json is written last when a run starts"
    assert {"append metrics.jsonl", "write epoch_0001.pt", "prune checkpoints", "rename results.md"} <= set(names)
    for s in report["scenarios"]:
        assert s["killed"] == -9, s
        assert s["same"], f"after a kill at step {s['step']} ({s['name']}): {s}"
        assert s["leftovers"] == [], f"temp files or the lock left after recovering from step {s['step']}: {s}"
        if s["state"] == "unfinished":  # a start-up cut short: --resume starts it again
            assert s["resume"] == 0 and s["fresh"] is None, s


def test_an_unfinished_start_up_is_cleared_and_started_again(tmp_path, tiny, capsys):
    net, data = tiny
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "spec.part").write_text("half")
    (out / "checkpoints" / ".init.pt.x1y2.tmp").write_bytes(b"cut")
    (out / ".lock").write_text("12345\n")  # a killed holder's: the kernel dropped its flock
    assert run_state(out) == "unfinished"
    train(net, out, data=data, device="cpu")
    assert "start-up was cut short" in capsys.readouterr().err
    assert run_state(out) == "run" and not (out / ".lock").exists()
    assert (out / "spec.part").read_text() == net.source
    assert not [p for p in out.rglob(".*")], "temp files and the lock are gone"
    fresh = tmp_path / "fresh"
    train(net, fresh, data=data, device="cpu")  # its own lock file alone is no cut-short start-up
    assert "cut short" not in capsys.readouterr().err


# ---- the lock ----

def test_one_process_at_a_time_writes_a_run_directory(tmp_path, tiny, capsys):
    net, data = tiny
    out = tmp_path / "run"
    with lock_run(out):  # another partc process is training there (a second open file: flock conflicts)
        with pytest.raises(RunDirError, match=rf"is in use by another partc process \(pid {os.getpid()}\)"):
            run(out, net, data)
        assert [p.name for p in out.iterdir()] == [".lock"]  # the refused run wrote nothing
        spec = tmp_path / "kills.part"
        spec.write_text(SPEC)
        code, err = cli(["train", str(spec), "--out", str(out), "--resume", "-q", "--device", "cpu"], capsys)
        assert code == 2 and f"in use by another partc process (pid {os.getpid()})" in err
    assert not (out / ".lock").exists()  # released: removed
    run(out, net, data, epochs=1)
    assert run_state(out) == "run" and not (out / ".lock").exists()


def test_the_lock_api(tmp_path):
    lock = lock_run(tmp_path / "new" / "run")  # creates the folders
    assert (tmp_path / "new" / "run" / ".lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(RunDirError) as e:
        lock_run(tmp_path / "new" / "run")
    assert "wait for it to finish" in e.value.hint
    lock.release()
    lock.release()  # twice is harmless
    with lock_run(tmp_path / "new" / "run") as again:
        assert again.fd is not None


# ---- file systems ----

def test_out_under_a_file_names_the_path_and_the_cause(tmp_path, tiny, capsys):
    net, data = tiny
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunDirError) as e:
        run(tmp_path / "afile" / "run", net, data)
    assert f"'{tmp_path / 'afile' / 'run'}'" in e.value.message and "(ENOTDIR)" in e.value.message
    assert "a file stands where a folder is needed" in e.value.hint
    with pytest.raises(TrainError, match="is a file, not a folder"):
        run(tmp_path / "afile", net, data)


@pytest.mark.parametrize("code, hint", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only"),
                                        (errno.EACCES, "no permission")])
def test_a_failing_file_system_is_a_clean_error_and_leaves_a_restartable_folder(tmp_path, tiny, monkeypatch,
                                                                                  code, hint):
    net, data = tiny
    out = tmp_path / "run"
    real = partc.run.write_step

    def failing(what):
        real(what)
        if what == "write init.pt":  # the disk fills (or turns read-only) during start-up
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(partc.run, "write_step", failing)
    with pytest.raises(RunDirError) as e:
        run(out, net, data)
    assert e.value.message == f"cannot write '{run_paths(out)['init']}': {os.strerror(code)} ({errno.errorcode[code]})"
    assert hint in e.value.hint
    assert not out.exists(), "a failed start-up into a new folder leaves nothing behind"
    monkeypatch.setattr(partc.run, "write_step", real)
    run(out, net, data, epochs=1)  # the disk has room again: the run starts
    assert run_state(out) == "run"


def test_temp_files_are_cleaned_when_a_run_resumes(tmp_path, tiny):
    net, data = tiny
    out = tmp_path / "run"
    run(out, net, data, epochs=1)
    planted = [out / ".run.json.k3j2.tmp", out / ".metrics.jsonl.a1.tmp", out / "checkpoints" / ".epoch_0002.pt.q.tmp",
               out / "checkpoints" / ".last.pt.link.tmp"]
    for p in planted:
        p.write_bytes(b"left by a kill")
    run(out, net, data, resume=True, epochs=2)
    assert not [p for p in planted if p.exists()]
    assert not [p for p in out.rglob(".*")]
    assert oct(run_paths(out)["results"].stat().st_mode & 0o077) != "0o0", "results read like any file (not 0600)"


# ---- what the run records ----

def test_a_comment_does_not_block_resume_but_a_change_of_meaning_does(tmp_path, tiny):
    net, data = tiny
    out = tmp_path / "run"
    run(out, net, data, epochs=1)
    commented = partc.loads("# retrained on Tuesday\n" + SPEC.replace("  seed 5\n", "  seed 5   // the draw\n\n"))
    assert commented.spec_hash == net.spec_hash and commented.source_hash != net.source_hash
    run(out, commented, data, resume=True, epochs=2)
    assert load_checkpoint(run_paths(out)["last"])["epoch"] == 2
    changed = partc.loads(SPEC.replace("lr=0.01", "lr=0.02"))
    with pytest.raises(CheckpointError, match="was trained from another spec"):
        run(out, changed, data, resume=True, epochs=3)


def test_threads_are_recorded_and_a_resume_with_others_says_it_is_not_exact(tmp_path, tiny, capsys):
    net, data = tiny
    out = tmp_path / "run"
    run(out, net, data, epochs=1, threads=1)
    assert json.loads(run_paths(out)["info"].read_text())["threads"] == 1
    torch.set_num_threads(2)
    train(net, out, data=data, device="cpu", resume=True, epochs=2)  # no --threads: the run's own count
    assert torch.get_num_threads() == 1 and "bit-identical" not in capsys.readouterr().err
    train(net, out, data=data, device="cpu", resume=True, epochs=3, threads=2, quiet=True)  # warned even with -q
    err = capsys.readouterr().err
    assert "will not be bit-identical" in err and "it trained with 1 CPU thread(s), this resume uses 2" in err
    assert json.loads(run_paths(out)["info"].read_text())["threads"] == 2


def test_run_json_agrees_with_itself_after_epochs_is_raised(tmp_path, tiny):
    net, data = tiny
    out = tmp_path / "run"
    run(out, net, data, epochs=1)
    run(out, net, data, resume=True, epochs=3)
    info = json.loads(run_paths(out)["info"].read_text())
    assert info["epochs"] == info["config"]["epochs"] == 3


# ---- damaged checkpoints ----

@pytest.fixture
def trained(tmp_path, tiny):
    net, data = tiny
    out = tmp_path / "run"
    run(out, net, data, epochs=1)
    return out


def _replace_last(out: Path, state=None, data: bytes | None = None) -> None:
    last = run_paths(out)["last"]
    last.unlink()  # a hard link to epoch_0001.pt: break it first
    if data is not None:
        last.write_bytes(data)
    else:
        save_checkpoint(last, state)


def _refused_and_untouched(out: Path, net, data, match: str) -> None:
    before = files(out)
    with pytest.raises(CheckpointError, match=match):
        run(out, net, data, resume=True, epochs=2)
    assert files(out) == before, "a refused resume rewrites nothing (run.json included)"


def test_a_zero_byte_checkpoint_is_a_clean_error_everywhere(trained, tiny, capsys, tmp_path):
    net, data = tiny
    _replace_last(trained, data=b"")
    _refused_and_untouched(trained, net, data, "is empty")
    with pytest.raises(CheckpointError, match="is empty"):
        load_trained_model(trained)
    code, err = cli(["export", str(trained), "-o", str(tmp_path / "export")], capsys)
    assert code == 2 and "last.pt' is empty (0 bytes)" in err


@pytest.mark.parametrize("drop", ["config", "epoch", "optimizer", "rng", "model"])
def test_a_checkpoint_without_an_entry_is_refused(trained, tiny, drop):
    net, data = tiny
    state = load_checkpoint(run_paths(trained)["last"])
    _replace_last(trained, {k: v for k, v in state.items() if k not in (drop, "format")})
    _refused_and_untouched(trained, net, data, f"has no '{drop}' entry")


def test_damaged_entries_are_refused_before_anything_is_written(trained, tiny):
    net, data = tiny
    good = {k: v for k, v in load_checkpoint(run_paths(trained)["last"]).items() if k != "format"}
    optimizer = load_checkpoint(run_paths(trained)["last"])["optimizer"]
    for moment in optimizer["state"].values():
        moment["exp_avg"] = torch.zeros(3)  # the wrong shape: torch's own load_state_dict accepts it
    for damaged, match in [({"optimizer": optimizer}, r"optimizer state does not fit this run \(ValueError: 'exp_avg'"),
                           ({"rng": {**good["rng"], "numpy": "garbage"}}, "random generator state is damaged"),
                           ({"config": {"epochs": "many"}}, "training settings are damaged")]:
        _replace_last(trained, {**good, **damaged})
        _refused_and_untouched(trained, net, data, match)


@pytest.mark.parametrize("splits", [5, "by sample", {"digests": [1, 2]}])
def test_a_damaged_splits_record_is_named_as_damaged_not_as_an_old_run(trained, tiny, splits, capsys, tmp_path):
    net, data = tiny
    info = json.loads(run_paths(trained)["info"].read_text())
    run_paths(trained)["info"].write_text(json.dumps({**info, "splits": splits}))
    _refused_and_untouched(trained, net, data, "run.json has a damaged 'splits' entry")
    code, err = cli(["report", str(trained), "-o", str(tmp_path / "report")], capsys)
    assert code == 0 and "damaged 'splits' entry" in err and "before partc split data by sample" not in err


def test_a_state_dict_error_names_the_key(trained, tiny):
    net, data = tiny
    state = {k: v for k, v in load_checkpoint(run_paths(trained)["last"]).items() if k != "format"}
    key = next(k for k in state["model"] if k.endswith("weight"))
    state["model"][key] = torch.zeros(1)
    _replace_last(trained, state)
    with pytest.raises(CheckpointError) as e:
        load_trained_model(trained)
    assert f"size mismatch for {key}" in e.value.message
    _refused_and_untouched(trained, net, data, f"size mismatch for {key}")


# ---- a loss that is not finite ----

def test_a_nan_loss_stops_training_keeps_the_last_finite_checkpoint_and_the_report_renders(tmp_path, capsys):
    net = partc.loads(SPEC.replace("adam(lr=0.01)", "sgd(lr=1e30)"), "nan.part")
    data = load_all(net)
    out = tmp_path / "run"
    with pytest.raises(TrainError) as e:
        run(out, net, data, epochs=2)
    assert e.value.message.startswith("training stopped: the train loss of task 'a' was")
    assert "in epoch 1" in e.value.message and "the run keeps epoch 0" in e.value.hint
    assert load_checkpoint(run_paths(out)["last"])["epoch"] == 0
    info = json.loads(run_paths(out)["info"].read_text())  # json: bare NaN would not parse here
    assert info["stopped"]["epoch"] == 1 and info["stopped"]["kept_epoch"] == 0
    results = json.loads(run_paths(out)["results"].read_text(), parse_constant=pytest.fail)
    assert results["epoch"] == 0 and results["stopped"] and results["mean_top1"] is None
    assert read_metrics(out)[0] == []  # the epoch's rows were never written
    code, _ = cli(["report", str(out), "-o", str(tmp_path / "report")], capsys)
    assert code == 0 and (tmp_path / "report" / "report.html").is_file()


def test_metrics_with_nan_from_an_older_partc_read_as_missing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    run_paths(out)["metrics"].write_text('{"epoch": 1, "task": "a", "split": "val", "loss": NaN, "top1": 0.5}\n'
                                         '{"epoch": 1, "task": "a", "split": "test", "loss": Infinity, "top1": 0.4}\n')
    rows, problems = read_metrics(out)
    assert [r["loss"] for r in rows] == [None, None] and [r["top1"] for r in rows] == [0.5, 0.4]
    assert problems == [f"{run_paths(out)['metrics']}: 2 row(s) hold NaN or infinite values, read as missing"]


# ---- memory ----

def test_a_run_that_cannot_fit_in_memory_is_refused_before_anything_is_built(tmp_path, tiny, monkeypatch):
    import partc.train.memory as memory

    net, data = tiny
    monkeypatch.setattr(memory, "device_bytes", lambda runtime: 10_000)  # a device of 10 kB
    with pytest.raises(TrainError) as e:
        run(tmp_path / "run", net, data)
    assert e.value.message.startswith("training 'kills' needs about ") and "which has 9.8 KiB" in e.value.message
    assert "lower batch" in e.value.hint
    assert not (tmp_path / "run").exists()


def test_an_allocator_failure_is_a_clean_error(tiny):
    from partc.train.config import resolve_config
    from partc.train.device import Runtime
    from partc.train.memory import allocation_errors

    net, data = tiny
    with pytest.raises(TrainError, match="ran out of memory; it needs at least"):
        with allocation_errors(net, resolve_config(net), Runtime(torch.device("cpu")), data):
            torch.empty(10**15)  # 4 PB: the CPU allocator refuses


# ---- any damage, not just the examples above ----

@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory, tiny):
    net, data = tiny
    out = tmp_path_factory.mktemp("fuzz") / "run"
    run(out, net, data, epochs=1)
    return net, run_paths(out)["last"].read_bytes(), out


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cut=st.integers(0, 10**9), flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), max_size=4))
def test_a_damaged_checkpoint_loads_whole_or_is_a_checkpoint_error(tmp_path, checkpoint_bytes, cut, flips):
    net, good, _ = checkpoint_bytes
    data = bytearray(good[: cut % (len(good) + 1)])
    for at, xor in flips:
        if data:
            data[at % len(data)] ^= xor
    path = tmp_path / "damaged.pt"
    path.write_bytes(bytes(data))
    try:
        state = load_checkpoint(path, net, require=("model", "optimizer", "rng", "config", "data_stats", "epoch"))
    except CheckpointError as e:
        assert str(path) in e.message
        return
    assert isinstance(state["model"], dict) and isinstance(state["epoch"], int)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_damaged_run_files_become_problems_not_exceptions(tmp_path, content):
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    for name in ("info", "metrics", "results"):
        run_paths(out)[name].write_bytes(content)
    info, problems = read_info(out)
    assert isinstance(info, dict) and (problems or info is not None)
    rows, _ = read_metrics(out)
    assert all(isinstance(r, dict) for r in rows)
    results, _ = read_results(out)
    assert results is None or isinstance(results.get("tasks"), dict)
