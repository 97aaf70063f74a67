"""Serve stage, the first JSON API (deprecated: new clients use /v2, partc/serve/v2.py).

    GET  /health                  {"status": "ok", "tasks": N}
    GET  /tasks                   {"tasks": {task: description}}
    GET  /tasks/{task}            the task's description
    POST /tasks/{task}/predict    {"inputs": [sample, ...], "top": k, "logits": bool, "normalized": bool}
                                  -> {"task", "predictions": [{"top": [{"label", "probability"}], "logits"?}]}

Kept for the clients written against it, on the same machinery as v2 (the
bounded body reader, batching, the finite-logits check). Its statuses are
as they were: 422 for well-formed JSON of the wrong content, 400 for bodies
that are not JSON (and for nesting deeper than the limit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from partc.errors import RequestError
from partc.export.metadata import IN_GRAPH, OutputInfo
from partc.serve import DEFAULT_TOP
from partc.serve.jsonbody import loads
from partc.serve.models import LoadedModel
from partc.serve.v2 import array_from_json


@dataclass
class PredictRequest:
    x: np.ndarray  # what the graph takes
    top: int
    logits: bool


def task_index(models: dict[str, LoadedModel]) -> dict[str, tuple[LoadedModel, OutputInfo]]:
    """Task -> (model, its output): a task's own file first, else the fused file holding it."""
    index: dict[str, tuple[LoadedModel, OutputInfo]] = {}
    for model in sorted(models.values(), key=lambda m: m.info.kind != "task"):
        for output in model.info.outputs:
            index.setdefault(output.task, (model, output))
    return index


def describe(model: LoadedModel, output: OutputInfo) -> dict:
    """A task as the first API described it (without the file's path)."""
    info = model.info
    return {
        "task": output.task, "network": info.network, "spec_hash": info.spec_hash,
        "partc_version": info.partc_version, "weights": info.weights,
        "input": {"name": info.input_name, "shape": list(info.input_shape), "dtype": info.input_dtype},
        "output": {"name": output.name, "classes": len(output.labels)},
        "labels": list(output.labels), "mean": list(output.mean), "std": list(output.std),
        "normalization": info.normalization, "preprocess": info.preprocess, "max_batch": info.max_batch,
        "provider": model.provider,
    }


def parse_predict(model: LoadedModel, body: bytes) -> PredictRequest:
    info = model.info
    payload = loads(body)
    shape = info.input_shape
    expected = f"expected {{\"inputs\": a batch of shape [N, {', '.join(map(str, shape))}]}}"
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise RequestError(422, f"the body must be a JSON object with 'inputs'; {expected}")
    top = payload.get("top", DEFAULT_TOP)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise RequestError(422, f"'top' must be a positive integer, got {str(top)[:40]}")
    flags = {}
    for flag in ("logits", "normalized"):
        flags[flag] = payload.get(flag, False)
        if not isinstance(flags[flag], bool):
            raise RequestError(422, f"'{flag}' must be true or false, got {str(flags[flag])[:40]}")
    if flags["normalized"] and info.normalization == IN_GRAPH:
        raise RequestError(422, f"task '{info.name}' normalises in its graph: send raw inputs without 'normalized'")
    inputs = payload["inputs"]
    if not isinstance(inputs, list) or not inputs or not isinstance(inputs[0], list):
        hint = " (wrap a single sample in a list)" if isinstance(inputs, list) and inputs else ""
        raise RequestError(422, f"'inputs' must be a non-empty batch of samples{hint}; {expected}")
    if len(inputs) > info.max_batch:
        raise RequestError(422, f"batch of {len(inputs)} exceeds this task's max batch {info.max_batch}")
    try:
        x = array_from_json(inputs, (len(inputs), *shape), "'inputs'")
    except RequestError as e:
        raise RequestError(422, f"{e.message}; {expected}") from None
    return PredictRequest(x if flags["normalized"] else model.normalise(x), min(top, 1 << 16), flags["logits"])


def encode_predict(model: LoadedModel, output: OutputInfo, request: PredictRequest, logits: np.ndarray) -> dict:
    predictions = []
    for row, top in zip(logits, model.top_k(logits, request.top, output.task)):
        entry: dict = {"top": [{"label": label, "probability": p} for label, p in top]}
        if request.logits:
            entry["logits"] = row.tolist()
        predictions.append(entry)
    return {"task": output.task, "predictions": predictions}
