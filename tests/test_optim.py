"""partc's CPU optimizers against torch.optim: the same weights bit for bit, checkpoints interchangeable."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from partc.train import optim

CASES = [
    ("adam", {"lr": 2e-3}),
    ("adam", {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("adamw", {"lr": 1e-3}),
    ("adamw", {"lr": 3e-3, "weight_decay": 0.5, "betas": (0.5, 0.9)}),
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("sgd", {"lr": 0.05, "momentum": 0.5, "dampening": 0.3}),
]
TORCH = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def parameters(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in [(3, 4, 3, 3), (7,), (2, 5)]]


def run(opt, params: list[torch.nn.Parameter], steps: range) -> None:
    """Steps with gradients that depend on the step and on the weights (as a loss's would)."""
    for step in steps:
        g = torch.Generator().manual_seed(1000 + step)
        opt.zero_grad(set_to_none=True)
        for i, p in enumerate(params):
            if step % 3 == 2 and i == 1:
                continue  # a parameter without a gradient this step is skipped by both
            p.grad = torch.randn(p.shape, generator=g) + 0.1 * p.detach()
        opt.step()


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name, kwargs", CASES)
def test_steps_are_bit_identical_to_torch(name, kwargs):
    ours, theirs = parameters(0), parameters(0)
    run(optim.OPTIMIZERS[name](ours, **kwargs), ours, range(12))
    run(TORCH[name](theirs, **kwargs), theirs, range(12))
    assert_same(ours, theirs)


@pytest.mark.parametrize("name, kwargs", CASES)
def test_checkpoints_move_between_partc_and_torch(name, kwargs):
    """A run saved by one continues in the other exactly as it would have in itself (CPU run -> GPU run)."""
    straight = parameters(1)
    run(TORCH[name](straight, **kwargs), straight, range(8))
    for first, second in [(optim.OPTIMIZERS[name], TORCH[name]), (TORCH[name], optim.OPTIMIZERS[name])]:
        params = parameters(1)
        opt = first(params, **kwargs)
        run(opt, params, range(4))
        saved = torch.load(_saved(opt.state_dict()), weights_only=True)
        params2 = [torch.nn.Parameter(p.detach().clone()) for p in params]
        resumed = second(params2, **{**kwargs, "lr": 123.0})  # the checkpoint's lr wins, as in torch
        resumed.load_state_dict(saved)
        run(resumed, params2, range(4, 8))
        assert_same(params2, straight)
    ours, theirs = optim.OPTIMIZERS[name](parameters(1), **kwargs), TORCH[name](parameters(1), **kwargs)
    assert ours.state_dict()["param_groups"] == theirs.state_dict()["param_groups"]


def _saved(state: dict):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_wrong_checkpoint_is_refused_and_empty_parameters_too():
    opt = optim.Adam(parameters(0))
    other = torch.optim.Adam(parameters(0)[:2])
    with pytest.raises(ValueError, match="different number of parameters"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)


UNIT = st.floats(0.0, 0.999)
ADAM_ARGS = st.fixed_dictionaries({"lr": st.floats(1e-5, 1.0), "betas": st.tuples(UNIT, UNIT),
                                   "eps": st.floats(1e-10, 1e-2), "weight_decay": st.floats(0.0, 1.0)})
SGD_ARGS = st.fixed_dictionaries({"lr": st.floats(1e-5, 1.0), "momentum": st.floats(0.0, 0.99),
                                  "dampening": st.floats(0.0, 0.9), "weight_decay": st.floats(0.0, 1.0),
                                  "nesterov": st.booleans()})
EVERY_CALL = st.one_of(st.tuples(st.sampled_from(["adam", "adamw"]), ADAM_ARGS), st.tuples(st.just("sgd"), SGD_ARGS))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(EVERY_CALL)
def test_any_arguments_a_spec_can_give_train_the_same_weights_as_torch(call):
    """Every argument partc.train.settings allows (values in its ranges, beta 0 included), any mix of them."""
    name, kwargs = call
    if kwargs.get("nesterov"):  # torch refuses nesterov without momentum or with dampening; so does partc
        kwargs = {**kwargs, "momentum": max(kwargs["momentum"], 0.1), "dampening": 0.0}
    ours, theirs = parameters(2), parameters(2)
    run(optim.OPTIMIZERS[name](ours, **kwargs), ours, range(5))
    run(TORCH[name](theirs, **kwargs), theirs, range(5))
    assert_same(ours, theirs)


def test_a_step_pre_hook_runs_before_each_step_until_removed():
    """partc.train.distributed averages the ranks' gradients in one (torch.optim's API)."""
    params = parameters(0)
    opt, seen = optim.SGD(params, lr=0.1), []
    handle = opt.register_step_pre_hook(lambda o, args, kwargs: seen.append((o, args, kwargs, params[0].clone())))
    run(opt, params, range(2))
    handle.remove()
    run(opt, params, range(2, 3))
    assert [s[:3] for s in seen] == [(opt, (), {})] * 2
    assert not torch.equal(seen[0][3], seen[1][3])  # the hook saw the weights before each step
