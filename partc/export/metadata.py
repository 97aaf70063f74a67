"""Export stage: the metadata contract of every exported ONNX file (torch-free).

An exported model must describe itself to a runtime that has neither partc
nor torch: ONNX Runtime reads these key/value strings with
`session.get_modelmeta().custom_metadata_map`. `ModelInfo.to_metadata`
writes them (export), `ModelInfo.from_metadata` reads them back (serve,
predict), and `graph_problems` checks them against the graph they describe.

Two kinds of file (key `kind`):
- `"task"`: one task's route, one output (`logits`). A file without the key
  was written by an older partc and is a task file.
- `"fused"`: the whole network, one output per task, named after the task
  (`tasks` lists them in output order); `labels`, `mean` and `std` are JSON
  objects task -> list.

Two input conventions (key `normalization`):
- `"caller"`: the model takes `(raw - mean) / std` per channel, the caller
  normalises with the file's mean/std (older files, without the key, too);
- `"in_graph"`: the model takes raw values in [0, 1] and normalises inside
  its graph; mean/std are recorded for information. A fused file always
  normalises in its graph, since each task has its own statistics.

Raw input lies in [0, 1] in the data stage's scale (digits / 16, image
pixels / 255).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from partc.errors import ExportError

TASK, FUSED = "task", "fused"
KINDS = (TASK, FUSED)
CALLER, IN_GRAPH = "caller", "in_graph"
NORMALIZATIONS = (CALLER, IN_GRAPH)
OUTPUT_NAME = "logits"  # the output of a task file
INPUT_DTYPES = ("float32",)  # what partc exports, serves and checks
PREPROCESS = {
    CALLER: "x = (raw - mean) / std per channel; raw in [0, 1] (digits: value / 16, images: pixel / 255)",
    IN_GRAPH: "x = raw in [0, 1] (digits: value / 16, images: pixel / 255); the graph applies (x - mean) / std itself",
}

# key -> what it holds. Every file has the common keys and those of its kind.
COMMON_KEYS = {
    "kind": "'task' (one task's route) or 'fused' (every task of the network)",
    "partc_version": "version of partc that exported the file",
    "spec_hash": "hash of the spec the network was compiled from",
    "network": "network name in the spec",
    "weights": "where the weights came from (checkpoint epoch, or untrained)",
    "input_name": "name of the model's input",
    "input_shape": "JSON list: one sample's shape, without the batch axis",
    "input_dtype": "numpy dtype name of the input (float32)",
    "normalization": "'caller': the model takes (raw - mean) / std; 'in_graph': it takes raw values",
    "preprocess": "how raw input becomes model input, in words",
    "max_batch": "largest batch partc serve accepts (Triton max_batch_size)",
}
TASK_KEYS = {
    "task": "task name",
    "output_name": "name of the model's output (one logit per class)",
    "labels": "JSON list: class label of each logit",
    "mean": "JSON list: per-channel mean of the task's raw training input",
    "std": "JSON list: per-channel std of it",
}
FUSED_KEYS = {
    "tasks": "JSON list: the task names, which are also the output names, in output order",
    "labels": "JSON object: task -> list of the class label of each logit",
    "mean": "JSON object: task -> per-channel mean (information: the graph normalises)",
    "std": "JSON object: task -> per-channel std (information: the graph normalises)",
}
KEYS_OF_KIND = {TASK: {**COMMON_KEYS, **TASK_KEYS}, FUSED: {**COMMON_KEYS, **FUSED_KEYS}}
# What a file from before the `kind` key lacks, and what that meant.
LEGACY_DEFAULTS = {"kind": TASK, "normalization": CALLER}


@dataclass(frozen=True)
class OutputInfo:
    """One task's logits in a file: which task, the ONNX output's name, and a label per logit."""

    task: str
    name: str
    labels: tuple[str, ...]
    mean: tuple[float, ...]  # per input channel, of the task's raw training input
    std: tuple[float, ...]


@dataclass(frozen=True)
class ModelInfo:
    """What a runtime needs to know about one exported file, of either kind.

    `name` is what serving calls the model: the task of a task file, the
    network of a fused file.
    """

    kind: str
    name: str
    network: str
    spec_hash: str
    partc_version: str
    weights: str
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    normalization: str
    max_batch: int
    outputs: tuple[OutputInfo, ...] = field(default_factory=tuple)

    @classmethod
    def for_task(cls, *, task: str, labels: Iterable[str], mean: Iterable[float], std: Iterable[float],
                 normalization: str = CALLER, **common: Any) -> ModelInfo:
        """A task file's description; `common` holds network, spec_hash, partc_version, weights,
        input_name, input_shape, input_dtype and max_batch."""
        output = OutputInfo(task, OUTPUT_NAME, tuple(labels), _floats(mean), _floats(std))
        return cls(kind=TASK, name=task, normalization=normalization, outputs=(output,), **_common(common))

    @classmethod
    def for_network(cls, *, tasks: Mapping[str, Mapping[str, Any]], **common: Any) -> ModelInfo:
        """A fused file's description: `tasks` maps each task, in output order, to its
        `labels`, `mean` and `std`; the network's name names the model."""
        outputs = tuple(OutputInfo(task, task, tuple(s["labels"]), _floats(s["mean"]), _floats(s["std"]))
                        for task, s in tasks.items())
        common = _common(common)
        return cls(kind=FUSED, name=common["network"], normalization=IN_GRAPH, outputs=outputs, **common)

    @property
    def preprocess(self) -> str:
        return PREPROCESS.get(self.normalization, "")

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(o.task for o in self.outputs)

    def output(self, task: str) -> OutputInfo:
        return next(o for o in self.outputs if o.task == task)

    # ---- writing and reading ----

    def to_metadata(self) -> dict[str, str]:
        """The metadata_props of an exported file (all values are strings)."""
        props = {
            "kind": self.kind,
            "partc_version": self.partc_version,
            "spec_hash": self.spec_hash,
            "network": self.network,
            "weights": self.weights,
            "input_name": self.input_name,
            "input_shape": json.dumps(list(self.input_shape)),
            "input_dtype": self.input_dtype,
            "normalization": self.normalization,
            "preprocess": self.preprocess,
            "max_batch": str(self.max_batch),
        }
        if self.kind == TASK:
            (out,) = self.outputs
            props.update(task=out.task, output_name=out.name, labels=json.dumps(list(out.labels)),
                         mean=json.dumps(list(out.mean)), std=json.dumps(list(out.std)))
        else:
            props.update(tasks=json.dumps(list(self.tasks)),
                         labels=json.dumps({o.task: list(o.labels) for o in self.outputs}),
                         mean=json.dumps({o.task: list(o.mean) for o in self.outputs}),
                         std=json.dumps({o.task: list(o.std) for o in self.outputs}))
        return props

    @classmethod
    def from_metadata(cls, props: Mapping[str, str], source: str = "<model>") -> ModelInfo:
        """Read a file's metadata (either kind, or an older task file) and check it; an ExportError otherwise."""
        if "partc_version" not in props:
            raise ExportError(f"'{source}' is not a partc export: metadata lacks partc_version",
                              hint="export the model with 'partc export'")
        props = {**LEGACY_DEFAULTS, **props} if "kind" not in props else dict(props)
        kind = props["kind"]
        if kind not in KINDS:
            raise ExportError(f"'{source}' has partc metadata of unknown kind '{kind}'",
                              hint=f"kinds this partc reads: {', '.join(KINDS)}; a newer partc wrote it?")
        missing = [k for k in KEYS_OF_KIND[kind] if k not in props]
        if missing:
            raise ExportError(f"'{source}' is not a complete partc export: metadata lacks {', '.join(missing)}",
                              hint="export the model again with 'partc export'")
        try:
            common = dict(
                network=props["network"], spec_hash=props["spec_hash"], partc_version=props["partc_version"],
                weights=props["weights"], input_name=props["input_name"], input_dtype=props["input_dtype"],
                input_shape=_int_list(json.loads(props["input_shape"]), "input_shape"),
                max_batch=_int(props["max_batch"], "max_batch"),
            )
            if kind == TASK:
                output = OutputInfo(props["task"], props["output_name"],
                                    _str_list(json.loads(props["labels"]), "labels"),
                                    _float_list(json.loads(props["mean"]), "mean"),
                                    _float_list(json.loads(props["std"]), "std"))
                info = cls(kind=TASK, name=output.task, normalization=props["normalization"], outputs=(output,),
                           **common)
            else:
                tasks = _str_list(json.loads(props["tasks"]), "tasks")
                if len(set(tasks)) != len(tasks):
                    raise ValueError(f"tasks {list(tasks)} names a task more than once")
                per_task = {key: _per_task(json.loads(props[key]), key, tasks) for key in ("labels", "mean", "std")}
                outputs = tuple(OutputInfo(t, t, _str_list(per_task["labels"][t], f"labels of '{t}'"),
                                           _float_list(per_task["mean"][t], f"mean of '{t}'"),
                                           _float_list(per_task["std"][t], f"std of '{t}'")) for t in tasks)
                info = cls(kind=FUSED, name=common["network"], normalization=props["normalization"],
                           outputs=outputs, **common)
        except (ValueError, TypeError, RecursionError) as e:
            raise ExportError(f"'{source}' has malformed partc metadata ({e})") from None
        problems = info.problems()
        if problems:
            raise ExportError(f"'{source}' has inconsistent partc metadata: {'; '.join(problems)}",
                              hint="export the model again with 'partc export'")
        return info

    def problems(self) -> list[str]:
        """What is wrong with this description on its own (empty when it is usable)."""
        found = []
        if self.kind not in KINDS:
            found.append(f"kind '{self.kind}' is not one of {', '.join(KINDS)}")
        if self.normalization not in NORMALIZATIONS:
            found.append(f"normalization '{self.normalization}' is not one of {', '.join(NORMALIZATIONS)}")
        elif self.kind == FUSED and self.normalization != IN_GRAPH:
            found.append("a fused file must normalise in its graph (normalization 'in_graph')")
        if self.input_dtype not in INPUT_DTYPES:
            found.append(f"input dtype '{self.input_dtype}' is not supported (partc serves {', '.join(INPUT_DTYPES)})")
        if not self.input_shape or any(d < 1 for d in self.input_shape):
            found.append(f"input_shape {list(self.input_shape)} is not a list of positive sizes")
        if self.max_batch < 1:
            found.append(f"max_batch {self.max_batch} is below 1")
        if not self.outputs:
            found.append("no outputs")
        if self.kind == TASK and len(self.outputs) > 1:
            found.append(f"a task file has one output, this one {len(self.outputs)}")
        for kind_of_name, names in (("task", self.tasks), ("output", [o.name for o in self.outputs])):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                found.append(f"{kind_of_name} name(s) {', '.join(repeated)} appear more than once")
        channels = self.input_shape[0] if self.input_shape else 0
        for o in self.outputs:
            if self.kind == FUSED and o.name != o.task:
                found.append(f"output '{o.name}' of a fused file must be named after its task '{o.task}'")
            if not o.labels:
                found.append(f"task '{o.task}' has no labels")
            for what, values in (("mean", o.mean), ("std", o.std)):
                if len(values) != channels:
                    found.append(f"task '{o.task}': {what} has {len(values)} value(s), the input {channels} channel(s)")
                elif not all(math.isfinite(v) for v in values):
                    found.append(f"task '{o.task}': {what} {list(values)} is not finite")
            if all(math.isfinite(v) for v in o.std) and any(v <= 0 for v in o.std):
                found.append(f"task '{o.task}': std {list(o.std)} has a value <= 0")
        return found

    def to_json(self) -> dict[str, Any]:
        """The description as JSON (what serving shows about a model; no file-system paths)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "network": self.network,
            "spec_hash": self.spec_hash,
            "partc_version": self.partc_version,
            "weights": self.weights,
            "input": {"name": self.input_name, "shape": list(self.input_shape), "dtype": self.input_dtype},
            "normalization": self.normalization,
            "preprocess": self.preprocess,
            "max_batch": self.max_batch,
            "outputs": [{"task": o.task, "name": o.name, "classes": len(o.labels), "labels": list(o.labels),
                         "mean": list(o.mean), "std": list(o.std)} for o in self.outputs],
        }


# ---- the file's metadata against its graph ----

class GraphValue(NamedTuple):
    """A graph input or output as a runtime reports it; a symbolic or unknown size is a str or None."""

    name: str
    shape: tuple[int | str | None, ...] | None  # None: the rank is unknown
    dtype: str  # numpy name ("float32"), or the runtime's own type string when it has none


def graph_problems(info: ModelInfo, inputs: Iterable[GraphValue], outputs: Iterable[GraphValue]) -> list[str]:
    """Where the metadata and the graph disagree (empty when they agree).

    Checks: one input, named and typed as the metadata says, of shape
    [batch, *input_shape] with a dynamic batch axis (or a fixed one of 1 with
    max_batch 1); each task's output present, float32, [batch, classes] with
    one logit per label. Symbolic sizes are left to a trial run.
    """
    inputs = [GraphValue(*v) for v in inputs]
    outputs = {o.name: o for o in (GraphValue(*v) for v in outputs)}
    found = []
    if len(inputs) != 1:
        found.append(f"the graph has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); partc models take one")
    else:
        (graph_input,) = inputs
        if graph_input.name != info.input_name:
            found.append(f"the graph's input is named '{graph_input.name}', the metadata says '{info.input_name}'")
        if graph_input.dtype != info.input_dtype:
            found.append(f"the graph's input is {graph_input.dtype}, the metadata says {info.input_dtype}")
        expected = ["batch", *info.input_shape]
        shape = graph_input.shape
        if shape is not None and len(shape) != len(expected):
            found.append(f"the graph's input has rank {len(shape)}, the metadata's [batch, "
                         f"{', '.join(map(str, info.input_shape))}] rank {len(expected)}")
        elif shape is not None:
            wrong = [i for i, (got, want) in enumerate(zip(shape[1:], info.input_shape), 1)
                     if isinstance(got, int) and got != want]
            if wrong:
                found.append(f"the graph's input shape {_show(shape)} differs from the metadata's "
                             f"{_show(expected)} at axis {', '.join(map(str, wrong))}")
            batch = shape[0]
            if isinstance(batch, int) and not (batch == 1 and info.max_batch == 1):
                found.append(f"the graph's batch axis is fixed at {batch}; partc needs a dynamic batch axis "
                             "(or a fixed batch of 1 with max_batch 1)")
    for o in info.outputs:
        graph_output = outputs.get(o.name)
        if graph_output is None:
            found.append(f"task '{o.task}': the graph has no output '{o.name}' (outputs: {', '.join(outputs) or 'none'})")
            continue
        if graph_output.dtype != "float32":
            found.append(f"task '{o.task}': output '{o.name}' is {graph_output.dtype}, logits must be float32")
        shape = graph_output.shape
        if shape is not None and len(shape) != 2:
            found.append(f"task '{o.task}': output '{o.name}' has shape {_show(shape)}, logits are [batch, classes]")
        elif shape is not None and isinstance(shape[1], int) and shape[1] != len(o.labels):
            found.append(f"task '{o.task}': output '{o.name}' has {shape[1]} logits but the metadata "
                         f"{len(o.labels)} label(s)")
    return found


def channel_stats(value: Any, channels: int, default: float, what: str) -> list[float]:
    """A data_stats mean or std as one float per channel (a scalar is broadcast)."""
    if value is None:
        return [default] * channels
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (int, float)):
        return [float(value)] * channels
    flat = list(value)
    if len(flat) == 1:
        flat = flat * channels
    if len(flat) != channels or not all(isinstance(v, (int, float)) for v in flat):
        raise ExportError(f"data_stats {what} {value!r} is not one number per channel ({channels} channels)")
    return [float(v) for v in flat]


# ---- strict readers of JSON values ----

def _common(common: dict[str, Any]) -> dict[str, Any]:
    keys = ("network", "spec_hash", "partc_version", "weights", "input_name", "input_shape", "input_dtype", "max_batch")
    unknown = set(common) - set(keys)
    if unknown:
        raise TypeError(f"unknown ModelInfo field(s): {', '.join(sorted(unknown))}")
    return {**common, "input_shape": tuple(int(d) for d in common["input_shape"]), "max_batch": int(common["max_batch"])}


def _floats(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _int(text: str, what: str) -> int:
    if not text.strip().lstrip("-").isdigit():
        raise ValueError(f"{what} {text!r} is not a whole number")
    return int(text)


def _int_list(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{what} {value!r} is not a list of whole numbers")
    return tuple(value)


def _float_list(value: Any, what: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{what} {value!r} is not a list of numbers")
    return tuple(float(v) for v in value)


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} is not a list of strings")
    return tuple(value)


def _per_task(value: Any, what: str, tasks: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != set(tasks):
        raise ValueError(f"{what} is not a JSON object with one entry per task ({', '.join(tasks)})")
    return value


def _show(shape: Iterable[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
