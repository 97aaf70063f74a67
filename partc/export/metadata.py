"""Export stage: the metadata every exported ONNX file carries (torch-free).

An exported task must describe itself to a runtime that has neither partc
nor torch: ONNX Runtime reads these key/value strings with
`session.get_modelmeta().custom_metadata_map`. `build_metadata` writes them
(export), `TaskInfo.from_metadata` reads them back (serve, predict).

The model takes *normalised* input, exactly what the torch task module
takes. Raw input is in [0, 1] (the data stage's scale: digits / 16, image
pixels / 255); a caller normalises with `(x - mean) / std` per channel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from partc.errors import ExportError

OUTPUT_NAME = "logits"
PREPROCESS = "x = (raw - mean) / std per channel; raw in [0, 1] (digits: value / 16, images: pixel / 255)"

# key -> what it holds; every exported file has all of them.
KEYS = {
    "partc_version": "version of partc that exported the file",
    "spec_hash": "hash of the spec the network was compiled from",
    "network": "network name in the spec",
    "task": "task name",
    "weights": "where the weights came from (checkpoint epoch, or untrained)",
    "input_name": "name of the model's input",
    "input_shape": "JSON list: one sample's shape, without the batch axis",
    "input_dtype": "numpy dtype name of the input",
    "output_name": "name of the model's output (one logit per class)",
    "labels": "JSON list: class label of each logit",
    "mean": "JSON list: per-channel mean subtracted from raw input",
    "std": "JSON list: per-channel std dividing it",
    "preprocess": "how raw input becomes model input",
    "max_batch": "largest batch partc serve accepts (Triton max_batch_size)",
}


@dataclass(frozen=True)
class TaskInfo:
    """What a runtime needs to know about one exported task."""

    task: str
    network: str
    spec_hash: str
    partc_version: str
    weights: str
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    output_name: str
    labels: list[str]
    mean: list[float]
    std: list[float]
    max_batch: int

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str = "<model>") -> TaskInfo:
        missing = [k for k in KEYS if k not in props]
        if missing:
            raise ExportError(
                f"'{source}' is not a partc export: metadata lacks {', '.join(missing)}",
                hint="export the task with 'partc export'",
            )
        try:
            return cls(
                task=props["task"],
                network=props["network"],
                spec_hash=props["spec_hash"],
                partc_version=props["partc_version"],
                weights=props["weights"],
                input_name=props["input_name"],
                input_shape=tuple(int(d) for d in json.loads(props["input_shape"])),
                input_dtype=props["input_dtype"],
                output_name=props["output_name"],
                labels=[str(x) for x in json.loads(props["labels"])],
                mean=[float(x) for x in json.loads(props["mean"])],
                std=[float(x) for x in json.loads(props["std"])],
                max_batch=int(props["max_batch"]),
            )
        except (ValueError, TypeError) as e:
            raise ExportError(f"'{source}' has malformed partc metadata ({e})") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "network": self.network,
            "spec_hash": self.spec_hash,
            "partc_version": self.partc_version,
            "weights": self.weights,
            "input": {"name": self.input_name, "shape": list(self.input_shape), "dtype": self.input_dtype},
            "output": {"name": self.output_name, "classes": len(self.labels)},
            "labels": list(self.labels),
            "mean": list(self.mean),
            "std": list(self.std),
            "preprocess": PREPROCESS,
            "max_batch": self.max_batch,
        }


def build_metadata(info: TaskInfo) -> dict[str, str]:
    """The metadata_props of an exported file (all values are strings)."""
    return {
        "partc_version": info.partc_version,
        "spec_hash": info.spec_hash,
        "network": info.network,
        "task": info.task,
        "weights": info.weights,
        "input_name": info.input_name,
        "input_shape": json.dumps(list(info.input_shape)),
        "input_dtype": info.input_dtype,
        "output_name": info.output_name,
        "labels": json.dumps(list(info.labels)),
        "mean": json.dumps(list(info.mean)),
        "std": json.dumps(list(info.std)),
        "preprocess": PREPROCESS,
        "max_batch": str(info.max_batch),
    }


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
