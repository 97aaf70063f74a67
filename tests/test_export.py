"""Export stage: per-task ONNX files of trained runs, checked against torch and the spec's counts."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

import partc
from partc.cli import main
from partc.errors import CheckpointError, ExportError
from partc.export import export_tasks
from partc.export.metadata import KEYS_OF_KIND
from partc.run import load_checkpoint, load_trained_model, run_paths, save_checkpoint
from tests.export_helpers import SPECS

FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}


def route_layers(net, task):
    """The IR layers on a task's route: stem, path segments, head."""
    t = net.tasks[task]
    layers = list(t.stem or [])
    for level in net.levels:
        for i in t.path[level.name]:
            layers += level.group_of(i).layers
    return layers + list(t.head)


def float_initializer_values(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(i.dims)) for i in model.graph.initializer if i.data_type in FLOATS)


@pytest.mark.slow  # carries the cost of the shared fixtures: training steps and 8 exports
@pytest.mark.parametrize("which", ["digits", "mixed"])
def test_round_trip_every_task_matches_torch(which, request):
    """spec -> compile -> real optimizer steps -> export -> ONNX Runtime, within 1e-4 for every task."""
    run_dir, _, results = request.getfixturevalue(which)
    net, model, state = load_trained_model(run_dir)
    assert [r.task for r in results] == list(net.tasks)
    for r in results:
        assert r.max_abs_diff <= 1e-4
        # An independent check: a fresh session, a batch of 5, inputs normalised as the data stage would.
        info = r.info
        session = ort.InferenceSession(str(r.path), providers=["CPUExecutionProvider"])
        raw = torch.rand(5, *info.input_shape, generator=torch.Generator().manual_seed(1))
        mean = torch.tensor(state["data_stats"][r.task]["mean"])[:, None, None]
        std = torch.tensor(state["data_stats"][r.task]["std"])[:, None, None]
        x = (raw - mean) / std
        with torch.inference_mode():
            expected = model(x, task=r.task).numpy()
        got = session.run(None, {info.input_name: x.numpy()})[0]
        assert np.abs(got - expected).max() <= 1e-4
        assert not np.allclose(expected, expected[0])  # distinct inputs give distinct outputs


def test_files_are_valid_onnx_with_a_dynamic_batch_axis(digits, mixed):
    for r in digits[2] + mixed[2]:
        model = onnx.load(str(r.path))
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version >= 17
        (inp,), (out,) = model.graph.input, model.graph.output
        assert inp.name == r.info.input_name and out.name == "logits"
        assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
        assert out.type.tensor_type.shape.dim[0].dim_param == "batch"
        assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == list(r.info.input_shape)
        assert {n.op_type for n in model.graph.node}.isdisjoint({"BatchNormalization", "Dropout"})


def test_metadata_describes_the_task(mixed):
    run_dir, _, results = mixed
    net = partc.load(run_paths(run_dir)["spec"])
    state = load_checkpoint(run_paths(run_dir)["last"])
    for r in results:
        props = {p.key: p.value for p in onnx.load(str(r.path)).metadata_props}
        assert set(KEYS_OF_KIND["task"]) <= set(props) and props["kind"] == "task" and props["normalization"] == "caller"
        stats = state["data_stats"][r.task]
        task = net.tasks[r.task]
        assert props["task"] == r.task and props["network"] == "mixed_inputs"
        assert props["spec_hash"] == net.spec_hash and props["partc_version"] == partc.__version__
        assert props["input_name"] == task.input
        assert json.loads(props["input_shape"]) == list(net.inputs[task.input].shape)
        assert props["input_dtype"] == "float32" and props["output_name"] == "logits"
        assert json.loads(props["labels"]) == stats["labels"] == task.labels
        assert json.loads(props["mean"]) == pytest.approx(stats["mean"])
        assert json.loads(props["std"]) == pytest.approx(stats["std"])
        assert props["weights"] == "checkpoint epoch 1 (last.pt)"
    # the stem task takes the second input shape
    photos = next(r for r in results if r.task == "photos")
    assert photos.info.input_shape == (3, 16, 16) and photos.info.input_name == "photo"


@pytest.mark.parametrize("which", ["digits", "mixed"])
def test_folded_file_holds_exactly_the_routes_conv_and_linear_weights(which, request):
    """After BatchNorm folding: file weights = conv/linear params of the route = task_params - BN scale/shift."""
    run_dir, _, results = request.getfixturevalue(which)
    net = partc.load(run_paths(run_dir)["spec"])
    for r in results:
        layers = route_layers(net, r.task)
        conv_linear = sum(layer.params for layer in layers if layer.op in ("conv", "linear"))
        batchnorm = sum(layer.params for layer in layers if layer.op == "batchnorm")
        assert sum(layer.params for layer in layers) == net.task_params(r.task)
        assert batchnorm > 0
        model = onnx.load(str(r.path))
        assert float_initializer_values(model) == conv_linear == net.task_params(r.task) - batchnorm
        assert r.weights.route_params == net.task_params(r.task)
        assert r.weights.file_weights == conv_linear and r.weights.folded_batchnorm == batchnorm


def test_unfolded_file_holds_exactly_the_routes_parameters(mixed, tmp_path):
    """Before folding: initializers named after parameters add up to net.task_params, name for name."""
    run_dir = mixed[0]
    net, model, _ = load_trained_model(run_dir)
    task = "photos"
    (result,) = export_tasks(run_dir, tmp_path, tasks=[task], fold=False)
    onnx_model = onnx.load(str(result.path))
    params = dict(model.task(task).named_parameters())
    initializers = {i.name: i for i in onnx_model.graph.initializer}
    stored_params = {name: i for name, i in initializers.items() if name in params}
    assert set(stored_params) == set(params)
    assert sum(int(np.prod(i.dims)) for i in stored_params.values()) == net.task_params(task)
    running = {n for n in initializers if n.endswith(("running_mean", "running_var"))}
    batchnorm = sum(layer.params for layer in route_layers(net, task) if layer.op == "batchnorm")
    assert float_initializer_values(onnx_model) == net.task_params(task) + batchnorm  # + mean/var, C each
    assert sum(int(np.prod(initializers[n].dims)) for n in running) == batchnorm
    assert "BatchNormalization" in {n.op_type for n in onnx_model.graph.node}
    assert result.max_abs_diff <= 1e-4


def test_a_file_holds_no_other_tasks_weights(digits, tmp_path):
    """Changing a segment off d01's path leaves d01's file byte-for-byte the same."""
    run_dir, _, results = digits
    net = partc.load(run_paths(run_dir)["spec"])
    d01 = next(r for r in results if r.task == "d01")
    level = net.levels[1]
    off_path = next(i for i in range(level.count) if i not in net.tasks["d01"].path[level.name])
    assert net.segment_users(level.name, off_path)  # another task uses it: its weights are trained
    prefix = f"levels.{level.name}.{off_path}."

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    state = load_checkpoint(run_paths(copy)["last"])
    changed = [k for k in state["model"] if k.startswith(prefix) and state["model"][k].is_floating_point()]
    for key in changed:
        state["model"][key] += 1.0
    assert changed
    save_checkpoint(run_paths(copy)["last"], state)
    (again,) = export_tasks(copy, tmp_path / "out", tasks=["d01"])
    assert again.path.read_bytes() == d01.path.read_bytes()
    names = {i.name for i in onnx.load(str(again.path)).graph.initializer}
    assert not any(n.startswith(prefix) for n in names)
    on_path = {f"levels.{lv}.{i}." for lv, ix in net.tasks["d01"].path.items() for i in ix}
    weights = {n for n in names if n.startswith("levels.")}
    assert weights and all(any(n.startswith(p) for p in on_path) for n in weights)


def test_task_file_is_much_smaller_than_the_whole_network(digits, capsys):
    run_dir, _, results = digits
    net = partc.load(run_paths(run_dir)["spec"])
    whole = net.total_params * 4
    with capsys.disabled():
        print(f"\nsplit_digits: whole network {net.total_params:,} params = {whole / 1e6:.2f} MB fp32")
        for r in results:
            print(f"  {r.task}.onnx {r.bytes / 1e6:.2f} MB = {r.bytes / whole:.0%} of the whole network")
    for r in results:
        assert r.bytes < 0.45 * whole  # 3 of 8 segments per level
        assert abs(r.bytes - 4 * r.weights.file_weights) < 0.05 * r.bytes  # the file is its weights


def _parse_pbtxt(text: str):
    """A tiny protobuf-text reader: {field: [values]}, messages as nested dicts."""
    tokens = re.findall(r'"[^"]*"|[A-Za-z_][A-Za-z0-9_]*|-?\d+|[{}\[\]:,]', text)
    pos = 0

    def value():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            return message("}")
        if tok == "[":
            items = []
            while tokens[pos] != "]":
                items.append(value())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return items
        return tok[1:-1] if tok.startswith('"') else int(tok) if tok.lstrip("-").isdigit() else tok

    def message(end):
        nonlocal pos
        fields: dict = {}
        while pos < len(tokens) and tokens[pos] != end:
            name = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            fields.setdefault(name, []).append(value())
        pos += 1
        return fields

    return message(None)


def test_triton_layout_and_config(mixed):
    _, out, results = mixed
    assert sorted(p.name for p in out.iterdir()) == ["high", "low", "photos"]
    for r in results:
        folder = out / r.task
        assert r.path == folder / "1" / "model.onnx" and r.path.is_file()
        config = _parse_pbtxt((folder / "config.pbtxt").read_text())
        assert config["name"] == [r.task]
        assert config["platform"] == ["onnxruntime_onnx"]
        assert config["max_batch_size"] == [64]
        (inp,) = config["input"][0]
        (out_,) = config["output"][0]
        assert inp == {"name": [r.info.input_name], "data_type": ["TYPE_FP32"], "dims": [list(r.info.input_shape)]}
        assert out_ == {"name": ["logits"], "data_type": ["TYPE_FP32"], "dims": [[len(r.info.outputs[0].labels)]],
                        "label_filename": ["labels.txt"]}
        assert (folder / "labels.txt").read_text().splitlines() == list(r.info.outputs[0].labels)
        session = ort.InferenceSession(str(r.path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == [r.info.input_name]


@pytest.mark.slow
def test_cli_exports_a_spec_at_opset_17(tmp_path, capsys):
    """Straight from a spec (untrained weights), through the CLI, at the oldest supported opset."""
    rc = main(["export", str(SPECS / "mixed_inputs.part"), "--task", "photos", "-o", str(tmp_path), "--opset", "17",
               "--max-batch", "8"])
    out = capsys.readouterr().out
    assert rc == 0
    assert re.search(r"photos: .*photos\.onnx .* max \|onnxruntime - torch\| = \S+ \(batch 1 and 3\)", out)
    model = onnx.load(str(tmp_path / "photos.onnx"))
    assert model.opset_import[0].version == 17
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["weights"].startswith("untrained")
    assert json.loads(props["mean"]) == [0.0, 0.0, 0.0] and json.loads(props["std"]) == [1.0, 1.0, 1.0]
    assert props["max_batch"] == "8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos.onnx"]


@pytest.mark.slow
def test_a_mismatch_is_an_export_error_and_writes_nothing(tmp_path):
    with pytest.raises(ExportError, match="differs from torch"):
        export_tasks(SPECS / "mixed_inputs.part", tmp_path, tasks=["photos"], tolerance=-1.0)
    assert not any(tmp_path.iterdir())


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    spec = str(SPECS / "split_digits.part")
    (tmp_path / "model.onnx").write_bytes(b"")
    cases = [
        (["export", str(tmp_path / "model.onnx"), "-o", str(tmp_path)], "neither a checkpoint (.pt) nor a spec"),
        (["export", spec, "--task", "nope", "-o", str(tmp_path)], "unknown task(s) nope"),
        (["export", str(tmp_path / "missing"), "-o", str(tmp_path)], "does not exist"),
        (["export", spec, "--opset", "12", "-o", str(tmp_path)], "opset 12 is too old"),
        (["export", spec, "--max-batch", "0", "-o", str(tmp_path)], "--max-batch must be at least 1"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_a_corrupt_checkpoint_is_a_checkpoint_error(digits, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(digits[0], copy)
    last = run_paths(copy)["last"]
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        export_tasks(copy, tmp_path / "out")
    # a checkpoint without data_stats cannot say how to normalise: refused
    state = load_checkpoint(run_paths(copy)["init"])
    del state["data_stats"]
    save_checkpoint(last, state)
    with pytest.raises(CheckpointError, match="no data_stats"):
        export_tasks(copy, tmp_path / "out")


def test_initializers_keep_trained_values(digits):
    """The head's final linear layer is stored unfolded: its values are the checkpoint's."""
    run_dir, _, results = digits
    state = load_checkpoint(run_paths(run_dir)["last"])
    for r in results:
        arrays = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(r.path)).graph.initializer}
        (key,) = [k for k, v in state["model"].items() if k.startswith(f"heads.{r.task}.") and v.ndim == 2]
        np.testing.assert_array_equal(arrays[key], state["model"][key].numpy())


@pytest.mark.slow
def test_normalisation_folded_into_the_graph_for_triton(digits, tmp_path):
    """--normalize-in-graph: the file takes raw input and gives the caller-normalised file's logits."""
    run_dir, export_dir, _ = digits
    (result,) = export_tasks(run_dir, tmp_path, tasks=["d23"], layout="triton", normalize_in_graph=True,
                             dynamic_batching=True)
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert props["normalization"] == "in_graph" and "applies (x - mean) / std itself" in props["preprocess"]
    assert result.weights.file_weights == next(r for r in digits[2] if r.task == "d23").weights.file_weights
    config = (tmp_path / "d23" / "config.pbtxt").read_text()
    assert config.rstrip().endswith("dynamic_batching { }")
    raw = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(3)).numpy()
    folded = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    caller = ort.InferenceSession(str(export_dir / "d23.onnx"), providers=["CPUExecutionProvider"])
    meta = caller.get_modelmeta().custom_metadata_map
    mean = np.array(json.loads(meta["mean"]), np.float32).reshape(-1, 1, 1)
    std = np.array(json.loads(meta["std"]), np.float32).reshape(-1, 1, 1)
    assert not np.allclose(mean, 0) and not np.allclose(std, 1)  # a trained run's statistics, not the identity
    np.testing.assert_allclose(folded.run(None, {"digit": raw})[0], caller.run(None, {"digit": (raw - mean) / std})[0],
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ExportError, match="configures Triton"):
        export_tasks(run_dir, tmp_path / "plain", tasks=["d23"], dynamic_batching=True)


# ---- task-owned BatchNorm (task_batchnorm): each file folds its own task's statistics ----

# Task a's route lies inside b's: every conv of a's file is on b's route too, its BatchNorm copies are not.
OWNED_SPEC = """network owned {
  input x: float[1, 8, 8]
  seed 2
  segment blk(c) { conv(c, k=3, pad=1); task_batchnorm; relu }
  level l1 = 3 x blk(6)
  level l2 = 2 x blk(6) residual then avgpool
  task a { data digits(classes=[0, 1, 2]) path l1[0, 1] l2[0] }
  task b { data digits(classes=[3, 4]) path l1[0, 1, 2] l2[0, 1] }
  train { epochs 1; batch 16 }
}
"""


@pytest.fixture(scope="module")
def owned_run(tmp_path_factory):
    from tests.export_helpers import make_trained_run

    base = tmp_path_factory.mktemp("owned")
    (base / "owned.part").write_text(OWNED_SPEC)
    run_dir = make_trained_run(base / "owned.part", base / "run")
    (folded,) = export_tasks(run_dir, base / "folded", tasks=["a"])
    (unfolded,) = export_tasks(run_dir, base / "unfolded", tasks=["a"], fold=False)
    return run_dir, folded, unfolded


def test_a_task_file_folds_its_own_batchnorm_statistics(owned_run):
    run_dir, folded, _ = owned_run
    net, model, _ = load_trained_model(run_dir)
    layers = route_layers(net, "a")
    own = sum(layer.params for layer in layers if layer.op == "task_batchnorm")
    conv_linear = sum(layer.params for layer in layers if layer.op in ("conv", "linear"))
    assert own == 3 * 2 * 6 and sum(layer.params for layer in layers) == net.task_params("a")
    proto = onnx.load(str(folded.path))
    assert float_initializer_values(proto) == conv_linear == net.task_params("a") - own
    assert (folded.weights.route_params, folded.weights.folded_batchnorm) == (net.task_params("a"), own)
    assert folded.max_abs_diff <= 1e-4
    # l1[1], shared with b: its conv in a's file is folded with a's own statistics, not b's
    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    conv = model.levels["l1"][1][0].weight.detach()

    def fold(bn):
        return (conv * (bn.weight / torch.sqrt(bn.running_var + bn.eps))[:, None, None, None]).detach().numpy()

    own_bn, other_bn = model.levels["l1"][1][1]["a"], model.levels["l1"][1][1]["b"]
    assert np.allclose(weights["levels.l1.1.0.weight"], fold(own_bn), rtol=1e-5, atol=1e-6)
    assert not np.allclose(weights["levels.l1.1.0.weight"], fold(other_bn), rtol=1e-3, atol=1e-4)


def test_an_unfolded_task_file_holds_exactly_its_own_copies(owned_run):
    run_dir, _, unfolded = owned_run
    net, model, _ = load_trained_model(run_dir)
    proto = onnx.load(str(unfolded.path))
    names = {i.name for i in proto.graph.initializer}
    params = dict(model.task("a").named_parameters())
    assert set(params) <= names and sum(p.numel() for p in params.values()) == net.task_params("a")
    copies = {n for n in names if re.match(r"levels\.l\d\.\d\.1\.", n)}
    assert copies and all(n.split(".")[4] == "a" for n in copies)  # levels.l1.1.1.a.running_mean, ...
    # the audit attributes copies to their task: a's file is not on b's route, though all its convs are
    from partc.export.verify import audit_weights

    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    with pytest.raises(ExportError, match=r"holds 'levels\.l\d\.\d\.1\.a\."):
        audit_weights(proto, net, ["b"], weights, dict(model.named_parameters()), "task 'b'")


def test_another_tasks_own_copy_never_reaches_a_task_file(owned_run, tmp_path):
    """Changing b's own BatchNorm in l1[1] (which a shares) leaves a's file byte-for-byte the same."""
    run_dir, folded, _ = owned_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    state = load_checkpoint(run_paths(copy)["last"])
    changed = [k for k in state["model"] if k.startswith("levels.l1.1.1.b.") and state["model"][k].is_floating_point()]
    for key in changed:
        state["model"][key] += 0.5
    assert len(changed) == 4  # weight, bias, running mean and variance
    save_checkpoint(run_paths(copy)["last"], state)
    (again,) = export_tasks(copy, tmp_path / "out", tasks=["a"])
    assert again.path.read_bytes() == folded.path.read_bytes()


CASE_SPEC = """network cases {
  input x: float[1, 8, 8]
  level l1 = 2 x conv(4, k=3, pad=1) then relu, avgpool
  task a { data synthetic(classes=2, samples=20) path l1[0] }
  task A { data synthetic(classes=2, samples=20) path l1[1] }
}
"""


def test_task_files_that_differ_only_in_case_are_refused_where_the_folder_ignores_case(tmp_path, monkeypatch):
    from partc.export import pipeline

    spec = tmp_path / "cases.part"
    spec.write_text(CASE_SPEC)
    assert pipeline._case_sensitive(tmp_path / "not" / "yet")  # this machine's file system tells a from A
    files = export_tasks(spec, tmp_path / "out")
    assert sorted(f.path.name for f in files) == ["A.onnx", "a.onnx"]
    monkeypatch.setattr(pipeline, "_case_sensitive", lambda out: False)  # as on macOS or Windows
    with pytest.raises(ExportError, match="ignores case, so the files of tasks 'a' and 'A' would be one file"):
        export_tasks(spec, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    (one,) = export_tasks(spec, tmp_path / "just_a", tasks=["a"])  # one task at a time still works
    assert one.path.name == "a.onnx"
