"""Every setting is checked once, at check time: a spec `partc check` accepts is never refused by `partc train`.

The train block's settings, optimizer and schedule arguments and the task
settings live in `partc.train.settings`; data options in
`partc.data.catalog`. The property test writes random train blocks and data
options (valid and not) and checks the invariant: when the checker
accepts a spec, turning it into a training configuration, an optimizer and
a data loader's options never raises.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import partc
from partc.data.catalog import SOURCES
from partc.errors import PartError, SpecError
from partc.train.config import build_optimizer, resolve_config
from partc.train.settings import OPTIMIZERS, SCHEDULES, SETTINGS

BASE = """network tiny {{
  input x: float[1, 8, 8]
  seed 1
  level l1 = 2 x conv(4, pad=1) then avgpool
  task a {{ data digits({data}) path random(1) }}
  train {{ {train} }}
}}
"""

NUMBERS = st.sampled_from(["0", "1", "3", "-1", "0.5", "2e-3", "1e999", "0.0", "100000", "1000001", "true", "[1]",
                           "[0.9, 0.999]", "[20, 30]", "[]", "\"x\"", "fused", "cosine", "adma"])


def _call(name: str, keys: list[str]) -> st.SearchStrategy[str]:
    arg = st.tuples(st.sampled_from(keys + ["bogus"]), NUMBERS).map(lambda kv: f"{kv[0]}={kv[1]}")
    return st.tuples(st.lists(NUMBERS, max_size=2), st.lists(arg, max_size=3)).map(
        lambda pa: f"{name}({', '.join(pa[0] + pa[1])})" if pa[0] or pa[1] else name)


CALLS = {"optimizer": st.sampled_from(list(OPTIMIZERS) + ["adma"]).flatmap(
             lambda n: _call(n, list(OPTIMIZERS.get(n, OPTIMIZERS["adam"]).arguments))),
         "schedule": st.sampled_from(list(SCHEDULES) + ["cosin"]).flatmap(
             lambda n: _call(n, list(SCHEDULES.get(n, SCHEDULES["step"]).arguments)))}
SETTING = st.sampled_from(sorted(SETTINGS)).flatmap(
    lambda name: (CALLS[name] if name in CALLS else NUMBERS).map(lambda v: f"{name} {v}"))
OPTION = st.sampled_from(["val", "test", "augment", "perspective", "normalize", "limit"]).flatmap(
    lambda key: NUMBERS.map(lambda v: f"{key}={v}"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SETTING, max_size=5, unique_by=lambda s: s.split()[0]), st.lists(OPTION, max_size=3,
                                                                                 unique_by=lambda s: s.split("=")[0]))
def test_a_checked_spec_is_never_refused_by_training(train_lines, options):
    text = BASE.format(train="; ".join(train_lines), data=", ".join(["classes=2"] + options))
    try:
        net = partc.loads(text, "tiny.part")
    except PartError:
        return  # refused at check time, with a located message: what the invariant allows
    cfg = resolve_config(net)
    build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
    assert cfg.epochs >= 1 and cfg.batch >= 1 and cfg.lr > 0
    from partc.data.load import _options  # the loader's own validation of a task's options

    task = net.tasks["a"]
    _options(task.data, net.inputs[task.input].shape, task.classes)


@pytest.mark.parametrize("optimizer, message, at", [
    ("adam(lr=0.01, momentum=0.9)", "optimizer adam has no argument 'momentum'", "momentum=0.9"),
    ("sgd(lr=-1)", "sgd lr must be a learning rate > 0, got -1", "lr=-1"),
    ("adam(betas=[0.9])", "adam betas must be a list of two numbers in [0, 1)", "betas=[0.9]"),
    ("adam(1e999)", "adam lr must be a learning rate > 0, got 1e999", "1e999"),
    ("adma(lr=1e-3)", "train setting 'optimizer' must be one of adam, adamw, sgd, got adma(lr=1e-3)", "optimizer"),
])
def test_bad_optimizer_arguments_are_refused_at_the_argument(optimizer, message, at):
    text = BASE.format(data="classes=2", train=f"optimizer {optimizer}")
    with pytest.raises(SpecError) as e:
        partc.loads(text, "tiny.part")
    assert message in e.value.message
    assert e.value.loc.source_line[e.value.loc.column - 1:].startswith(at)


def test_a_misspelt_value_gets_a_did_you_mean():
    for line, close in [("mode fusd", "fused"), ("optimizer adma", "adam"), ("schedule cosin", "cosine"),
                        ("epoch_policy largst", "largest")]:
        with pytest.raises(SpecError) as e:
            partc.loads(BASE.format(data="classes=2", train=line), "tiny.part")
        assert f"did you mean '{close}'?" in e.value.hint


def test_the_catalog_and_the_settings_tables_are_the_only_lists():
    """The checker's hints and the trainer's defaults read the same rows."""
    cfg = resolve_config(partc.loads(BASE.format(data="classes=2", train="epochs 2"), "tiny.part"))
    assert cfg.optimizer == SETTINGS["optimizer"].default and cfg.schedule == SETTINGS["schedule"].default
    assert cfg.batch == SETTINGS["batch"].default and cfg.mode == SETTINGS["mode"].default
    assert set(SOURCES) >= {"digits", "npz", "folder", "synthetic", "cifar10", "cifar100"}
