"""Serve stage, HTTP: every exported task behind a small Starlette app (no torch).

    GET  /health                  {"status": "ok", "tasks": N}
    GET  /tasks                   {"tasks": {task: metadata}}
    GET  /tasks/{task}            the task's metadata
    POST /tasks/{task}/predict    {"inputs": [sample, ...], "top": k, "logits": bool, "normalized": bool}
                                  -> {"task", "predictions": [{"top": [{"label", "probability"}], "logits"?}]}

Sessions are opened once, before the app starts (`load_models`); inference
runs in Starlette's thread pool so the event loop keeps accepting requests
(ONNX Runtime releases the GIL while it computes). Every error is JSON
`{"error": "..."}`: 400 malformed JSON, 404 unknown task or path, 405 wrong
method, 413 body over the limit, 422 well-formed but wrong input (the message
names the expected shape); the server keeps serving after each.
"""

from __future__ import annotations

import json

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from partc.serve import DEFAULT_MAX_BODY, DEFAULT_TOP
from partc.serve.models import LoadedModel


def create_app(models: dict[str, LoadedModel], *, max_body: int = DEFAULT_MAX_BODY) -> Starlette:
    """The HTTP app serving `models` (task name -> loaded model)."""

    def task_of(request: Request) -> LoadedModel:
        name = request.path_params["task"]
        if name not in models:
            raise HTTPException(404, f"unknown task '{name}'; tasks: {', '.join(models)}")
        return models[name]

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "tasks": len(models)})

    async def list_tasks(request: Request) -> JSONResponse:
        return JSONResponse({"tasks": {name: m.describe() for name, m in models.items()}})

    async def get_task(request: Request) -> JSONResponse:
        return JSONResponse(task_of(request).describe())

    async def predict(request: Request) -> JSONResponse:
        model = task_of(request)
        body = await _read_body(request, max_body)
        batch, options = _parse_request(body, model)
        logits = await run_in_threadpool(model.predict, batch, normalized=options["normalized"])
        predictions = []
        for row, top in zip(logits, model.top_k(logits, options["top"])):
            entry: dict = {"top": [{"label": label, "probability": p} for label, p in top]}
            if options["logits"]:
                entry["logits"] = row.tolist()
            predictions.append(entry)
        return JSONResponse({"task": model.name, "predictions": predictions})

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/tasks", list_tasks, methods=["GET"]),
        Route("/tasks/{task}", get_task, methods=["GET"]),
        Route("/tasks/{task}/predict", predict, methods=["POST"]),
    ]
    handlers = {HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, exception_handlers=handlers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
    return bytes(body)


def _parse_request(body: bytes, model: LoadedModel) -> tuple[np.ndarray, dict]:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HTTPException(400, f"malformed JSON: {e}") from None
    shape = list(model.info.input_shape)
    expected = f"expected {{\"inputs\": a batch of shape [N, {', '.join(map(str, shape))}]}}"
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise HTTPException(422, f"the body must be a JSON object with 'inputs'; {expected}")
    top = payload.get("top", DEFAULT_TOP)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise HTTPException(422, f"'top' must be a positive integer, got {top!r}")
    options = {"top": top}
    for flag in ("logits", "normalized"):
        value = payload.get(flag, False)
        if not isinstance(value, bool):
            raise HTTPException(422, f"'{flag}' must be true or false, got {value!r}")
        options[flag] = value
    try:
        batch = np.asarray(payload["inputs"], dtype=np.float32)
    except (ValueError, TypeError):
        raise HTTPException(422, f"'inputs' must be a rectangular array of numbers; {expected}") from None
    if batch.ndim != len(shape) + 1 or list(batch.shape[1:]) != shape or batch.shape[0] < 1:
        hint = " (wrap a single sample in a list)" if list(batch.shape) == shape else ""
        raise HTTPException(422, f"'inputs' has shape {list(batch.shape)}{hint}; {expected}")
    if batch.shape[0] > model.info.max_batch:
        raise HTTPException(422, f"batch of {batch.shape[0]} exceeds this task's max batch {model.info.max_batch}")
    if not np.all(np.isfinite(batch)):
        raise HTTPException(422, "'inputs' must be finite numbers (no null, NaN or infinity)")
    return batch, options


ENDPOINTS = "GET /health, GET /tasks, GET /tasks/{task}, POST /tasks/{task}/predict"


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail
    if exc.status_code == 405:
        allowed = next((v for k, v in (exc.headers or {}).items() if k.lower() == "allow"), "")
        message = f"method {request.method} is not allowed on {request.url.path}; use {allowed}"
    elif exc.status_code == 404 and message == "Not Found":
        message = f"no endpoint {request.url.path}; endpoints: {ENDPOINTS}"
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)
