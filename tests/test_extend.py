"""`partc extend`: new tasks over a trained run, the base tasks computing exactly what they computed.

A base run of two tasks is trained once per session; the tests extend it by
a third task (levels grown by appended segments) and check the guarantees:
the base tasks' logits are bit-identical, their ONNX exports give identical
ONNX Runtime outputs, their test metrics equal the base run's, the base
run's files are untouched, frozen modules never move while the new task's
own segments do (also upstream of a frozen one: gradients flow through it),
a SIGKILL then `--resume` gives the uninterrupted result, and every bad
input is a located, clear error.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import partc
from partc.errors import CheckpointError, PartError, SpecError, TrainError
from partc.run import load_checkpoint, load_trained_model, run_paths
from partc.train import train
from partc.train.extend import extend
from tests.processes import kill_at_first_checkpoint

ROOT = Path(__file__).resolve().parent.parent

BASE = """network grow {
  input img: float[2, 8, 8]
  seed 5
  segment blk(c) { conv(c, k=3, pad=1); batchnorm; relu }
  level l1 = 4 x blk(6)
  level l2 = 4 x blk(6) residual then maxpool(2)
  level l3 = 4 x blk(8) then avgpool
  task a { data synthetic(classes=3, samples=120) path l1[0, 1] l2[0, 1] l3[0, 1] }
  task b { data synthetic(classes=2, samples=100) path l1[1, 2] l2[1, 2] l3[1, 2] }
  train { epochs 2; batch 16; optimizer adam(lr=0.01) }
}
"""

# c: l1 through new segments 4 and 5 (trainable) into base segments at l2 (frozen), then a base segment no base
# task used (l3[3]) and a new one; d: all random over the grown levels.
GROWN = BASE.replace("4 x blk(6)\n", "6 x blk(6)\n").replace("4 x blk(6) residual", "5 x blk(6) residual").replace(
    "4 x blk(8)", "5 x blk(8)").replace(
    "  train {", "  task c { data synthetic(classes=4, samples=160) path l1[4, 5] l2[1, 2] l3[3, 4] }\n"
                 "  task d { data synthetic(classes=2, samples=80) path random(2) }\n  train {")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def base_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("extend")
    run = folder / "base"
    train(partc.loads(BASE, str(folder / "base.part")), run, device="cpu", quiet=True)
    write(folder / "grown.part", GROWN)
    return run


@pytest.fixture(scope="session")
def extended(base_run) -> Path:
    before = tree_hash(base_run)
    out = base_run.parent / "extended"
    extend(base_run, base_run.parent / "grown.part", out, device="cpu", quiet=True)
    assert tree_hash(base_run) == before  # the base run is only read
    return out


def probe(net, task: str, n: int = 7) -> torch.Tensor:
    gen = torch.Generator().manual_seed(11)
    return torch.randn(n, *net.inputs[net.tasks[task].input].shape, generator=gen)


def equal_logits(before_run, after_run, tasks: tuple[str, ...]) -> bool:
    """Whether the two runs' last checkpoints give every one of `tasks` the same logits (to the bit) on a probe."""
    _, before, _ = load_trained_model(before_run)
    net, after, _ = load_trained_model(after_run)
    with torch.no_grad():
        return all(torch.equal(before(x, task=t), after(x, task=t)) for t in tasks for x in [probe(net, t)])


def test_base_tasks_compute_exactly_what_they_computed(base_run, extended):
    assert equal_logits(base_run, extended, ("a", "b"))
    base_results = json.loads(run_paths(base_run)["results"].read_text())["tasks"]
    results = json.loads(run_paths(extended)["results"].read_text())["tasks"]
    for task in ("a", "b"):  # re-measured in the new run, equal to the base run's
        assert {k: results[task][k] for k in ("top1", "top5", "loss", "samples")} == \
               {k: base_results[task][k] for k in ("top1", "top5", "loss", "samples")}
    assert set(results) == {"a", "b", "c", "d"}


def test_frozen_modules_never_move_and_new_ones_train(base_run, extended):
    base_state = load_checkpoint(run_paths(base_run)["last"])["model"]
    init = load_checkpoint(run_paths(extended)["init"])["model"]
    last = load_checkpoint(run_paths(extended)["last"])["model"]
    info = json.loads(run_paths(extended)["info"].read_text())["extend"]
    frozen = info["frozen_modules"]
    assert info["base_tasks"] == ["a", "b"] and info["new_tasks"] == ["c", "d"]
    for key, value in base_state.items():  # the extension starts from the base weights
        assert torch.equal(init[key], value), key
    for key in last:
        if any(key.startswith(path + ".") for path in frozen):  # parameters and BatchNorm buffers alike
            assert torch.equal(last[key], base_state[key]), key
    moved = lambda prefix: any(not torch.equal(last[k], init[k]) for k in last if k.startswith(prefix))  # noqa: E731
    assert moved("levels.l1.4.") and moved("levels.l1.5.")  # upstream of the frozen l2 segments: gradients flow through
    assert moved("levels.l3.3.")  # a base segment no base task used is trainable
    assert moved("heads.c.") and moved("heads.d.")
    assert "levels.l2.1" in frozen and "levels.l3.3" not in frozen and "heads.a" in frozen


def test_the_effective_spec_says_what_the_run_holds(base_run, extended):
    spec = run_paths(extended)["spec"].read_text()
    assert spec.startswith("# Effective spec written by 'partc extend'")
    net = partc.loads(spec, "effective.part")
    base = partc.loads(run_paths(base_run)["spec"].read_text(), "base.part")
    for task in ("a", "b"):
        assert net.tasks[task].path == base.tasks[task].path
    assert [lv.count for lv in net.levels] == [6, 5, 5]


def test_onnx_exports_of_base_tasks_run_identically(base_run, extended, tmp_path):
    from partc.export import export_tasks
    from partc.onnxrt import open_session

    export_tasks(base_run, tmp_path / "old", tasks=["a"])
    export_tasks(extended, tmp_path / "new", tasks=["a"])
    x = probe(partc.loads(BASE), "a").numpy()
    old = open_session(tmp_path / "old" / "a.onnx", device="cpu").run(None, {"img": x})[0]
    new = open_session(tmp_path / "new" / "a.onnx", device="cpu").run(None, {"img": x})[0]
    assert np.array_equal(old, new)


def test_interleaved_extension_and_a_second_extension(base_run, extended, tmp_path):
    out = tmp_path / "interleaved"
    extend(base_run, base_run.parent / "grown.part", out, device="cpu", quiet=True, mode="interleaved", epochs=1)
    assert equal_logits(base_run, out, ("b",))
    # grow the grown run again: its tasks (a..d) are the base now
    again = write(tmp_path / "again.part", GROWN.replace(
        "  train {", "  task e { data synthetic(classes=2, samples=60) path random(1) }\n  train {"))
    third = tmp_path / "third"
    extend(extended, again, third, device="cpu", quiet=True, epochs=1)
    assert equal_logits(extended, third, ("a", "c"))


def test_without_freezing_the_base_tasks_change(base_run, tmp_path):
    out = tmp_path / "naive"
    extend(base_run, base_run.parent / "grown.part", out, device="cpu", quiet=True, freeze=False, epochs=1)
    assert not equal_logits(base_run, out, ("b",))  # b shares l1[1] with c, which now trains it


def test_check_with_a_base_shows_the_routes_extend_will_use(base_run, capsys):
    from partc.cli import main

    assert main(["check", str(base_run.parent / "grown.part"), "--base", str(base_run)]) == 0
    out = capsys.readouterr().out
    assert "base tasks keep their trained routes and weights: a, b" in out and "new tasks train: c, d" in out


# ---- bad input: clear errors, the base run untouched -------------------------------------------------

def _refused(base_run: Path, grown_text: str, tmp_path: Path, error=PartError) -> PartError:
    before = tree_hash(base_run)
    with pytest.raises(error) as e:
        extend(base_run, write(tmp_path / "bad.part", grown_text), tmp_path / "out", device="cpu", quiet=True)
    assert tree_hash(base_run) == before and not (tmp_path / "out").exists()
    return e.value


def test_a_changed_base_task_is_a_located_error(base_run, tmp_path):
    e = _refused(base_run, GROWN.replace("task a { data synthetic(classes=3,", "task a { data synthetic(classes=4,"),
                 tmp_path)
    assert isinstance(e, SpecError)
    assert e.render().startswith(f"{tmp_path / 'bad.part'}:8:17: error: task 'a' differs from the base run: "
                                 "data classes 3 -> 4")


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace("6 x blk(6)\n", "3 x blk(6)\n").replace("path l1[4, 5] l2[1, 2] l3[3, 4]", "path random(1)"),
     "level 'l1' has 3 segments, the base run 4"),
    (lambda t: t.replace("level l1 = 6 x blk(6)", "level l1 = 6 x conv(6, pad=1)"),
     "segment 0 of level 'l1' differs from the base run: blk(6) -> conv(6, pad=1)"),
    (lambda t: t.replace("seed 5", "seed 6"), "seed 6 differs from the base run's seed 5"),
    (lambda t: t.replace("network grow", "network other"), "the grown spec is network 'other'"),
    (lambda t: BASE, "the grown spec adds no task"),
    (lambda t: t.replace("task b { data synthetic(classes=2, samples=100) path l1[1, 2] l2[1, 2] l3[1, 2] }\n", ""),
     "base task 'b' is missing"),
    (lambda t: t.replace("path l1[1, 2] l2[1, 2] l3[1, 2] }", "path l1[1, 3] l2[1, 2] l3[1, 2] }"),
     "task 'b' differs from the base run: route at l1 [1, 2] -> [1, 3]"),
    (lambda t: t.replace("input img: float[2, 8, 8]", "input img: float[2, 8, 9]"), "input 'img' differs"),
])
def test_incompatible_grown_specs(base_run, tmp_path, change, message):
    assert message in _refused(base_run, change(GROWN), tmp_path).render()


def test_bad_base_runs_and_outputs(base_run, tmp_path):
    grown = base_run.parent / "grown.part"
    with pytest.raises(CheckpointError, match="does not exist"):
        extend(tmp_path / "nowhere", grown, tmp_path / "out")
    with pytest.raises(TrainError, match="is the base run or inside it"):
        extend(base_run, grown, base_run / "inside")
    unfinished = tmp_path / "unfinished"
    train(partc.loads(BASE.replace("epochs 2", "epochs 1"), str(tmp_path / "u.part")), unfinished, device="cpu", quiet=True)
    info = json.loads(run_paths(unfinished)["info"].read_text())
    run_paths(unfinished)["info"].write_text(json.dumps({**info, "epochs": 3}))
    with pytest.raises(CheckpointError, match="unfinished: 1 of 3 epochs") as e:
        extend(unfinished, grown, tmp_path / "out")
    assert "--resume" in e.value.hint
    run_paths(unfinished)["last"].write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"last\.pt' is empty \(0 bytes\)"):
        extend(unfinished, grown, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_command_line(base_run, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    bad = write(tmp_path / "bad.part", BASE)
    result = subprocess.run([sys.executable, "-m", "partc", "extend", str(base_run), str(bad), "--out",
                             str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "adds no task" in result.stderr and "Traceback" not in result.stderr


def test_sigkill_during_extend_then_resume_gives_the_uninterrupted_result(base_run, tmp_path):
    grown = write(tmp_path / "long.part", GROWN.replace("epochs 2", "epochs 5").replace("samples=160", "samples=600"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))

    def command(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "partc", "extend", str(base_run), str(grown), "--out", str(out), "--device",
                "cpu", "--threads", "1", "-q", *extra]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = subprocess.Popen(command(straight), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_at_first_checkpoint(victim, killed)
    done = subprocess.run(command(killed, "--resume"), env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert reference.wait(timeout=180) == 0, reference.stderr.read().decode()
    a = load_checkpoint(run_paths(straight)["last"])["model"]
    b = load_checkpoint(run_paths(killed)["last"])["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("step", [1, 3])  # 1: before any write (the lock file alone); 3: spec.part, no run.json
def test_extend_killed_during_start_up_resumes_to_the_uninterrupted_run(base_run, extended, tmp_path, step):
    """`partc extend --resume` of an extension killed before run.json starts it again (it is no run yet)."""
    out = tmp_path / "cut"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PARTC_TEST_KILL_AT=str(step))
    killed = subprocess.run([sys.executable, "-m", "partc", "extend", str(base_run), str(base_run.parent / "grown.part"),
                             "--out", str(out), "--device", "cpu", "-q"], env=env, capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL and not run_paths(out)["info"].exists()
    extend(base_run, base_run.parent / "grown.part", out, device="cpu", quiet=True, resume=True)
    resumed, straight = (load_checkpoint(run_paths(r)["last"])["model"] for r in (out, extended))
    assert resumed.keys() == straight.keys() and all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert json.loads(run_paths(out)["info"].read_text())["extend"]["new_tasks"] == ["c", "d"]


def test_the_report_marks_inherited_and_new_segments(base_run, extended, tmp_path):
    from partc.report import build_report

    report = build_report(extended, tmp_path / "report", probe_size=16)
    section = report.data["extension"]
    assert section["base_tasks"] == ["a", "b"] and section["new_tasks"] == ["c", "d"]
    assert section["segments"]["l1"][4:] == ["new", "new"] and section["segments"]["l2"][1] == "inherited-frozen"
    assert section["segments"]["l3"][3] == "inherited-trained"
    for task in ("a", "b"):
        assert section["base_accuracy"][task]["change"] == 0.0
    html = report.html.read_text()
    assert "Grown from a base run" in html and "inherited and frozen" in html


TBN_BASE = """network grow_tbn {
  input img: float[2, 8, 8]
  seed 5
  segment blk(c) { conv(c, k=3, pad=1); task_batchnorm; relu }
  level l1 = 3 x blk(6)
  level l2 = 3 x blk(8) then avgpool
  task a { data synthetic(classes=3, samples=90) path l1[0, 1] l2[0, 1] }
  task b { data synthetic(classes=2, samples=60) path l1[1, 2] l2[1] }
  train { epochs 1; batch 16; optimizer adam(lr=0.01) }
}
"""


def test_a_new_task_gets_its_own_batchnorm_in_a_frozen_segment(tmp_path):
    """Through a frozen segment with task_batchnorm, the new task trains a BatchNorm of its own; the base
    tasks' copies and the shared convolution do not move."""
    base = tmp_path / "base"
    train(partc.loads(TBN_BASE, str(tmp_path / "b.part")), base, device="cpu", quiet=True)
    grown = write(tmp_path / "g.part", TBN_BASE.replace(
        "  train {", "  task c { data synthetic(classes=2, samples=80) path l1[1] l2[1, 2] }\n  train {"))
    out = tmp_path / "out"
    extend(base, grown, out, device="cpu", quiet=True)
    frozen = json.loads(run_paths(out)["info"].read_text())["extend"]["frozen_modules"]
    assert "levels.l1.1.1.a" in frozen and "levels.l1.1.1.b" in frozen and "levels.l1.1.1.c" not in frozen
    assert "levels.l1.1.0" in frozen  # the shared convolution of a base segment
    init = load_checkpoint(run_paths(out)["init"])["model"]
    last = load_checkpoint(run_paths(out)["last"])["model"]
    for key in last:
        if key.startswith(("levels.l1.1.1.a.", "levels.l1.1.1.b.", "levels.l1.1.0.")):
            assert torch.equal(last[key], init[key]), key
    assert not torch.equal(last["levels.l1.1.1.c.weight"], init["levels.l1.1.1.c.weight"])
    assert not torch.equal(last["levels.l1.1.1.c.running_mean"], init["levels.l1.1.1.c.running_mean"])
    assert equal_logits(base, out, ("a", "b"))


def test_extend_a_seed_group_member_by_member(tmp_path):
    from partc.run import is_group, member_dir
    from partc.train.extend import extend_group
    from partc.train.seeds import train_group

    base = tmp_path / "base"
    net = partc.loads(BASE.replace("epochs 2", "epochs 1"), str(tmp_path / "b.part"))
    train_group(net, base, [1, 2], device="cpu", quiet=True)
    grown = write(tmp_path / "g.part", GROWN.replace("epochs 2", "epochs 1"))
    out = tmp_path / "grown"
    extend_group(base, grown, out, [1, 2], device="cpu", quiet=True)
    assert is_group(out)
    for seed in (1, 2):
        assert equal_logits(member_dir(base, seed), member_dir(out, seed), ("a",))  # each grows its own base
    with pytest.raises(TrainError, match="no member for seed"):
        extend_group(base, grown, tmp_path / "other", [3], device="cpu", quiet=True)
