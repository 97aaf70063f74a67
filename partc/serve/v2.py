"""Serve stage, Open Inference Protocol v2 (KServe v2, Triton's HTTP/REST API): tensors in, logits and top-k out.

A request for model M (a task, or a network served from a fused file):

    {"id": "...", "parameters": {"top_k": 3, "binary_data_output": false, "normalized": false},
     "inputs": [{"name": "digit", "shape": [N, 1, 8, 8], "datatype": "FP32", "data": [...]}],
     "outputs": [{"name": "logits"}, {"name": "logits.top_k", "parameters": {"top_k": 2}}]}

`data` is flat (row-major) or nested as `shape`; with Triton's binary
tensor extension the JSON is followed by the raw little-endian FP32 bytes
(`parameters.binary_data_size` on the input, the JSON's length in the
`Inference-Header-Content-Length` header). Inputs are raw values in [0, 1];
the server normalises them when the file says the caller must.

Each task's logits output (FP32 `[N, classes]`: `logits` of a task file,
`<task>` of a fused file) has a BYTES companion `<output>.top_k`, `[N, k]`,
each element `"<probability>:<index>:<label>"` (softmax probability,
largest first, k = `top_k`, default 5, at most the classes). Triton's
classification extension works too: `{"name": "logits", "parameters":
{"classification": k}}` returns that output as BYTES `"<logit>:<index>:<label>"`.
Numbers in these strings are printed with 9 significant digits, enough to
round-trip float32. Without `outputs`, every output is returned; outputs are
binary when asked (`binary_data` per output, `binary_data_output` for all).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

import numpy as np

from partc.errors import RequestError
from partc.export.metadata import IN_GRAPH, OutputInfo
from partc.serve import DEFAULT_TOP
from partc.serve.jsonbody import loads
from partc.serve.models import LoadedModel, softmax, top_indices
from partc.serve.transport import Response, json_response

DATATYPE = "FP32"
TOP_K = ".top_k"  # suffix of an output's top-k companion (task names cannot hold a dot)
EXTENSIONS = ["binary_tensor_data", "classification"]
MAX_ID_CHARS = 256
EXTRA_VALUES = 1024  # JSON values a request may hold besides its data (names, shapes, parameters, outputs)


def max_json_values(model: LoadedModel) -> int:
    """The most JSON values a valid request for `model` holds: its largest batch as nested lists, plus the rest."""
    numbers = model.info.max_batch * math.prod(model.info.input_shape)
    lists, width = 1, model.info.max_batch  # the batch's list, then one list per row, per row and channel, ...
    for size in model.info.input_shape[:-1]:
        lists += width
        width *= size
    return numbers + lists + width + EXTRA_VALUES


@dataclass(frozen=True)
class RequestedOutput:
    name: str  # as the client named it
    task: OutputInfo  # whose logits it is made of
    kind: str  # "logits", "classification" (Triton: top logits as BYTES) or "top_k" (probabilities as BYTES)
    k: int
    binary: bool


@dataclass
class InferRequest:
    id: str | None
    x: np.ndarray  # what the graph takes, (N, *input_shape) float32
    outputs: list[RequestedOutput]


# ---- requests ----

def parse_infer(model: LoadedModel, body: bytes, json_length: str | None) -> InferRequest:
    """A v2 inference request for `model`, checked and turned into the graph's input; RequestError otherwise."""
    info = model.info
    split = _json_length(json_length, len(body))
    header = loads(body[:split])
    binary = memoryview(body)[split:]
    if not isinstance(header, dict):
        raise RequestError(400, "the body must be a JSON object with 'inputs' (Open Inference Protocol v2)")
    request_id = header.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > MAX_ID_CHARS):
        raise RequestError(400, f"'id' must be a string of at most {MAX_ID_CHARS} characters")
    parameters = _parameters(header.get("parameters"), "the request's 'parameters'")
    top = _positive(parameters.get("top_k", DEFAULT_TOP), "parameter 'top_k'")
    normalized = _flag(parameters.get("normalized", False), "parameter 'normalized'")
    binary_default = _flag(parameters.get("binary_data_output", False), "parameter 'binary_data_output'")
    if normalized and info.normalization == IN_GRAPH:
        raise RequestError(400, f"model '{info.name}' normalises in its graph: send raw values in [0, 1], "
                                "without 'normalized'")

    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(400, f"'inputs' must be a list of one tensor: model '{info.name}' takes one input, "
                                f"'{info.input_name}'")
    x = _input_tensor(model, inputs[0], binary)
    if not normalized:
        x = model.normalise(x)
    outputs = _requested_outputs(model, header.get("outputs"), top, binary_default)
    return InferRequest(request_id, x, outputs)


def _json_length(header: str | None, body_size: int) -> int:
    if header is None:
        return body_size
    if not header.isdigit() or int(header) > body_size:
        raise RequestError(400, f"Inference-Header-Content-Length {header!r} is not a size within the body "
                                f"of {body_size} bytes")
    return int(header)


def _input_tensor(model: LoadedModel, tensor: dict, binary: memoryview) -> np.ndarray:
    info = model.info
    name = tensor.get("name")
    if name != info.input_name:
        raise RequestError(400, f"unknown input {name!r}: model '{info.name}' takes one input, '{info.input_name}'")
    what = f"input '{name}'"
    if tensor.get("datatype") != DATATYPE:
        raise RequestError(400, f"{what} is {DATATYPE}, got datatype {tensor.get('datatype')!r}")
    expected = f"[N, {', '.join(map(str, info.input_shape))}]"
    shape = tensor.get("shape")
    if not isinstance(shape, list):
        raise RequestError(400, f"{what} needs a 'shape', {expected}")
    shape = tuple(_whole(d, f"{what}: a shape entry") for d in shape)
    if len(shape) != len(info.input_shape) + 1 or shape[1:] != info.input_shape or shape[0] < 1:
        raise RequestError(400, f"{what} has shape {list(shape)}; model '{info.name}' takes {expected} with N >= 1")
    if shape[0] > info.max_batch:
        raise RequestError(422, f"batch of {shape[0]} exceeds model '{info.name}'s max batch {info.max_batch}")
    parameters = _parameters(tensor.get("parameters"), f"{what}: 'parameters'")
    if "shared_memory_region" in parameters:
        raise RequestError(400, "shared-memory tensors are not supported: send the data in the request")
    if "binary_data_size" in parameters:
        size = _whole(parameters["binary_data_size"], f"{what}: 'binary_data_size'")
        needed = math.prod(shape) * 4
        if size != needed or len(binary) != size:
            raise RequestError(400, f"{what}: binary_data_size {size} and {len(binary)} bytes after the JSON; "
                                    f"shape {list(shape)} in FP32 takes {needed}")
        x = np.frombuffer(binary, dtype="<f4").reshape(shape).astype(np.float32)
        _check_finite(x, what)
        return x
    if len(binary):
        raise RequestError(400, f"{len(binary)} bytes follow the JSON, but no input has 'binary_data_size'")
    if "data" not in tensor:
        raise RequestError(400, f"{what} has neither 'data' nor parameters.binary_data_size")
    return array_from_json(tensor["data"], shape, what)


def array_from_json(data: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A float32 array of `shape` from JSON numbers, flat or nested: 400 for another structure, 422 out of range."""
    numbers = f"{what} must be numbers, flat or nested as the shape {list(shape)}"
    if not isinstance(data, list):
        raise RequestError(400, numbers)
    try:
        array = np.asarray(data)  # numbers become int64/float64; strings, null, true, ragged lists do not
    except (ValueError, TypeError):
        raise RequestError(400, numbers) from None
    if array.dtype == object:  # integers beyond int64 (or null and friends)
        if not all(type(v) in (int, float) for v in array.flat):
            raise RequestError(400, f"{numbers} (null, strings and booleans are not numbers)")
    elif array.dtype.kind not in "iuf":
        raise RequestError(400, f"{numbers} (got {'booleans' if array.dtype.kind == 'b' else 'strings'})")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array = array.astype(np.float32)
    except OverflowError:
        raise RequestError(422, f"{what} holds a number outside the FP32 range (about +-3.4e38)") from None
    if array.shape != shape:
        if array.ndim != 1 or array.size != math.prod(shape):
            raise RequestError(400, f"{what} holds {array.size} values of shape {list(array.shape)}; shape "
                                    f"{list(shape)} takes {math.prod(shape)}, flat or nested")
        array = array.reshape(shape)
    _check_finite(array, what)
    return array


def _check_finite(x: np.ndarray, what: str) -> None:
    finite = np.isfinite(x)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise RequestError(422, f"{what}: value {x.flat[index]} at flat index {index} is out of range "
                                "(finite FP32 numbers only, about +-3.4e38)")


def _requested_outputs(model: LoadedModel, outputs: object, top: int, binary_default: bool) -> list[RequestedOutput]:
    by_name = {}
    for task in model.info.outputs:
        by_name[task.name] = (task, "logits")
        by_name[task.name + TOP_K] = (task, "top_k")
    if outputs is None:
        return [RequestedOutput(name, task, kind, min(top, len(task.labels)), binary_default)
                for name, (task, kind) in by_name.items()]
    if not isinstance(outputs, list) or not outputs:
        raise RequestError(400, "'outputs' must be a non-empty list of {\"name\": ...}")
    chosen = []
    for entry in outputs:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name not in by_name:
            raise RequestError(400, f"unknown output {name!r} of model '{model.name}'; outputs: {', '.join(by_name)}")
        if any(c.name == name for c in chosen):
            raise RequestError(400, f"output '{name}' is asked for twice")
        task, kind = by_name[name]
        parameters = _parameters(entry.get("parameters"), f"output '{name}': 'parameters'")
        if "shared_memory_region" in parameters:
            raise RequestError(400, "shared-memory outputs are not supported")
        binary = _flag(parameters.get("binary_data", binary_default), f"output '{name}': 'binary_data'")
        k = top
        if kind == "top_k":
            k = _positive(parameters.get("top_k", top), f"output '{name}': 'top_k'")
        elif "classification" in parameters:
            kind, k = "classification", _positive(parameters["classification"], f"output '{name}': 'classification'")
        chosen.append(RequestedOutput(name, task, kind, min(k, len(task.labels)), binary))
    return chosen


def _parameters(value: object, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(400, f"{what} must be a JSON object")
    return value


def _whole(value: object, what: str) -> int:
    """A JSON whole number (4 or 4.0): 400 when it is none, 422 when it is one out of range (1e400, 10**30)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(400, f"{what} must be a whole number, got {json.dumps(value)[:40]}")
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(422, f"{what} is out of range: {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise RequestError(400, f"{what} must be a whole number, got {value!r}")
    if abs(value) >= 2**31:
        raise RequestError(422, f"{what} is out of range: {str(value)[:40]}")
    return int(value)


def _positive(value: object, what: str) -> int:
    number = _whole(value, what)
    if number < 1:
        raise RequestError(400, f"{what} must be at least 1, got {number}")
    return number


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise RequestError(400, f"{what} must be true or false, got {json.dumps(value)[:40]}")
    return value


# ---- responses ----

def check_logits(request: InferRequest, logits: dict[str, np.ndarray]) -> None:
    """422 when the network overflowed: never NaN or infinity in a response."""
    for task in dict.fromkeys(o.task for o in request.outputs):
        values = logits[task.name]
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            rows = ", ".join(map(str, np.flatnonzero(bad)[:10]))
            raise RequestError(422, f"task '{task.task}' computed non-finite logits for sample(s) {rows}: finite inputs "
                                    "far outside the raw [0, 1] range overflow inside the network")


def encode_infer(model: LoadedModel, request: InferRequest, logits: dict[str, np.ndarray]) -> Response:
    """The v2 response; with any binary output, the JSON header followed by the outputs' bytes."""
    entries, blobs = [], []
    for output in request.outputs:
        values = logits[output.task.name]
        entry: dict = {"name": output.name}
        if output.kind == "logits":
            entry.update(datatype=DATATYPE, shape=list(values.shape))
            data = values.astype("<f4").tobytes() if output.binary else values.ravel().tolist()
        else:
            strings = _ranked(values, output)
            entry.update(datatype="BYTES", shape=[len(values), output.k])
            data = b"".join(struct.pack("<I", len(s)) + s for s in (t.encode() for t in strings)) if output.binary \
                else strings
        if output.binary:
            entry["parameters"] = {"binary_data_size": len(data)}
            blobs.append(data)
        else:
            entry["data"] = data
        entries.append(entry)
    body = {"model_name": model.name, "model_version": model.version, "outputs": entries}
    if request.id is not None:
        body = {"id": request.id, **body}
    if not blobs:
        return json_response(200, body)
    header = json.dumps(body, allow_nan=False).encode()
    return Response(200, header + b"".join(blobs), "application/octet-stream",
                    {"inference-header-content-length": str(len(header))})


def _ranked(values: np.ndarray, output: RequestedOutput) -> list[str]:
    """Row-major "value:index:label" strings: probabilities (top_k) or logits (classification), largest first."""
    scores = softmax(values) if output.kind == "top_k" else values
    labels = output.task.labels
    return [f"{float(scores[i, j]):.9g}:{j}:{labels[j]}" for i, row in enumerate(top_indices(scores, output.k))
            for j in row]


def model_metadata(model: LoadedModel, batching: dict) -> dict:
    """GET /v2/models/{model}: the v2 fields, plus what partc knows about the model under "partc"."""
    info = model.info
    outputs = []
    for task in info.outputs:
        outputs.append({"name": task.name, "datatype": DATATYPE, "shape": [-1, len(task.labels)]})
        outputs.append({"name": task.name + TOP_K, "datatype": "BYTES", "shape": [-1, -1]})
    return {
        "name": info.name,
        "versions": [model.version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": info.input_name, "datatype": DATATYPE, "shape": [-1, *info.input_shape]}],
        "outputs": outputs,
        "partc": {**model.describe(), "batching": batching},
    }
