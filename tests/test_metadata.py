"""Export/serve contract: the metadata of task and fused files, read back and checked against the graph at load.

Small ONNX models are built by hand with onnx.helper (flatten, then one
matmul per output), so each way a file can lie about its graph is one line
of a table, and loading must refuse it with a message naming the problem.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from partc.errors import ExportError
from partc.export.metadata import CALLER, FUSED, IN_GRAPH, TASK, ModelInfo, graph_problems
from partc.serve.models import load_models, load_task

SHAPE = (2, 2, 2)  # C, H, W
COMMON = dict(network="toy", spec_hash="abc123", partc_version="0.1.0", weights="untrained (random init, seed 1)",
              input_name="image", input_shape=SHAPE, input_dtype="float32", max_batch=8)


def task_info(**changes) -> ModelInfo:
    fields = dict(task="t", labels=["no", "yes"], mean=[0.25, 0.5], std=[0.5, 2.0], **COMMON)
    return ModelInfo.for_task(**{**fields, **changes})


def fused_info(**changes) -> ModelInfo:
    tasks = {"a": {"labels": ["0", "1"], "mean": [0.1, 0.2], "std": [1.0, 0.5]},
             "b": {"labels": ["x", "y", "z"], "mean": [0.3, 0.4], "std": [2.0, 4.0]}}
    return ModelInfo.for_network(tasks=tasks, **{**COMMON, **changes})


def weights(classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((int(np.prod(SHAPE)), classes)).astype(np.float32)


def build(path, props: dict[str, str], outputs: dict[str, int], *, input_name="image", input_type=TensorProto.FLOAT,
          input_shape=("batch", *SHAPE), hide_sizes: bool = False) -> dict[str, np.ndarray]:
    """Write flatten -> matmul per output (name -> logits) with `props` as metadata; returns the weights.

    `hide_sizes`: reshape each output to [batch, -1] so that the graph no
    longer says how many logits it gives (ONNX Runtime reports [None, None]).
    """
    nodes = [helper.make_node("Cast", [input_name], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("Flatten", ["xf"], ["flat"], axis=1),
             helper.make_node("Shape", ["xf"], ["batch"], start=0, end=1),
             helper.make_node("Concat", ["batch", "minus_one"], ["rows"], axis=0)]
    inits = [numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    values, ws = [], {}
    for i, (name, classes) in enumerate(outputs.items()):
        ws[name] = weights(classes, i)
        inits.append(numpy_helper.from_array(ws[name], f"w_{name}"))
        if hide_sizes:
            nodes += [helper.make_node("MatMul", ["flat", f"w_{name}"], [f"{name}_mm"]),
                      helper.make_node("Reshape", [f"{name}_mm", "rows"], [name])]
        else:
            nodes.append(helper.make_node("MatMul", ["flat", f"w_{name}"], [name]))
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None if hide_sizes else ["batch", classes]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(input_name, input_type, list(input_shape))],
                              values, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return ws


def test_task_metadata_round_trips_and_a_task_file_serves(tmp_path):
    info = task_info()
    props = info.to_metadata()
    assert props["kind"] == TASK and props["normalization"] == CALLER and props["task"] == "t"
    assert json.loads(props["labels"]) == ["no", "yes"] and props["output_name"] == "logits"
    assert ModelInfo.from_metadata(props) == info
    ws = build(tmp_path / "t.onnx", props, {"logits": 2})
    model = load_task(tmp_path, "t")
    raw = np.random.default_rng(0).random((3, *SHAPE), dtype=np.float32)
    normalised = (raw - np.array([0.25, 0.5], np.float32)[:, None, None]) / np.array([0.5, 2.0], np.float32)[:, None, None]
    np.testing.assert_allclose(model.predict(raw), normalised.reshape(3, -1) @ ws["logits"], rtol=1e-5, atol=1e-5)
    assert model.info.to_json()["outputs"][0] == {"task": "t", "name": "logits", "classes": 2, "labels": ["no", "yes"],
                                                 "mean": [0.25, 0.5], "std": [0.5, 2.0]}
    assert str(tmp_path) not in json.dumps(model.describe())  # no file-system paths in what serving shows


def test_a_file_from_before_the_kind_key_is_a_caller_normalised_task_file(tmp_path):
    props = task_info().to_metadata()
    del props["kind"], props["normalization"]
    build(tmp_path / "t.onnx", props, {"logits": 2})
    (model,) = load_models(tmp_path).values()
    assert model.info.kind == TASK and model.info.normalization == CALLER


def test_a_fused_file_serves_every_task_and_normalises_in_its_graph(tmp_path):
    info = fused_info()
    props = info.to_metadata()
    assert props["kind"] == FUSED and props["normalization"] == IN_GRAPH and json.loads(props["tasks"]) == ["a", "b"]
    assert json.loads(props["labels"]) == {"a": ["0", "1"], "b": ["x", "y", "z"]}
    assert ModelInfo.from_metadata(props) == info
    ws = build(tmp_path / "toy.onnx", props, {"a": 2, "b": 3})
    models = load_models(tmp_path)
    assert list(models) == ["toy"]  # named after the network
    model = models["toy"]
    assert model.info.tasks == ("a", "b") and [o.name for o in model.info.outputs] == ["a", "b"]
    raw = np.random.default_rng(1).random((4, *SHAPE), dtype=np.float32)
    out = model.run(raw)
    for task in ("a", "b"):  # raw input goes in as it is: the graph normalises
        np.testing.assert_allclose(out[task], raw.reshape(4, -1) @ ws[task], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.predict(raw, task="b"), out["b"])
    assert [label for label, _ in model.top_k(out["b"], 3, "b")[0]] == [["x", "y", "z"][j] for j in np.argsort(-out["b"][0])]
    assert load_task(tmp_path, "b").name == "toy"  # a task without its own file is found in the fused file
    with pytest.raises(ExportError, match="holds several tasks"):
        model.output(None)


def _retag(props: dict, **changes) -> dict:
    return {**props, **{k: (v if isinstance(v, str) else json.dumps(v)) for k, v in changes.items()}}


TASK_PROPS = task_info().to_metadata()
FUSED_PROPS = fused_info().to_metadata()

# (what, metadata, graph options, outputs, message)
BAD_FILES = [
    ("wrong input name", TASK_PROPS, {"input_name": "pixels"}, {"logits": 2},
     "the graph's input is named 'pixels', the metadata says 'image'"),
    ("wrong input shape", TASK_PROPS, {"input_shape": ("batch", 2, 4, 1)}, {"logits": 2},
     "input shape [batch, 2, 4, 1] differs from the metadata's [batch, 2, 2, 2] at axis 2, 3"),
    ("wrong input rank", TASK_PROPS, {"input_shape": ("batch", 8)}, {"logits": 2}, "has rank 2"),
    ("float16 input", TASK_PROPS, {"input_type": TensorProto.FLOAT16}, {"logits": 2},
     "the graph's input is float16, the metadata says float32"),
    ("float16 in the metadata too", _retag(TASK_PROPS, input_dtype="float16"), {"input_type": TensorProto.FLOAT16},
     {"logits": 2}, "input dtype 'float16' is not supported"),
    ("fewer labels than logits", _retag(TASK_PROPS, labels=["no"]), {}, {"logits": 2}, "has 2 logits but the metadata 1"),
    ("labels hidden by a symbolic size", _retag(TASK_PROPS, labels=["no"]), {"hide_sizes": True},
     {"logits": 2}, "gives logits of shape [2, 2] for a batch of 2, but the metadata has 1 label"),
    ("NaN std", _retag(TASK_PROPS, std="[NaN, 1.0]"), {}, {"logits": 2}, "std [nan, 1.0] is not finite"),
    ("zero std", _retag(TASK_PROPS, std=[0.0, 1.0]), {}, {"logits": 2}, "has a value <= 0"),
    ("one std for two channels", _retag(TASK_PROPS, std=[1.0]), {}, {"logits": 2}, "std has 1 value(s), the input 2"),
    ("max_batch 0", _retag(TASK_PROPS, max_batch="0"), {}, {"logits": 2}, "max_batch 0 is below 1"),
    ("max_batch not a number", _retag(TASK_PROPS, max_batch="lots"), {}, {"logits": 2}, "is not a whole number"),
    ("a missing output", TASK_PROPS, {}, {"scores": 2}, "the graph has no output 'logits'"),
    ("a fixed batch axis", TASK_PROPS, {"input_shape": (4, *SHAPE)}, {"logits": 2}, "batch axis is fixed at 4"),
    ("an unknown kind", _retag(TASK_PROPS, kind="ensemble"), {}, {"logits": 2}, "unknown kind 'ensemble'"),
    ("a missing key", {k: v for k, v in TASK_PROPS.items() if k != "labels"}, {}, {"logits": 2}, "metadata lacks labels"),
    ("an unknown normalization", _retag(TASK_PROPS, normalization="sometimes"), {}, {"logits": 2},
     "normalization 'sometimes' is not one of"),
    ("a fused file normalised by the caller", _retag(FUSED_PROPS, normalization="caller"), {}, {"a": 2, "b": 3},
     "a fused file must normalise in its graph"),
    ("a fused file missing a task's output", FUSED_PROPS, {}, {"a": 2}, "task 'b': the graph has no output 'b'"),
    ("fused labels not per task", _retag(FUSED_PROPS, labels={"a": ["0", "1"]}), {}, {"a": 2, "b": 3},
     "labels is not a JSON object with one entry per task"),
    ("a task repeated", _retag(FUSED_PROPS, tasks=["a", "a", "b"]), {}, {"a": 2, "b": 3}, "names a task more than once"),
]


@pytest.mark.parametrize("what, props, graph, outputs, message", BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_a_file_whose_metadata_lies_is_refused_at_load(tmp_path, what, props, graph, outputs, message):
    build(tmp_path / "m.onnx", props, outputs, **graph)
    with pytest.raises(ExportError) as caught:
        load_models(tmp_path)
    assert message in caught.value.message


def test_graph_problems_accept_what_the_metadata_describes():
    info = fused_info()
    inputs = [("image", ("batch", *SHAPE), "float32")]
    outputs = [("a", ("batch", 2), "float32"), ("b", (None, 3), "float32"), ("extra", ("batch",), "int64")]
    assert graph_problems(info, inputs, outputs) == []
    assert graph_problems(ModelInfo.for_task(task="t", labels=["0"], mean=[0, 0], std=[1, 1], **{**COMMON, "max_batch": 1}),
                          [("image", (1, *SHAPE), "float32")], [("logits", (1, 1), "float32")]) == []


def test_triton_config_has_an_output_and_a_labels_file_per_task():
    from partc.export.triton import config_pbtxt, labels_file, labels_txt

    info = fused_info()
    config = config_pbtxt(info)
    assert 'name: "toy"' in config and "max_batch_size: 8" in config and "dynamic_batching" not in config
    assert config.count("data_type: TYPE_FP32") == 3  # the input and two outputs
    assert 'name: "b"' in config and "dims: [ 3 ]" in config and 'label_filename: "labels_b.txt"' in config
    assert [labels_file(info, o) for o in info.outputs] == ["labels_a.txt", "labels_b.txt"]
    assert labels_txt(info.output("b")) == "x\ny\nz\n"
    assert labels_file(task_info(), task_info().outputs[0]) == "labels.txt"
