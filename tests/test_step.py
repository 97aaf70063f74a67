"""How a fused step runs (partc.train.step): forward_all or one forward per task, the same training either way."""

from __future__ import annotations

import json

import pytest
import torch

import partc
from partc.data.load import load_all
from partc.errors import TrainError
from partc.run import load_checkpoint, run_paths
from partc.train import resolve_config, train
from partc.train.device import Runtime
from partc.train.session import Trainer
from partc.train.step import PER_TASK_BYTES, activation_bytes, choose_fused_step
from tests.test_train import one_thread  # noqa: F401 (autouse: these tiny models train fastest on one thread)
from tests.train_specs import TINY, same

CPU = Runtime(torch.device("cpu"))
# TINY without its dropout: per-task forwards then compute the fused step (TINY itself keeps forward_all)
STEADY = TINY.replace("network tiny", "network steady").replace(" head { flatten; dropout(0.3) }", "")


@pytest.fixture(scope="module")
def steady():
    net = partc.loads(STEADY, "steady.part")
    assert "dropout" not in STEADY and "batchnorm" in STEADY and "augment=true" in STEADY
    return net, load_all(net)


def test_the_choice_follows_device_batchnorm_randomness_and_size():
    digits = partc.load("specs/split_digits.part")
    sizes = lambda b: {t: b for t in digits.tasks}  # noqa: E731
    assert choose_fused_step(digits, sizes(32), "cpu", "per_task")[0] == "per_task"
    assert activation_bytes(digits, sizes(32)) == 8 * activation_bytes(digits, sizes(4))  # linear in the batch
    assert activation_bytes(digits, sizes(4)) < PER_TASK_BYTES <= activation_bytes(digits, sizes(32))
    assert choose_fused_step(digits, sizes(4), "cpu", "per_task")[0] == "forward_all"
    assert choose_fused_step(digits, sizes(32), "cuda", "per_task") == (
        "forward_all", "cuda: one kernel per segment over all its tasks' rows")
    step, why = choose_fused_step(digits, sizes(32), "cpu", "joint")
    assert step == "forward_all" and "batchnorm joint" in why
    tiny = partc.loads(TINY, "tiny.part")
    step, why = choose_fused_step(tiny, {t: 10_000 for t in tiny.tasks}, "cpu", "per_task")
    assert step == "forward_all" and "dropout" in why


def _trainers(net, data):
    return {step: Trainer(net, resolve_config(net), CPU, data, fused_step=step) for step in ("forward_all", "per_task")}


def test_one_step_gives_the_same_losses_gradients_and_batchnorm_statistics(steady):
    net, data = steady
    seen = {}
    for step, trainer in _trainers(net, data).items():
        assert trainer.fused_step == step
        model = trainer.model.train()
        batches = {t: feed.next() for t, feed in trainer.feeds.items()}
        forward = model.forward_all if step == "forward_all" else model.forward_tasks
        logits = forward({t: x for t, (x, _) in batches.items()})
        losses = [torch.nn.functional.cross_entropy(logits[t], y) for t, (_, y) in batches.items()]
        sum(losses).backward()
        seen[step] = (losses, {k: p.grad for k, p in model.named_parameters() if p.grad is not None},
                      dict(model.named_buffers()))
    (losses_a, grads_a, buffers_a), (losses_b, grads_b, buffers_b) = seen["forward_all"], seen["per_task"]
    torch.testing.assert_close(losses_b, losses_a, rtol=1e-5, atol=1e-7)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for key, grad in grads_a.items():  # a conv bias before BatchNorm has a gradient of rounding noise: atol
        torch.testing.assert_close(grads_b[key], grad, rtol=1e-4, atol=1e-6, msg=key)
    for key, value in buffers_a.items():
        torch.testing.assert_close(buffers_b[key], value, rtol=1e-5, atol=1e-7, msg=key)


def test_per_task_forwards_train_what_forward_all_trains(steady):
    """Two epochs each way from the same start (SGD: Adam would scale the rounding noise of the
    gradient of a conv bias before BatchNorm up to whole steps): the same weights, statistics, metrics."""
    net = partc.loads(STEADY.replace("adamw(lr=0.01, weight_decay=0.1)", "sgd(lr=0.05, momentum=0.9)"), "sgd.part")
    trainers = _trainers(net, steady[1])
    init = {k: v.clone() for k, v in trainers["forward_all"].model.state_dict().items()}
    metrics = {step: [trainer.train_epoch(epoch, lambda: None) for epoch in range(2)]
               for step, trainer in trainers.items()}
    a, b = (trainers[s].state_dict()["model"] for s in ("forward_all", "per_task"))
    assert a.keys() == b.keys()
    for key, value in a.items():
        if value.is_floating_point():
            torch.testing.assert_close(b[key], value, rtol=1e-4, atol=1e-6, msg=key)
        else:
            assert torch.equal(b[key], value), key  # num_batches_tracked
    assert not same(a, init)  # it trained
    for ma, mb in zip(metrics["forward_all"], metrics["per_task"], strict=True):
        for t in ma:
            assert ma[t]["samples"] == mb[t]["samples"] and ma[t]["loss"] == pytest.approx(mb[t]["loss"], rel=1e-4)


def test_per_task_is_refused_where_it_would_train_something_else():
    tiny = partc.loads(TINY, "tiny.part")  # dropout in task a's head
    with pytest.raises(TrainError, match="dropout"):
        Trainer(tiny, resolve_config(tiny), CPU, load_all(tiny), fused_step="per_task")
    with pytest.raises(TrainError, match="unknown fused step 'fast'"):
        Trainer(tiny, resolve_config(tiny), CPU, load_all(tiny), fused_step="fast")


def test_a_resumed_run_keeps_the_forward_it_was_trained_with(tmp_path, steady):
    """A run trained with per-task forwards resumes with them although `auto` picks forward_all for
    this spec's small activations, so it stays bit-identical to the uninterrupted run; run.json says which."""
    net, data = steady
    assert choose_fused_step(net, {t: 16 for t in net.tasks}, "cpu", "per_task")[0] == "forward_all"
    kw = {"device": "cpu", "quiet": True, "data": data}
    train(net, tmp_path / "straight", epochs=3, fused_step="per_task", **kw)
    train(net, tmp_path / "resumed", epochs=1, fused_step="per_task", **kw)
    train(net, tmp_path / "resumed", epochs=3, resume=True, **kw)
    a, b = (load_checkpoint(run_paths(tmp_path / name)["last"]) for name in ("straight", "resumed"))
    assert a["fused_step"] == b["fused_step"] == "per_task"
    assert same(a["model"], b["model"])
    info = json.loads(run_paths(tmp_path / "resumed")["info"].read_text())
    assert info["fused_step"]["forward"] == "per_task"
    assert info["cpu"]["threads"] == 1 and info["cpu"]["chosen_by"] == "the calling program"
