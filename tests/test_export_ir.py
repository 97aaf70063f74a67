"""Export stage, the IR emitter: every layer primitive, task-owned layers and fused files, against torch.

The per-task files of the shared trained runs are tested in test_export.py;
here the emitter is driven directly (every primitive, BatchNorm with trained
statistics folded or not, a primitive with `per_task`) and through
`export_fused` / `partc export --fused` on the same trained runs.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import partc
from partc.cli import main
from partc.errors import ExportError
from partc.export import export_fused
from partc.export.emit import emit_model
from partc.export.metadata import FUSED, IN_GRAPH, ModelInfo
from partc.export.verify import audit_weights, check_onnx
from partc.layers import PRIMITIVES
from partc.run import load_checkpoint, run_paths, save_checkpoint
from partc.train.flops import layer_macs, task_forward_flops
from tests.export_helpers import SPECS

# Every primitive, BatchNorm after a bias-free conv and a bias-free linear (folds that create a bias), and
# BatchNorm where nothing can absorb it (after relu; it stays a BatchNormalization node).
EVERY_LAYER = """
network every_layer {
  input x: float[3, 12, 12]
  seed 3
  segment a(c) { conv(c, k=3, pad=1, bias=false); batchnorm; gelu; conv(c, k=1, groups=2); relu; batchnorm }
  segment b(c) { layernorm; conv(c, k=3, pad=1); batchnorm; relu; dropout(0.3) }
  level l1 = 2 x a(8) + 1 x b(8)           then relu, maxpool(2)
  level l2 = 3 x b(8)             residual then avgpool(2, stride=1)
  level l3 = 2 x a(16)                     then avgpool
  task p {
    data synthetic(classes=3, samples=64)
    path l1[0, 2] l2[0, 1] l3[0]
    head { flatten; linear(12, bias=false); batchnorm; gelu; layernorm; linear(3) }
  }
  task q { data synthetic(classes=4, samples=64) path l1[0, 1] l2[1, 2] l3[0, 1] }
}
"""


def randomised(model: torch.nn.Module, seed: int = 0) -> dict[str, np.ndarray]:
    """Give every BatchNorm and LayerNorm trained-looking values (an untrained one is the identity), as numpy."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm)):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
    return {k: v.numpy() for k, v in model.state_dict().items()}


def task_info(net, task: str, normalization: str = "caller") -> ModelInfo:
    t = net.tasks[task]
    channels = net.inputs[t.input].shape[0]
    return ModelInfo.for_task(task=task, labels=t.labels, mean=[0.0] * channels, std=[1.0] * channels,
                              normalization=normalization, network=net.name, spec_hash=net.spec_hash,
                              partc_version="test", weights="test", input_name=t.input,
                              input_shape=net.inputs[t.input].shape, input_dtype="float32", max_batch=8)


def fused_info(net, tasks, stats) -> ModelInfo:
    t = net.tasks[tasks[0]]
    return ModelInfo.for_network(
        tasks={name: {"labels": net.tasks[name].labels, **stats[name]} for name in tasks}, network=net.name,
        spec_hash=net.spec_hash, partc_version="test", weights="test", input_name=t.input,
        input_shape=net.inputs[t.input].shape, input_dtype="float32", max_batch=8)


def run(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x})))


def test_every_primitive_has_an_onnx_rule():
    assert all(p.onnx is not None for p in PRIMITIVES.values())
    assert {n for n, p in PRIMITIVES.items() if p.absorbs} == {"conv", "linear"}
    assert {n for n, p in PRIMITIVES.items() if p.affine} == {"batchnorm", "task_batchnorm"}


@pytest.mark.parametrize("fold", [True, False])
def test_every_layer_matches_torch_folded_or_not(fold):
    net = partc.loads(EVERY_LAYER)
    torch.manual_seed(0)
    model = partc.compile(net).eval()
    weights = randomised(model)
    params = {n for n, _ in model.named_parameters()}
    x = torch.randn(5, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    for task in net.tasks:
        emitted = emit_model(net, [task], weights, task_info(net, task), fold=fold)
        check_onnx(emitted.model, task)
        with torch.inference_mode():
            expected = model(x, task=task).numpy()
        np.testing.assert_allclose(run(emitted.model, x.numpy())["logits"], expected, rtol=1e-4, atol=1e-5)
        assert 2 * emitted.macs == task_forward_flops(net, task)  # the FLOPs rule is the train stage's
        audit = audit_weights(emitted.model, net, [task], weights, params, task)
        ops = [n.op_type for n in emitted.model.graph.node]
        assert "Dropout" not in ops
        if fold:
            # BatchNorm after conv/linear folds; after relu (segment a's last) it cannot, and stays a node
            assert ops.count("BatchNormalization") == sum(
                1 for i in net.tasks[task].path["l1"] + net.tasks[task].path["l3"] if i < 2)
            assert audit.created_bias > 0 and audit.folded_batchnorm > 0
            assert audit.file_weights == (audit.route_params - audit.folded_batchnorm + audit.created_bias
                                          + sum(int(np.prod(i.dims)) for i in emitted.model.graph.initializer
                                                if i.name.endswith(("running_mean", "running_var"))))
        else:
            assert audit.folded_batchnorm == audit.created_bias == 0
            assert audit.file_weights == audit.route_params + sum(
                v.size for k, v in weights.items() if k.endswith(("running_mean", "running_var"))
                and k.rpartition(".")[0] in {i.name.rpartition(".")[0] for i in emitted.model.graph.initializer})


def test_the_emitter_is_deterministic_and_names_weights_after_the_state_dict():
    net = partc.loads(EVERY_LAYER)
    torch.manual_seed(0)
    model = partc.compile(net).eval()
    weights = randomised(model)
    first = emit_model(net, ["p"], weights, task_info(net, "p")).model.SerializeToString()
    assert emit_model(net, ["p"], dict(weights), task_info(net, "p")).model.SerializeToString() == first
    names = {i.name for i in onnx.load_from_string(first).graph.initializer}
    weighted = {n for n in names if not n.startswith("const:")}
    assert weighted and weighted <= set(weights) | {"levels.l1.0.0.bias", "levels.l3.0.0.bias", "heads.p.1.bias"}


# ---- task-owned BatchNorm (`task_batchnorm`, a `per_task` primitive: each task's own module) ----

PER_TASK_SPEC = """
network owned {
  input x: float[2, 6, 6]
  seed 5
  segment s(c) { conv(c, k=3, pad=1); task_batchnorm; relu }
  level l1 = 3 x s(4) then relu
  level l2 = 2 x s(4) residual then avgpool
  task a { data synthetic(classes=2, samples=32) path l1[0, 1] l2[0] }
  task b { data synthetic(classes=3, samples=32) path l1[0, 2] l2[0, 1] }
  task c { data synthetic(classes=2, samples=32) path l1[0, 1] l2[0] }
  task d { stem { conv(2, k=3, pad=1); relu } data synthetic(classes=2, samples=32) path l1[0, 1] l2[1] }
}
"""


def test_a_per_task_primitive_uses_each_tasks_own_module():
    """Per-task files fold each task's own BatchNorm; a fused file splits the shared rows where the tasks part.

    Task d has a stem on the same input: it is fused too, on a stream of its own from its stem on.
    """
    net = partc.loads(PER_TASK_SPEC)
    torch.manual_seed(0)
    model = partc.compile(net).eval()
    weights = randomised(model)  # every task's own BatchNorm gets values of its own
    params = {k for k, _ in model.named_parameters()}

    def torch_logits(task, x):
        with torch.inference_mode():
            return model(torch.from_numpy(x), task=task).numpy()

    x = np.random.default_rng(2).standard_normal((4, 2, 6, 6)).astype(np.float32)
    expected = {t: torch_logits(t, x) for t in net.tasks}
    for task in net.tasks:
        emitted = emit_model(net, [task], weights, task_info(net, task))
        audit = audit_weights(emitted.model, net, [task], weights, params, task)
        assert audit.route_params == net.task_params(task) and audit.folded_batchnorm > 0
        assert not any(f".1.{other}." in i.name for i in emitted.model.graph.initializer for other in net.tasks
                       if other != task)
        np.testing.assert_allclose(run(emitted.model, x)["logits"], expected[task], rtol=1e-4, atol=1e-5)
    identity = {t: {"mean": [0.0, 0.0], "std": [1.0, 1.0]} for t in net.tasks}
    tasks = list(net.tasks)
    fused = emit_model(net, tasks, weights, fused_info(net, tasks, identity), normalize={
        t: (s["mean"], s["std"]) for t, s in identity.items()})
    check_onnx(fused.model, "fused")
    got = run(fused.model, x)
    for task in tasks:
        np.testing.assert_allclose(got[task], expected[task], rtol=1e-4, atol=1e-5)
    # Two streams at the input: a, b, c (the same normalisation, no stem) and d's stem. l1[0] runs once on both
    # stacked, and its per-task BatchNorm is four nodes on the four tasks' rows; a and c share l1[0, 1] up to
    # their BatchNorms.
    ops = [n.op_type for n in fused.model.graph.node]
    assert ops.count("Conv") == 1 + 3 + 2 and ops.count("BatchNormalization") == 4 + 3 + 3 + 2
    assert ops.count("Split") >= 1
    assert 2 * fused.macs < sum(task_forward_flops(net, t) for t in tasks)


# ---- fused files of the trained runs ----

@pytest.fixture(scope="module")
def fused_digits(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("fused_digits")
    return export_fused(digits[0], out), out


def test_each_fused_output_equals_its_tasks_own_file(digits, fused_digits):
    _, export_dir, results = digits
    fused, _ = fused_digits
    model = onnx.load(str(fused.path))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["kind"] == FUSED and props["normalization"] == IN_GRAPH and props["network"] == "split_digits"
    assert json.loads(props["tasks"]) == [r.task for r in results] == [o.name for o in model.graph.output]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert all(o.type.tensor_type.shape.dim[0].dim_param == "batch" for o in model.graph.output)
    assert fused.path.name == "split_digits.onnx" and max(fused.max_abs_diff.values()) <= 1e-4

    raw = np.random.default_rng(4).random((6, 1, 8, 8), dtype=np.float32)
    got = run(model, raw)
    for r in results:
        session = ort.InferenceSession(str(r.path), providers=["CPUExecutionProvider"])
        out = r.info.outputs[0]
        mean, std = (np.asarray(v, np.float32).reshape(-1, 1, 1) for v in (out.mean, out.std))
        np.testing.assert_allclose(got[r.task], session.run(None, {"digit": (raw - mean) / std})[0], rtol=0, atol=1e-5)


def test_a_fused_file_holds_the_union_of_the_routes_weights_once(digits, fused_digits):
    """Exactly the weights of the task files (the same names, the same folded values), each stored once."""
    _, _, results = digits
    fused, _ = fused_digits
    net = partc.load(run_paths(digits[0])["spec"])
    fused_arrays = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(fused.path)).graph.initializer}
    union: dict[str, np.ndarray] = {}
    for r in results:
        union |= {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(r.path)).graph.initializer}
    weights = lambda arrays: {n for n in arrays if not n.startswith(("input_", "const:"))}  # noqa: E731
    assert weights(fused_arrays) == weights(union)
    for name in weights(union):
        np.testing.assert_array_equal(fused_arrays[name], union[name])
    segments = {(lv, i) for t in net.tasks.values() for lv, ix in t.path.items() for i in ix}
    union_params = sum(net.level(lv).segment_params(i) for lv, i in segments) + sum(
        t.stem_params + t.head_params for t in net.tasks.values())
    assert fused.weights.route_params == union_params < sum(r.weights.route_params for r in results)
    assert fused.weights.file_weights == union_params - fused.weights.folded_batchnorm
    # per-task statistics differ (each task's own data), so no two tasks share a tensor: FLOPs are the sum
    assert fused.flops == fused.task_flops == sum(task_forward_flops(net, t) for t in net.tasks)
    assert all(r.flops == task_forward_flops(net, r.task) for r in results)


def test_off_union_weights_leave_a_fused_file_unchanged(digits, tmp_path):
    """Bytes are deterministic, and a segment no chosen task uses does not reach the file."""
    run_dir = digits[0]
    net = partc.load(run_paths(run_dir)["spec"])
    chosen = ["d01", "d23"]
    first = export_fused(run_dir, tmp_path / "a", tasks=chosen)
    level, off = next((lv, i) for lv in net.levels for i in range(lv.count)
                      if not any(i in net.tasks[t].path[lv.name] for t in chosen) and net.segment_users(lv.name, i))
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    state = load_checkpoint(run_paths(copy)["last"])
    prefix = f"levels.{level.name}.{off}."
    for key in [k for k in state["model"] if k.startswith(prefix) and state["model"][k].is_floating_point()]:
        state["model"][key] += 1.0
    save_checkpoint(run_paths(copy)["last"], state)
    again = export_fused(copy, tmp_path / "b", tasks=chosen)
    assert again.path.read_bytes() == first.path.read_bytes()
    assert [o.name for o in onnx.load(str(again.path)).graph.output] == chosen


def test_fused_cli_triton_layout_subset_and_other_inputs(mixed, tmp_path, capsys):
    """Tasks of another input are refused with the way out; the digit tasks fuse (opset 17, Triton layout)."""
    run_dir = mixed[0]
    assert main(["export", str(run_dir), "--fused", "-o", str(tmp_path / "all")]) == 2
    err = capsys.readouterr().err
    assert "a fused file takes one input, but the tasks take 2 (input 'digit': low, high; input 'photo': photos)" in err
    assert "--task low --task high" in err and "Traceback" not in err
    assert not (tmp_path / "all").exists() or not any((tmp_path / "all").iterdir())

    out = tmp_path / "repo"
    rc = main(["export", str(run_dir), "--fused", "--task", "high", "--task", "low", "-o", str(out), "--layout",
               "triton", "--opset", "17", "--dynamic-batching"])
    assert rc == 0
    line = capsys.readouterr().out
    assert "mixed_inputs (fused, 2 task(s): high, low)" in line and "ideal ratio" in line
    model = onnx.load(str(out / "mixed_inputs" / "1" / "model.onnx"))
    assert model.opset_import[0].version == 17 and [o.name for o in model.graph.output] == ["high", "low"]
    config = (out / "mixed_inputs" / "config.pbtxt").read_text()
    assert 'name: "mixed_inputs"' in config and 'label_filename: "labels_low.txt"' in config
    assert config.rstrip().endswith("dynamic_batching { }")
    net = partc.load(run_paths(run_dir)["spec"])
    assert (out / "mixed_inputs" / "labels_high.txt").read_text().splitlines() == net.tasks["high"].labels


def test_shared_normalisation_shares_the_first_level():
    """Straight from a spec (every task normalised alike): low and high share l1[3], which runs once."""
    net = partc.load(SPECS / "mixed_inputs.part")
    shared = set(net.tasks["low"].path["l1"]) & set(net.tasks["high"].path["l1"])
    assert shared == {3}
    torch.manual_seed(0)
    model = partc.compile(net).eval()
    weights = randomised(model)
    tasks = ["low", "high"]
    stats = {t: {"mean": [0.1], "std": [0.5]} for t in tasks}
    emitted = emit_model(net, tasks, weights, fused_info(net, tasks, stats),
                         normalize={t: ([0.1], [0.5]) for t in tasks})
    once = 2 * sum(layer_macs(layer) for layer in net.level("l1").group_of(3).layers)
    assert 2 * emitted.macs == sum(task_forward_flops(net, t) for t in tasks) - once
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    got = run(emitted.model, x)
    for t in tasks:
        with torch.inference_mode():
            expected = model(torch.from_numpy((x - 0.1) / 0.5), task=t).numpy()
        np.testing.assert_allclose(got[t], expected, rtol=1e-4, atol=1e-5)


def test_predict_reads_a_fused_file_given_a_task(digits, fused_digits, tmp_path, capsys):
    _, export_dir, _ = digits
    fused, _ = fused_digits
    sample = tmp_path / "x.npy"
    np.save(sample, np.random.default_rng(5).random((2, 1, 8, 8), dtype=np.float32))
    assert main(["predict", str(fused.path), "--task", "d45", str(sample), "--json", "--top", "2"]) == 0
    from_fused = json.loads(capsys.readouterr().out)
    assert main(["predict", str(export_dir / "d45.onnx"), str(sample), "--json", "--top", "2"]) == 0
    from_task = json.loads(capsys.readouterr().out)
    assert from_fused["task"] == "d45"
    for a, b in zip(from_fused["predictions"], from_task["predictions"]):
        assert [e["label"] for e in a["top"]] == [e["label"] for e in b["top"]]
        assert [e["probability"] for e in a["top"]] == pytest.approx([e["probability"] for e in b["top"]], abs=1e-5)
    assert main(["predict", str(fused.path), str(sample)]) == 2
    assert "holds several tasks; choose one" in capsys.readouterr().err


def test_a_fused_mismatch_names_the_output_and_writes_nothing(tmp_path):
    with pytest.raises(ExportError, match=r"fused 'mixed_inputs': ONNX Runtime differs from torch by .* at output"):
        export_fused(SPECS / "mixed_inputs.part", tmp_path, tasks=["low", "high"], tolerance=-1.0)
    assert not any(tmp_path.iterdir())
