"""The compile stage: PartModel's per-task modules, fused forward, parameter sharing.

Every task module is checked against an eager computation written from the
IR (tests/compiled_specs.py), the fused forward against the per-task ones,
and routing against random small specs (hypothesis).
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import partc
from partc.errors import PartError
from partc.layers import module_path
from tests.compiled_specs import (
    ROOT,
    SLOW_SPECS,
    SPECS,
    assert_rel_close,
    compiled,
    eager_forward,
    spec_params,
    task_outputs,
)

SMALL_SPECS = [p for p in SPECS if p.stem not in SLOW_SPECS]


# ---- every task against an eager reference ----

@pytest.mark.parametrize("spec", spec_params())
def test_task_modules_match_eager_reference(spec):
    net, model, inputs = compiled(spec)
    outputs = task_outputs(spec)  # model(x, task=name), which runs model.task(name)
    with torch.no_grad():
        for name in net.tasks:
            expected = eager_forward(model, net, name, inputs[name])
            assert_rel_close(outputs[name], expected, 1e-6, f"{spec.stem} model(x, task={name!r})")
            if spec.stem not in SLOW_SPECS:  # the same module again: worth a second on small specs only
                assert torch.equal(model.task(name)(inputs[name]), outputs[name])


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=lambda p: p.stem)
def test_features_are_each_levels_output(spec):
    net, model, inputs = compiled(spec)
    with torch.no_grad():
        for name in net.tasks:
            expected: dict = {}
            eager_forward(model, net, name, inputs[name], features=expected)
            got = model.features(inputs[name], name)
            assert list(got) == [lv.name for lv in net.levels]
            for level, h in got.items():
                assert_rel_close(h, expected[level], 1e-6, f"{spec.stem} {name} {level}")


# ---- the fused forward ----

def _ragged_batches(net, sizes=(3, 1, 5, 2, 4)):
    """Different batch sizes per task, one of them a batch of one."""
    gen = torch.Generator().manual_seed(2)
    return {name: torch.randn(sizes[k % len(sizes)], *net.inputs[t.input].shape, generator=gen)
            for k, (name, t) in enumerate(net.tasks.items())}


@pytest.mark.parametrize("spec", spec_params())
def test_forward_all_matches_per_task(spec):
    net, model, inputs = compiled(spec)
    with torch.no_grad():
        if spec.stem in SLOW_SPECS:
            # reuse the cached per-task outputs: in eval mode each row's logits depend on that row only
            batches = {t: x[: 1 + k % 2] for k, (t, x) in enumerate(inputs.items())}
            expected = {t: task_outputs(spec)[t][: len(x)] for t, x in batches.items()}
        else:
            batches = _ragged_batches(net)
            expected = {t: model(x, task=t) for t, x in batches.items()}
        fused = model.forward_all(batches)
        assert list(fused) == list(net.tasks)
        for name in net.tasks:
            assert_rel_close(fused[name], expected[name], 1e-5, f"{spec.stem} forward_all[{name}]")


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=lambda p: p.stem)
def test_forward_all_with_a_subset_of_tasks(spec):
    net, model, _ = compiled(spec)
    batches = _ragged_batches(net)
    names = list(net.tasks)
    with torch.no_grad():
        for subset in (names[1:], names[::2], [names[-1]]):
            fused = model.forward_all({t: batches[t] for t in reversed(subset)})
            assert set(fused) == set(subset)
            for name in subset:
                assert_rel_close(fused[name], model(batches[name], task=name), 1e-5, f"{spec.stem} {subset} {name}")


def test_forward_all_refuses_unknown_tasks():
    net, model, inputs = compiled(SMALL_SPECS[0])
    with pytest.raises(KeyError, match="nope"):
        model.forward_all({"nope": next(iter(inputs.values()))})
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        model(next(iter(inputs.values())), task="nope")


def _gradients(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def assert_fused_gradients_match(model, batches, labels, what: str) -> None:
    """Gradients of the summed task losses: forward_all against one model(x, task=t) per task."""
    fused = model.forward_all(batches)
    fused_grads = _gradients(model, sum(F.cross_entropy(fused[t], labels[t]) for t in batches))
    per_task_grads = _gradients(model, sum(F.cross_entropy(model(x, task=t), labels[t]) for t, x in batches.items()))
    assert fused_grads.keys() == per_task_grads.keys(), what
    # Relative to the model's largest gradient, as logits are compared relative to their largest: a conv
    # bias before batchnorm gets a sum of terms that nearly cancel, whose rounding follows the terms.
    floor = max(g.abs().max().item() for g in per_task_grads.values())
    for name, g in per_task_grads.items():
        assert_rel_close(fused_grads[name], g, 1e-5, f"{what} grad {name}", floor=floor)


def _labels(net, batches, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return {t: torch.randint(0, net.tasks[t].classes, (x.shape[0],), generator=gen) for t, x in batches.items()}


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=lambda p: p.stem)
def test_forward_all_gradients_match_per_task(spec):
    net, model, _ = compiled(spec)
    batches = _ragged_batches(net)
    assert_fused_gradients_match(model, batches, _labels(net, batches), spec.stem)


def test_forward_all_backward_through_a_segment_every_task_uses(tmp_path):
    """Regression: a partial segment's rows were added in place into a full segment's ReLU output."""
    net = partc.loads("""network n {
  input x: float[1, 4, 4]
  segment blk(c) { conv(c, k=3, pad=1); relu }
  level l1 = 2 x blk(2) then avgpool
  task a { data synthetic(classes=2) path l1[0, 1] }
  task b { data synthetic(classes=2) path l1[0] }
}
""", "n.part")
    model = partc.compile(net).eval()
    batches = {"a": torch.randn(2, 1, 4, 4), "b": torch.randn(3, 1, 4, 4)}
    assert_fused_gradients_match(model, batches, _labels(net, batches), "n")


# ---- train mode: per-task BatchNorm statistics in the fused forward ----

# Gathered (non-contiguous) rows: l1[0] runs tasks a and c, l1[1] task b; 1-d BatchNorm after flatten.
BN_SPEC = """network bn {
  input x: float[2, 6, 6]
  segment blk(c) { conv(c, k=3, pad=1); batchnorm; relu }
  segment fc(n) { linear(n); batchnorm; relu }
  level l1 = 3 x blk(4)
  level l2 = 3 x blk(4) residual then avgpool, flatten
  level l3 = 3 x fc(5)
  task a { data synthetic(classes=2) path l1[0] l2[0, 1] l3[0, 1] }
  task b { data synthetic(classes=3) path l1[1] l2[1, 2] l3[1] }
  task c { data synthetic(classes=2) path l1[0, 2] l2[0, 2] l3[0, 1, 2] }
}
"""


def _train_copy(net, model, batchnorm="per_task"):
    """A fresh model with `model`'s state, in train mode with dropout off (so outputs are deterministic)."""
    copy = partc.compile(net)
    copy.load_state_dict(model.state_dict())
    copy.batchnorm = batchnorm
    copy.train()
    for m in copy.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    return copy


def _train_cases():
    bn = partc.loads(BN_SPEC, "bn.part")
    torch.manual_seed(0)
    cases = [("bn", bn, partc.compile(bn), sizes) for sizes in ((3, 2, 5), (4, 4, 4), (2, 6, 3))]
    for spec in SMALL_SPECS:
        net, model, _ = compiled(spec)
        cases += [(spec.stem, net, model, (3, 2, 5, 4, 6)), (spec.stem, net, model, (4,) * 5)]
    return [pytest.param(*c, id=f"{c[0]}-{'-'.join(map(str, c[3]))}") for c in cases]


def _batches(net, sizes):
    gen = torch.Generator().manual_seed(2)
    return {name: torch.randn(sizes[k % len(sizes)], *net.inputs[t.input].shape, generator=gen)
            for k, (name, t) in enumerate(net.tasks.items())}


@pytest.mark.parametrize(("name", "net", "model", "sizes"), _train_cases())
@pytest.mark.usefixtures("one_thread")
def test_train_mode_forward_all_matches_per_task_forwards(name, net, model, sizes):
    """Logits and every BatchNorm buffer (running mean/var, batches tracked) after one fused call equal
    those after one forward per task, in task order, on a fresh copy."""
    batches = _batches(net, sizes)
    fused_model, task_model = _train_copy(net, model), _train_copy(net, model)
    fused = fused_model.forward_all(batches)
    expected = {t: task_model(batches[t], task=t) for t in task_model.task_names}
    for t in net.tasks:
        assert_rel_close(fused[t], expected[t], 1e-5, f"{name} train forward_all[{t}]")
    buffers = dict(task_model.named_buffers())
    assert buffers and buffers.keys() == dict(fused_model.named_buffers()).keys()
    for key, value in fused_model.named_buffers():
        if value.is_floating_point():
            assert_rel_close(value, buffers[key], 1e-5, f"{name} {key}")
        else:
            assert torch.equal(value, buffers[key]), key
    moved = [k for k, v in buffers.items() if k.endswith("running_mean") and v.abs().sum() > 0]
    assert moved, "the running statistics must have been updated"


@pytest.mark.parametrize(("name", "net", "model", "sizes"), _train_cases())
@pytest.mark.usefixtures("one_thread")
def test_train_mode_fused_gradients_match_per_task(name, net, model, sizes):
    batches = _batches(net, sizes)
    assert_fused_gradients_match(_train_copy(net, model), batches, _labels(net, batches), f"{name} train")


@pytest.mark.usefixtures("one_thread")
def test_train_mode_batch_of_one_fails_as_the_per_task_forward_does():
    """A 1-d BatchNorm cannot normalise one sample in train mode: the fused forward refuses the batch
    just as the task's own forward does (a 2-d one normalises over the pixels, so one sample is fine)."""
    net = partc.loads(BN_SPEC, "bn.part")
    model = partc.compile(net).train()
    batches = _batches(net, (3, 1, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(batches["b"], task="b")
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model.forward_all(batches)
    with torch.no_grad():  # eval mode: running statistics, any batch size
        model.eval()
        fused = model.forward_all(batches)
        assert_rel_close(fused["b"], model(batches["b"], task="b"), 1e-5, "eval, batch of one")


@pytest.mark.usefixtures("one_thread")
def test_joint_batchnorm_normalises_all_rows_together():
    """The old behaviour, kept as an option: one batch statistic over every task's rows of a segment."""
    net = partc.loads(BN_SPEC, "bn.part")
    torch.manual_seed(0)
    model = partc.compile(net, batchnorm="joint")
    assert model.batchnorm == "joint" and partc.compile(net).batchnorm == "per_task"
    batches = _batches(net, (3, 2, 5))
    joint = _train_copy(net, model, "joint").forward_all(batches)
    per_task = _train_copy(net, model).forward_all(batches)
    alone = _train_copy(net, model)
    for t in ("a", "c"):  # they share l1[0], so joint statistics mix their rows
        expected = alone(batches[t], task=t)
        assert_rel_close(per_task[t], expected, 1e-5, t)
        assert (joint[t] - expected).abs().max() > 1e-3, t
    with pytest.raises(ValueError, match="per_task, joint"):
        model.batchnorm = "shared"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_forward_all_on_gpu():
    net, model, _ = compiled(SMALL_SPECS[0])
    batches = _ragged_batches(net)
    gpu_model = partc.compile(net).eval()
    gpu_model.load_state_dict(model.state_dict())
    gpu_model.cuda()
    with torch.no_grad():
        fused = gpu_model.forward_all({t: x.cuda() for t, x in batches.items()})
        for name, x in batches.items():
            assert_rel_close(fused[name].cpu(), model(x, task=name), 1e-4, f"cuda forward_all[{name}]")


# ---- parameters: counts agree with the IR, and are shared by reference ----

@pytest.mark.parametrize("spec", spec_params())
def test_parameter_counts_match_the_ir(spec):
    net, model, _ = compiled(spec)
    count = lambda params: sum(p.numel() for p in params)  # noqa: E731
    for level in net.levels:
        for i in range(level.count):
            assert count(model.segment(level.name, i).parameters()) == net.segment_params(level.name, i), (level.name, i)
    for name in net.tasks:
        assert count(model.task_parameters(name)) == net.task_params(name), name
        assert count(model.task(name).parameters()) == net.task_params(name), name
    assert count(model.parameters()) == net.total_params


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=lambda p: p.stem)
def test_task_modules_share_parameters_by_reference(spec):
    net, model, inputs = compiled(spec)
    model_ptrs = {p.data_ptr() for p in model.parameters()}
    for name in net.tasks:
        module = model.task(name)
        task_ptrs = {p.data_ptr() for p in module.parameters()}
        assert task_ptrs == {p.data_ptr() for p in model.task_parameters(name)}
        assert task_ptrs <= model_ptrs
    name = next(iter(net.tasks))
    level = net.levels[0]
    weight = model.segment(level.name, net.tasks[name].path[level.name][0])[0].weight
    with torch.no_grad():
        before = model.task(name)(inputs[name])
        saved = weight.clone()
        weight.mul_(-2.0)
        after = model.task(name)(inputs[name])
        weight.copy_(saved)
    assert not torch.equal(before, after), "changing the model's weight must change the task module's output"


def test_reserved_names_are_a_spec_error(tmp_path):
    spec = tmp_path / "bad.part"
    spec.write_text("""network bad {
  input x: float[1, 4, 4]
  level forward = 2 x conv(2, pad=1) then avgpool
  task eval { data synthetic(classes=2) path random(1) }
}
""")
    with pytest.raises(PartError) as info:  # caught by the checker, before any torch module is built
        partc.load(spec)
    text = info.value.render()
    assert "bad.part:3:3: error: level name 'forward' is reserved" in text
    assert "task name 'eval' is reserved" in text


# ---- task-owned layers (task_batchnorm) ----

OWNED = ROOT / "tests" / "cases" / "specs" / "hand_counted_task_bn.part"


@pytest.fixture(scope="module")
def owned():
    torch.manual_seed(0)
    net = partc.load(OWNED)
    return net, partc.compile(net)


def test_a_task_owned_layer_holds_one_copy_per_task_of_its_segment(owned):
    net, model = owned
    for level in net.levels:
        container = f"levels.{level.name}"
        for i in range(level.count):
            users = [t for t in net.tasks if t in net.segment_users(level.name, i)]
            for j, layer in enumerate(level.group_of(i).layers):
                module = model.get_submodule(f"{container}.{i}.{j}")
                if layer.per_task:
                    assert isinstance(module, torch.nn.ModuleDict) and list(module) == users, (level.name, i, j)
                    for t in users:
                        assert isinstance(model.get_submodule(module_path(f"{container}.{i}", j, layer.op, t)),
                                          torch.nn.BatchNorm2d)
                else:
                    assert not isinstance(module, torch.nn.ModuleDict)
    keys = [k for k in model.state_dict() if k.startswith("levels.l1.1.1.")]
    assert keys == [f"levels.l1.1.1.{t}.{b}" for t in ("a", "b")
                    for b in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def test_a_task_module_calls_only_its_own_copies(owned):
    net, model = owned
    count = lambda params: sum(p.numel() for p in params)  # noqa: E731
    for name in net.tasks:
        module = model.task(name)
        called = {n.target for n in module.graph.nodes if n.op == "call_module"}
        owned_calls = {c for c in called if c.startswith("levels.") and len(c.split(".")) == 5}
        assert owned_calls and all(c.endswith(f".{name}") for c in owned_calls), (name, sorted(owned_calls))
        assert count(module.parameters()) == count(model.task_parameters(name)) == net.task_params(name)
        others = {id(p) for t in net.tasks if t != name for p in model.task_parameters(t)} - {
            id(p) for p in model.task_parameters(name)}
        assert not others & {id(p) for p in module.parameters()}
    assert count(model.parameters()) == net.total_params == 571
    plain = partc.compile(partc.load(OWNED.with_name("hand_counted.part")))  # no per-task layers
    segments = [n.target for n in plain.task("a").graph.nodes if n.op == "call_module" and n.target.startswith("lev")]
    assert segments == ["levels.l1.0", "levels.l1.1", "levels.l2.0", "levels.l3.0", "levels.l3.1"]  # one call each


@pytest.mark.parametrize("batchnorm", ["per_task", "joint"])
@pytest.mark.usefixtures("one_thread")
def test_task_owned_batchnorm_fused_equals_per_task_in_both_modes(owned, batchnorm):
    """Train mode: logits, gradients and every running statistic after one fused call equal one forward
    per task, also with `batchnorm joint` (which couples only shared BatchNorms); eval mode: logits."""
    net, model = owned
    batches = _batches(net, (3, 4, 5))
    fused_model, task_model = _train_copy(net, model, batchnorm), _train_copy(net, model, batchnorm)
    fused = fused_model.forward_all(batches)
    expected = {t: task_model(batches[t], task=t) for t in net.tasks}
    for t in net.tasks:
        assert_rel_close(fused[t], expected[t], 1e-5, f"train forward_all[{t}]")
    # With `joint`, the shared batchnorm of l2's segments normalises the tasks' rows together by design, and so
    # shifts what the task_batchnorm after it sees (its normalised output, and so the logits, agree anyway):
    # compare the own copies of l1 and l3, which see exactly what the per-task forwards give them.
    expected_state = task_model.state_dict()
    compared = [k for k in expected_state if batchnorm == "per_task" or k.startswith(("levels.l1.", "levels.l3."))]
    for key in compared:
        assert_rel_close(fused_model.state_dict()[key].double(), expected_state[key].double(), 1e-5, key)
    assert any(k.endswith(".c.running_var") for k in compared)
    if batchnorm == "per_task":
        assert_fused_gradients_match(_train_copy(net, model), batches, _labels(net, batches), "task_batchnorm train")
    with torch.no_grad():
        fused_model.eval()
        fused = fused_model.forward_all(batches)
        for t in net.tasks:
            assert_rel_close(fused[t], fused_model(batches[t], task=t), 1e-5, f"eval forward_all[{t}]")


@pytest.mark.usefixtures("one_thread")
def test_each_task_normalises_with_its_own_statistics(owned):
    """Eval mode: a task's rows are normalised with its own running statistics, in the task module and
    in the fused forward, whichever other tasks share the segment."""
    net, model = owned
    model = _train_copy(net, model).eval()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        before = {t: model(x, task=t) for t in net.tasks}
        model.levels["l1"][1][1]["b"].running_mean.add_(3.0)  # b's own copy in l1[1], which a and b share
        after = {t: model(x, task=t) for t in net.tasks}
        fused = model.forward_all({t: x for t in net.tasks})
    assert torch.equal(before["a"], after["a"]) and torch.equal(before["c"], after["c"])
    assert not torch.allclose(before["b"], after["b"])
    for t in net.tasks:
        assert_rel_close(fused[t], after[t], 1e-5, f"fused {t}")


# ---- routing properties over random small specs ----

@st.composite
def small_specs(draw):
    """Spec text: 1-3 levels of M=2..4 segments, random widths, residual or not, 2-3 tasks, BatchNorm
    shared by a segment's tasks or owned by each of them."""
    n_levels = draw(st.integers(1, 3))
    norm = draw(st.sampled_from(["batchnorm", "task_batchnorm"]))
    lines = ["network prop {", "  input x: float[2, 5, 5]", f"  seed {draw(st.integers(0, 10_000))}",
             f"  segment blk(c) {{ conv(c, k=3, pad=1); {norm}; relu }}"]
    counts, channels = [], 2
    for k in range(n_levels):
        m = draw(st.integers(2, 4))
        residual = draw(st.booleans())
        width = channels if residual else draw(st.integers(1, 5))
        then = " then relu, avgpool" if k == n_levels - 1 else draw(st.sampled_from(["", " then relu"]))
        lines.append(f"  level l{k} = {m} x blk({width}){' residual' if residual else ''}{then}")
        counts.append(m)
        channels = width
    for t in range(draw(st.integers(2, 3))):
        items = []
        for k, m in enumerate(counts):
            if draw(st.booleans()):
                indices = draw(st.lists(st.integers(0, m - 1), min_size=1, max_size=m, unique=True))
                items.append(f"l{k}[{', '.join(map(str, indices))}]")
            else:
                items.append(f"l{k} random({draw(st.integers(1, m))})")
        lines.append(f"  task t{t} {{ data synthetic(classes={draw(st.integers(2, 4))}) path {' '.join(items)} }}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _perturb(segment: torch.nn.Module) -> None:
    """New random weights, and running statistics (eval mode normalises with them)."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in segment.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        for name, b in segment.named_buffers():
            if b.is_floating_point():
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5 if name.endswith("running_var")
                        else torch.randn(b.shape, generator=gen))


def _others_copies(segment: torch.nn.Sequential, task: str) -> list[torch.nn.Module]:
    """The copies other tasks own of the segment's per-task layers."""
    return [copy for m in segment if isinstance(m, torch.nn.ModuleDict) for t, copy in m.items() if t != task]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_specs())
def test_routing_touches_only_the_tasks_path(text):
    net = partc.loads(text, "prop.part")
    torch.manual_seed(0)
    model = partc.compile(net)
    gen = torch.Generator().manual_seed(4)
    batches = {t: torch.randn(3, 2, 5, 5, generator=gen) for t in net.tasks}
    model.eval()
    assert_fused_gradients_match(model, batches, _labels(net, batches), "fused")
    for name, task in net.tasks.items():
        x = batches[name]
        # gradients: only the task's route receives any
        model.train()
        model.zero_grad(set_to_none=True)
        model(x, task=name).square().mean().backward()
        on_route = {id(p) for p in model.task_parameters(name)}
        for pname, p in model.named_parameters():
            if id(p) not in on_route:
                assert p.grad is None or not p.grad.any(), f"{name}: off-route {pname} got a gradient"
        model.eval()
        for level in net.levels:
            for i in range(level.count):
                with torch.no_grad():
                    before = model(x, task=name)
                    before_fused = model.forward_all(batches)[name]
                    saved = {k: v.clone() for k, v in model.segment(level.name, i).state_dict().items()}
                    _perturb(model.segment(level.name, i))
                    after = model(x, task=name)
                    after_fused = model.forward_all(batches)[name]
                    model.segment(level.name, i).load_state_dict(saved)
                if i in task.path[level.name]:
                    assert not torch.equal(before, after), f"{name}: perturbing on-path {level.name}[{i}] changed nothing"
                else:
                    assert torch.equal(before, after), f"{name}: perturbing off-path {level.name}[{i}] changed it"
                    assert torch.equal(before_fused, after_fused), f"{name}: fused output moved with {level.name}[{i}]"
                others = _others_copies(model.segment(level.name, i), name)
                if others:  # other tasks' own BatchNorms in a segment this task may share: never its business
                    with torch.no_grad():
                        saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in others]
                        for m in others:
                            _perturb(m)
                        after, after_fused = model(x, task=name), model.forward_all(batches)[name]
                        for m, state in zip(others, saved):
                            m.load_state_dict(state)
                    assert torch.equal(before, after), f"{name}: another task's own layer in {level.name}[{i}] moved it"
                    assert torch.equal(before_fused, after_fused), f"{name}: fused, {level.name}[{i}]"


# ---- torch.compile ----

@pytest.mark.slow
@pytest.mark.skipif(not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")),
                    reason="torch.compile's inductor backend needs a C++ compiler on CPU")
def test_torch_compile_matches_eager():
    spec = next(p for p in SPECS if p.stem == "split_digits")
    net, model, _ = compiled(spec)
    batches = _ragged_batches(net)
    name = next(iter(net.tasks))
    with torch.no_grad():
        compiled_task = torch.compile(model.task(name), backend="inductor")
        assert_rel_close(compiled_task(batches[name]), model(batches[name], task=name), 1e-5, "compiled task")
        compiled_all = torch.compile(model.forward_all, backend="inductor")
        fused, expected = compiled_all(batches), model.forward_all(batches)
        for t in net.tasks:
            assert_rel_close(fused[t], expected[t], 1e-5, f"compiled forward_all[{t}]")
