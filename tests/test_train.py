"""Train stage: settings, batching policy, both modes' update rules, run directory, resume, errors."""

from __future__ import annotations

import io
import json

import pytest
import torch

import partc
from partc.cli import main
from partc.data.load import load_all
from partc.errors import CheckpointError, SpecError, TrainError
from partc.run import load_checkpoint, load_trained_model, read_metrics, run_paths
from partc.train import resolve_config, train
from partc.train.config import TrainConfig
from partc.train.device import Runtime
from partc.train.progress import Progress
from partc.train.sampling import TaskStream, interleaved_schedule, steps_per_epoch, task_batch_sizes
from partc.train.session import Trainer
from tests.train_specs import OWNED, PLAIN, PRIVATE, TINY, UNUSED, head_state, own_state, same, segment_state

CPU = Runtime(torch.device("cpu"))


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is fastest, and on a busy machine far faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    net = partc.loads(TINY, "tiny.part")
    return net, load_all(net)


def run(tmp_path, net, data, name="run", **kw):
    kw.setdefault("device", "cpu")
    return train(net, tmp_path / name, quiet=True, data=data, **kw)


# ---- settings ----

def test_defaults_and_overrides():
    net = partc.loads(TINY.replace("train { epochs 3; batch 8; optimizer adamw(lr=0.01, weight_decay=0.1); "
                                   "schedule cosine }", ""))
    cfg = resolve_config(net)
    assert (cfg.epochs, cfg.batch, cfg.optimizer, cfg.lr, cfg.schedule, cfg.mode) == (10, 32, "adam", 1e-3,
                                                                                       "constant", "fused")
    assert (cfg.steps_per_task, cfg.epoch_policy, cfg.seed) == (10, "largest", 3)
    cfg = resolve_config(net, epochs=4, mode="interleaved")
    assert (cfg.epochs, cfg.mode) == (4, "interleaved")


def test_schedules():
    net = partc.loads(TINY.replace("schedule cosine", "schedule step([2, 4], gamma=0.5)"))
    cfg = resolve_config(net)
    assert [cfg.lr_factor(e) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    cos = resolve_config(partc.loads(TINY), epochs=4)
    assert [round(cos.lr_factor(e), 6) for e in range(4)] == [1.0, 0.853553, 0.5, 0.146447]


# ---- batching policy ----

def test_task_stream_covers_every_sample_once_per_pass():
    stream = TaskStream(10, torch.Generator().manual_seed(0))
    batches = [stream.take(4) for _ in range(5)]  # 20 samples: two full shuffles, batches straddle them
    drawn = torch.cat(batches)
    assert all(b.numel() == 4 for b in batches)
    assert sorted(drawn[:10].tolist()) == list(range(10)) and sorted(drawn[10:].tolist()) == list(range(10))
    again = TaskStream(10, torch.Generator().manual_seed(0))
    again.take(6)
    state = again.state_dict()
    resumed = TaskStream(10, torch.Generator().manual_seed(99))
    resumed.load_state_dict(state)
    assert torch.equal(torch.cat([resumed.take(4) for _ in range(3)]), drawn[6:18])


def test_epoch_policy_and_sampling_ratio():
    sizes = {"a": 100, "b": 30, "c": 7}
    batches = task_batch_sizes(10, {"a": 1.0, "b": 0.5, "c": 2.0}, sizes)
    assert batches == {"a": 10, "b": 5, "c": 7}  # c: 20 capped at its 7 samples
    assert steps_per_epoch(sizes, batches, "largest") == 10
    assert steps_per_epoch(sizes, batches, "smallest") == 1


def test_interleaved_schedule_gives_every_task_its_steps():
    gen = torch.Generator().manual_seed(1)
    runs = interleaved_schedule(["a", "b", "c"], 25, 10, gen)
    assert [count for _, count in runs] == [10] * 3 + [10] * 3 + [5] * 3
    for t in "abc":
        assert sum(c for task, c in runs if task == t) == 25
    orders = [tuple(t for t, _ in runs[i:i + 3]) for i in (0, 3, 6)]
    assert all(sorted(o) == ["a", "b", "c"] for o in orders)


# ---- who updates what ----

def _plain_trainer(mode, weight_a=1.0):
    net = partc.loads(PLAIN)
    net.tasks["a"].weight = weight_a  # the spec only allows positive weights; 0 isolates task a's loss
    return Trainer(net, resolve_config(net, mode=mode), CPU, load_all(net))


def test_fused_private_segments_move_only_through_their_task():
    """With task a's loss weighted 0, nothing of a's own may move; every other task's private parts do."""
    trainer = _plain_trainer("fused", weight_a=0.0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for epoch in range(2):
        trainer.train_epoch(epoch, lambda: None)
    after = trainer.model.state_dict()
    for level, i in PRIVATE["a"]:
        assert same(segment_state(before, level, i), segment_state(after, level, i)), (level, i)
    assert same(head_state(before, "a"), head_state(after, "a"))
    for t in "bc":
        for level, i in PRIVATE[t]:
            assert not same(segment_state(before, level, i), segment_state(after, level, i)), (t, level, i)


def test_fused_gradient_of_one_task_never_reaches_another_tasks_private_segments():
    trainer = _plain_trainer("fused")
    model = trainer.model
    batches = {t: feed.next() for t, feed in trainer.feeds.items()}
    logits = model.forward_all({t: x for t, (x, _) in batches.items()})
    for source in "abc":
        loss = torch.nn.functional.cross_entropy(logits[source], batches[source][1])
        for owner in "abc":
            params = [p for level, i in PRIVATE[owner] for p in model.segment(level, i).parameters()]
            params += list(model.heads[owner].parameters())
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            reached = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
            assert reached == (owner == source), (source, owner)


def _batchnorm_reach(net, data, batchnorm: str) -> bool:
    """Whether task b's loss, in one fused train-mode forward, gives a gradient to task a's private
    segment l1[0] (l1[1], which a and b share, holds BatchNorm: the only way b could reach it)."""
    trainer = Trainer(net, resolve_config(net), CPU, data)
    assert trainer.model.batchnorm == "per_task"  # the default
    trainer.model.batchnorm = batchnorm
    trainer.model.train()
    batches = {t: feed.next() for t, feed in trainer.feeds.items()}
    logits = trainer.model.forward_all({t: x for t, (x, _) in batches.items()})
    loss_b = torch.nn.functional.cross_entropy(logits["b"], batches["b"][1])
    grad = torch.autograd.grad(loss_b, list(trainer.model.segment("l1", 0).parameters()), allow_unused=True)
    return any(g is not None and bool(g.abs().sum() > 0) for g in grad)


def test_fused_per_task_batchnorm_keeps_private_segments_isolated(tiny):
    """With per-task statistics (the default), another task's loss gives exactly zero gradient to a
    private segment: the PaRT isolation holds in the fused step too."""
    net, data = tiny
    assert not _batchnorm_reach(net, data, "per_task")


def test_fused_joint_batchnorm_couples_tasks_through_shared_statistics(tiny):
    """Documented: with `batchnorm joint`, a shared segment's BatchNorm normalises over every task's
    rows, so another task's loss reaches a private segment through those statistics."""
    net, data = tiny
    assert _batchnorm_reach(net, data, "joint")


def test_batchnorm_setting_reaches_the_model(tiny):
    net, data = tiny
    joint = partc.loads(TINY.replace("schedule cosine", "schedule cosine; batchnorm joint"), "tiny.part")
    assert resolve_config(net).batchnorm == "per_task"
    assert resolve_config(joint).batchnorm == "joint"
    assert Trainer(joint, resolve_config(joint), CPU, data).model.batchnorm == "joint"
    # a checkpoint from before the setting existed resumes as it was trained: joint statistics
    saved = resolve_config(net).to_dict()
    del saved["batchnorm"]
    assert TrainConfig.from_dict(saved).batchnorm == "joint"
    with pytest.raises(SpecError, match="train setting 'batchnorm' must be per_task"):
        partc.loads(TINY.replace("schedule cosine", "schedule cosine; batchnorm shared"), "tiny.part")


def test_interleaved_step_of_one_task_leaves_other_tasks_bit_identical(tiny):
    net, data = tiny
    trainer = Trainer(net, resolve_config(net, mode="interleaved"), CPU, data)
    trainer.train_epoch(0, lambda: None)  # every optimizer has state now
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    opt_b = json.dumps({k: str(v) for k, v in trainer.optimizers["b"].state_dict()["state"].items()})
    step_a = [(("a", 1))]
    from partc.train.loop import Meter, interleaved_epoch

    meters = {t: Meter(net.tasks[t].classes, CPU.device) for t in net.tasks}
    interleaved_epoch(trainer.model, trainer.optimizers, trainer.feeds, trainer.weights, step_a, meters, CPU,
                      lambda: None)
    after = trainer.model.state_dict()
    for t in "bc":
        for level, i in PRIVATE[t]:
            assert same(segment_state(before, level, i), segment_state(after, level, i)), (t, level, i)
        assert same(head_state(before, t), head_state(after, t))
    for level, i in PRIVATE["a"]:
        assert not same(segment_state(before, level, i), segment_state(after, level, i))
    assert opt_b == json.dumps({k: str(v) for k, v in trainer.optimizers["b"].state_dict()["state"].items()})


# ---- task-owned BatchNorm (task_batchnorm): each task's copies move with that task alone ----

@pytest.fixture(scope="module")
def owned():
    net = partc.loads(OWNED, "owned.part")
    return net, load_all(net)


def _moved(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_fused_steps_without_a_task_leave_its_own_batchnorms_bit_identical(owned):
    """Shared segments move under tasks b and c; task a's own copies in them (weights and running
    statistics) do not, while every copy of b and c on their paths does."""
    net, data = owned
    trainer = Trainer(net, resolve_config(net), CPU, data)
    trainer.train_epoch(0, lambda: None)  # the optimizer has state for every copy now
    model, optimizer = trainer.model, trainer.optimizers["all"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    for _ in range(2):
        batches = {t: trainer.feeds[t].next() for t in "bc"}
        logits = model.forward_all({t: x for t, (x, _) in batches.items()})
        optimizer.zero_grad(set_to_none=True)
        sum(torch.nn.functional.cross_entropy(logits[t], batches[t][1]) for t in batches).backward()
        optimizer.step()
    moved = _moved(before, model.state_dict())
    assert own_state(before, "a") and not moved & set(own_state(before, "a"))
    assert "levels.l1.1.0.weight" in moved  # l1[1]'s conv, which a shares with b
    for t in "bc":
        stats = [k for k in own_state(before, t) if k.endswith(("weight", "running_mean", "running_var"))]
        assert stats and set(stats) <= moved, t


def test_fused_gradient_of_one_task_never_reaches_another_tasks_own_batchnorms(owned):
    net, data = owned
    trainer = Trainer(net, resolve_config(net), CPU, data)
    model = trainer.model.train()
    batches = {t: feed.next() for t, feed in trainer.feeds.items()}
    logits = model.forward_all({t: x for t, (x, _) in batches.items()})
    for source in "abc":
        loss = torch.nn.functional.cross_entropy(logits[source], batches[source][1])
        for owner in "abc":
            params = list(own_state(dict(model.named_parameters()), owner).values())
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            reached = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
            assert reached == (owner == source), (source, owner)


def test_interleaved_step_of_one_task_moves_only_its_own_batchnorms(owned):
    net, data = owned
    trainer = Trainer(net, resolve_config(net, mode="interleaved"), CPU, data)
    trainer.train_epoch(0, lambda: None)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    from partc.train.loop import Meter, interleaved_epoch

    meters = {t: Meter(net.tasks[t].classes, CPU.device) for t in net.tasks}
    interleaved_epoch(trainer.model, trainer.optimizers, trainer.feeds, trainer.weights, [("a", 1)], meters, CPU,
                      lambda: None)
    moved = _moved(before, trainer.model.state_dict())
    for t in "bc":
        assert own_state(before, t) and not moved & set(own_state(before, t)), t
    assert {k for k in own_state(before, "a") if k.endswith(("weight", "running_mean", "num_batches_tracked"))} <= moved
    others = {id(p) for t in "bc" for p in own_state(dict(trainer.model.named_parameters()), t).values()}
    assert others and others.isdisjoint(id(p) for g in trainer.optimizers["a"].param_groups for p in g["params"])


@pytest.mark.parametrize("mode", ["fused", "interleaved"])
def test_segments_on_no_path_never_change(tmp_path, tiny, mode):
    net, data = tiny  # AdamW with weight decay: decay must not reach parameters without a gradient
    run(tmp_path, net, data, mode=mode, epochs=2)
    init = load_checkpoint(run_paths(tmp_path / "run")["init"])["model"]
    last = load_checkpoint(run_paths(tmp_path / "run")["last"])["model"]
    for level, i in UNUSED:
        assert same(segment_state(init, level, i), segment_state(last, level, i))
    assert not same(segment_state(init, "l2", 0), segment_state(last, "l2", 0))


# ---- run directory and resume ----

def test_run_directory_contents(tmp_path, tiny):
    net, data = tiny
    results = run(tmp_path, net, data, epochs=5)
    paths = run_paths(tmp_path / "run")
    assert paths["spec"].read_text() == net.source
    info = json.loads(paths["info"].read_text())
    assert info["network"] == "tiny" and info["spec_hash"] == net.spec_hash and info["epochs"] == 5
    assert info["mode"] == "fused" and info["device"] == "cpu" and info["no_sharing"] is False
    kept = sorted(p.name for p in paths["checkpoints"].iterdir())
    best = results["best_mean_val_epoch"]
    expected = {"init.pt", "last.pt", "epoch_0003.pt", "epoch_0004.pt", "epoch_0005.pt", f"epoch_{best:04d}.pt"}
    assert set(kept) == expected
    state = load_checkpoint(paths["last"], net)
    assert state["epoch"] == 5 and set(state["rng"]) >= {"python", "numpy", "torch", "order", "streams", "augment"}
    assert state["data_stats"]["c"]["labels"] == data["c"].labels
    rows, problems = read_metrics(tmp_path / "run")
    assert problems == [] and len(rows) == 5 * 3 * 3
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert all({"epoch", "task", "split", "loss", "top1", "top5", "samples", "time_s"} <= set(r) for r in rows)
    # top-5 of a 3-class task is top-3: always a hit; of a 6-class task, a real top-5
    assert all(r["top5"] == 1.0 for r in rows if r["task"] in "ab")
    last_test = {r["task"]: r for r in rows if r["epoch"] == 5 and r["split"] == "test"}
    assert results["tasks"]["c"]["top1"] == last_test["c"]["top1"]
    assert json.loads(paths["results"].read_text()) == results
    assert "| c | 6 |" in paths["results_md"].read_text()
    _net, model, _state = load_trained_model(tmp_path / "run")
    assert same(model.state_dict(), state["model"])


@pytest.mark.parametrize("mode", ["fused", "interleaved"])
def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, tiny, mode):
    net, data = tiny
    run(tmp_path, net, data, "straight", mode=mode, epochs=3)
    run(tmp_path, net, data, "resumed", mode=mode, epochs=1)
    run(tmp_path, net, data, "resumed", resume=True, epochs=3)
    a = load_checkpoint(run_paths(tmp_path / "straight")["last"])
    b = load_checkpoint(run_paths(tmp_path / "resumed")["last"])
    assert same(a["model"], b["model"])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "straight")[0]) == strip(read_metrics(tmp_path / "resumed")[0])


def test_resume_drops_metrics_of_an_unfinished_epoch(tmp_path, tiny):
    net, data = tiny
    run(tmp_path, net, data, epochs=1)
    metrics = run_paths(tmp_path / "run")["metrics"]
    metrics.write_text(metrics.read_text() + json.dumps({"epoch": 2, "task": "a", "split": "train"}) + "\n{\"epo")
    run(tmp_path, net, data, resume=True, epochs=2)
    rows, problems = read_metrics(tmp_path / "run")
    assert problems == [] and [r["epoch"] for r in rows].count(2) == 9
    last = run_paths(tmp_path / "run")["last"].read_bytes()
    again = run(tmp_path, net, data, resume=True)  # a finished run: nothing to train, the same results
    assert again == json.loads(run_paths(tmp_path / "run")["results"].read_text()) and again["epoch"] == 2
    assert run_paths(tmp_path / "run")["last"].read_bytes() == last


def test_fresh_run_refuses_a_non_empty_directory(tmp_path, tiny):
    net, data = tiny
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(TrainError, match="not empty") as e:
        run(tmp_path, net, data, epochs=1)
    assert "another --out" in e.value.hint  # not --resume: the folder holds no run
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["notes.txt"]


def test_resume_errors_leave_files_intact(tmp_path, tiny):
    net, data = tiny
    with pytest.raises(CheckpointError, match="does not exist"):
        run(tmp_path, net, data, "missing", resume=True)
    run(tmp_path, net, data, epochs=1)
    other = partc.loads(TINY.replace("seed 3", "seed 4"))
    with pytest.raises(CheckpointError, match="another spec"):
        run(tmp_path, other, data, resume=True)
    with pytest.raises(TrainError, match="fused mode"):
        run(tmp_path, net, data, resume=True, mode="interleaved")
    paths = run_paths(tmp_path / "run")
    last = paths["last"].read_bytes()
    paths["last"].unlink()  # last.pt is a link to epoch_0001.pt: replace it by a truncated copy
    paths["last"].write_bytes(last[: len(last) // 2])
    files = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        run(tmp_path, net, data, resume=True, epochs=2)
    assert files == {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}


def test_no_sharing_baseline(tmp_path):
    for spec in ("split_digits", "cifar100_part", "mixed_inputs", "digit_domains"):
        net = partc.load(f"specs/{spec}.part")
        from partc.passes import verify
        from partc.train.nosharing import unshare

        base = unshare(net)
        assert verify(base) == [] and base.shared_params == 0 and base.name == f"{net.name}_nosharing"
        assert {t: base.task_params(t) for t in net.tasks} == {t: net.task_params(t) for t in net.tasks}
    net = partc.loads(TINY)
    base = unshare(net)
    data = load_all(base)
    results = run(tmp_path, net, data, no_sharing=True, epochs=1)
    info = json.loads(run_paths(tmp_path / "run")["info"].read_text())
    assert info["no_sharing"] and info["source_network"] == "tiny" and results["network"] == "tiny_nosharing"
    assert partc.loads(run_paths(tmp_path / "run")["spec"].read_text()).shared_params == 0
    with pytest.raises(CheckpointError) as e:
        run(tmp_path, net, data, resume=True)
    assert "add --no-sharing" in e.value.hint


def test_cli_trains_and_reports_user_errors(tmp_path, capsys):
    spec = tmp_path / "tiny.part"
    spec.write_text(TINY)
    out = tmp_path / "cli_run"
    assert main(["train", str(spec), "--out", str(out), "--epochs", "1", "--device", "cpu", "--threads", "1"]) == 0
    printed = capsys.readouterr()
    assert "| **mean** |" in printed.out and "epoch 1/1" in printed.err
    assert main(["train", str(spec), "--out", str(out), "--device", "cpu"]) == 2
    assert "not empty" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", str(spec), "--out", str(tmp_path / "x"), "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def test_progress_bar_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    plain, tty = io.StringIO(), Terminal()
    for stream in (plain, tty):
        bar = Progress(4, stream=stream, interval=0)
        for _ in range(4):
            bar.tick()
        bar.close()
    assert plain.getvalue() == ""
    assert "4/4" in tty.getvalue() and "eta" in tty.getvalue()
    quiet = Terminal()
    bar = Progress(2, stream=quiet, quiet=True, interval=0)
    bar.tick()
    assert quiet.getvalue() == ""


def test_flops_counted_from_the_ir():
    from partc.train.flops import task_forward_flops, task_train_flops

    net = partc.loads(PLAIN)
    # a: l1 2 x conv 2->6 at 8x8, l2 2 x conv 6->6 at 8x8, l3 2 x conv 6->8 at 4x4, head 8->3
    macs = 2 * (6 * 2 * 9 * 64) + 2 * (6 * 6 * 9 * 64) + 2 * (8 * 6 * 9 * 16) + 8 * 3
    assert task_forward_flops(net, "a") == 2 * macs and task_train_flops(net, "a") == 6 * macs
    paper = partc.load("specs/cifar100_part.part")  # 13.9 GFLOP per image and task path (shared/GPU.md)
    assert round(task_forward_flops(paper, "t0") / 1e9, 1) == 13.9


def test_benchmark_smoke_run_on_cpu(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "train_speed.py"
    spec = importlib.util.spec_from_file_location("train_speed", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--device", "cpu", "--levels-scale", "small", "--batches", "2", "--steps", "1", "--rounds", "2",
                       "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "# machine:" in out and "| 2 | reference |" in out and "| 2 | fused-fp32 |" in out


def test_fused_forward_keeps_its_row_indices_on_the_batch_device():
    """CUDA's index_select/index_add_ refuse CPU index tensors; so does the meta device, which runs here."""
    net = partc.loads(TINY)  # task c's rows are not next to task a's at l2[0]: an index tensor, not a slice
    model = partc.compile(net).to("meta").train()
    batches = {t: torch.empty(4, 2, 8, 8, device="meta") for t in net.tasks}
    logits = model.forward_all(batches)
    assert {t: tuple(v.shape) for t, v in logits.items()} == {"a": (4, 3), "b": (4, 2), "c": (4, 6)}
