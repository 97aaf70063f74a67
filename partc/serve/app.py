"""Serve stage, HTTP application: the endpoints, their checks before the body, and their handlers.

    GET  /v2                                   server metadata (name, version, extensions)
    GET  /v2/health/live, /v2/health/ready     200, or 503 while shutting down (ready)
    GET  /v2/models/{model}[/versions/{v}]     model metadata
    GET  /v2/models/{model}[/versions/{v}]/ready
    POST /v2/models/{model}[/versions/{v}]/infer
    GET  /metrics                              Prometheus text format
    GET  /health, /tasks, /tasks/{task}; POST /tasks/{task}/predict    the first API (deprecated)

Before a body is read, `admit` finds the endpoint (404, 405), the model
(404), checks the bearer token when one is set (401; the health endpoints
answer without one, for probes) and refuses compressed bodies (415); the
body reader it returns counts JSON values while the body arrives (413). The
handler then parses the body (in a worker thread when it is large), has the
model's batcher run it, and encodes the answer. partc/serve/transport.py
does the HTTP.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from urllib.parse import unquote

import numpy as np

from partc.devices import cpu_threads
from partc.errors import RequestError
from partc.serve import DEFAULT_MAX_QUEUE, legacy, v2
from partc.serve.batching import Batcher
from partc.serve.jsonbody import BodyReader
from partc.serve.metrics import CONTENT_TYPE, ServeMetrics
from partc.serve.models import LoadedModel
from partc.serve.transport import App, RequestHead, Response, Server, error_response, json_response
from partc.version import __version__

log = logging.getLogger("partc.serve")

INLINE_PARSE_BYTES = 64 * 1024  # bodies up to this size are parsed on the event loop (well under a millisecond)

# (method, path pattern, endpoint); {model}, {version} and {task} match one path segment.
ROUTES = [
    ("GET", "/v2", "server_metadata"),
    ("GET", "/v2/health/live", "live"),
    ("GET", "/v2/health/ready", "ready"),
    ("GET", "/v2/models/{model}", "model_metadata"),
    ("GET", "/v2/models/{model}/versions/{version}", "model_metadata"),
    ("GET", "/v2/models/{model}/ready", "model_ready"),
    ("GET", "/v2/models/{model}/versions/{version}/ready", "model_ready"),
    ("POST", "/v2/models/{model}/infer", "infer"),
    ("POST", "/v2/models/{model}/versions/{version}/infer", "infer"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/health", "legacy_health"),
    ("GET", "/tasks", "legacy_tasks"),
    ("GET", "/tasks/{task}", "legacy_task"),
    ("POST", "/tasks/{task}/predict", "legacy_predict"),
]
PUBLIC = {"live", "ready", "legacy_health"}  # answered without a token: liveness and readiness probes
_PATTERNS = [(method, pattern.strip("/").split("/"), endpoint) for method, pattern, endpoint in ROUTES]


@dataclass(frozen=True)
class ServeOptions:
    batching: bool = True
    max_batch: int | None = None  # samples per ONNX Runtime call; None: each model's own max_batch
    max_delay: float = 0.0  # seconds a batch waits for more requests after its first
    max_queue: int = DEFAULT_MAX_QUEUE  # requests waiting per model before 503
    token: str | None = None  # bearer token every request but the health probes must carry
    access_log: bool = False


class PartcApp(App):
    def __init__(self, models: dict[str, LoadedModel], options: ServeOptions = ServeOptions()):
        self.models = models
        self.options = options
        self.tasks = legacy.task_index(models)
        self.server: Server | None = None
        self.ready = True
        self.metrics = ServeMetrics(max(m.info.max_batch for m in models.values()),
                                    lambda: len(self.server.connections) if self.server else 0)
        self.compute = ThreadPoolExecutor(max_workers=cpu_threads(), thread_name_prefix="partc-compute")
        self.parse_pool = ThreadPoolExecutor(max_workers=min(2, cpu_threads()), thread_name_prefix="partc-parse")
        self.batchers = {name: Batcher(m, self.compute, self.metrics, batching=options.batching,
                                       max_batch=min(options.max_batch or m.info.max_batch, m.info.max_batch),
                                       max_delay=options.max_delay, max_queue=options.max_queue)
                         for name, m in models.items()}
        self.token = options.token.encode() if options.token else None
        self.in_flight = 0  # inference requests being handled (parsed, queued or computed) right now

    # ---- before the body ----

    def admit(self, head: RequestHead) -> Response | tuple[object, object]:
        try:
            endpoint, params = self._route(head)
            head.endpoint = endpoint
            target = self._target(endpoint, params)
            head.model = target.name if isinstance(target, LoadedModel) else target[0].name if target else ""
            if self.token is not None and endpoint not in PUBLIC:
                self._check_token(head)
            encoding = head.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                raise RequestError(415, f"Content-Encoding '{encoding}' is not accepted: send the body uncompressed")
            if endpoint == "infer":
                json_length = head.headers.get("inference-header-content-length", "")  # binary tensor extension
                reader = BodyReader(v2.max_json_values(target), int(json_length) if json_length.isdigit() else None)
            elif endpoint == "legacy_predict":
                reader = BodyReader(v2.max_json_values(target[0]))
            else:
                reader = BodyReader(None)  # a body on a GET is read (within --max-body) and ignored
            return reader, partial(getattr(self, f"_{endpoint}"), head, target)
        except RequestError as e:
            return error_response(e.status, e.message, e.headers)

    def _route(self, head: RequestHead) -> tuple[str, dict[str, str]]:
        segments = [unquote(s) for s in head.path.strip("/").split("/")]
        allowed = []
        for method, pattern, endpoint in _PATTERNS:
            if len(pattern) != len(segments):
                continue
            params = {}
            for want, got in zip(pattern, segments):
                if want.startswith("{"):
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                if head.method == method or (head.method == "HEAD" and method == "GET"):
                    return endpoint, params
                allowed.append(method)
        if allowed:
            raise RequestError(405, f"method {head.method} is not allowed on {head.path}; use {', '.join(allowed)}",
                               {"allow": ", ".join(allowed)})
        raise RequestError(404, f"no endpoint {head.path}; endpoints: GET /v2, GET /v2/health/live, "
                                "GET /v2/health/ready, GET /v2/models/{model}[/ready], POST /v2/models/{model}/infer, "
                                "GET /metrics (deprecated: /health, /tasks, /tasks/{task}[/predict])")

    def _target(self, endpoint: str, params: dict[str, str]):
        """The model (v2) or (model, output) of a task (first API) the path names; 404 for an unknown one."""
        if "model" in params:
            model = self.models.get(params["model"])
            if model is None:
                raise RequestError(404, f"unknown model {params['model']!r}; models: {', '.join(self.models)}")
            if params.get("version", model.version) != model.version:
                raise RequestError(404, f"model '{model.name}' has no version {params['version']!r}; "
                                        f"versions: {model.version}")
            return model
        if "task" in params:
            if params["task"] not in self.tasks:
                raise RequestError(404, f"unknown task {params['task']!r}; tasks: {', '.join(self.tasks)}")
            return self.tasks[params["task"]]
        return None

    def _check_token(self, head: RequestHead) -> None:
        scheme, _, given = head.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
            raise RequestError(401, "this server needs 'Authorization: Bearer <token>' (partc serve --token-file)",
                               {"www-authenticate": 'Bearer realm="partc"'})

    # ---- handlers ----

    async def _server_metadata(self, head, target, body) -> Response:
        return json_response(200, {"name": "partc", "version": __version__, "extensions": v2.EXTENSIONS})

    async def _live(self, head, target, body) -> Response:
        return Response(200, b"", "text/plain; charset=utf-8")

    async def _ready(self, head, target, body) -> Response:
        if not self.ready:
            return error_response(503, "the server is shutting down")
        return Response(200, b"", "text/plain; charset=utf-8")

    async def _model_ready(self, head, model: LoadedModel, body) -> Response:
        return await self._ready(head, model, body)

    async def _model_metadata(self, head, model: LoadedModel, body) -> Response:
        batcher = self.batchers[model.name]
        batching = {"enabled": batcher.batching, "max_batch": batcher.max_batch,
                    "max_queue_delay_ms": batcher.max_delay * 1e3, "max_queue": batcher.max_queue}
        return json_response(200, v2.model_metadata(model, batching))

    async def _infer(self, head, model: LoadedModel, body: bytes) -> Response:
        json_length = head.headers.get("inference-header-content-length")
        request = await self._parse(v2.parse_infer, model, body, json_length)
        logits = await self._run(model, request.x)
        v2.check_logits(request, logits)
        return v2.encode_infer(model, request, logits)

    async def _metrics(self, head, target, body) -> Response:
        return Response(200, self.metrics.render(), CONTENT_TYPE)

    async def _legacy_health(self, head, target, body) -> Response:
        return json_response(200, {"status": "ok" if self.ready else "shutting down", "tasks": len(self.tasks)})

    async def _legacy_tasks(self, head, target, body) -> Response:
        return json_response(200, {"tasks": {t: legacy.describe(m, o) for t, (m, o) in self.tasks.items()}})

    async def _legacy_task(self, head, target, body) -> Response:
        return json_response(200, legacy.describe(*target))

    async def _legacy_predict(self, head, target, body: bytes) -> Response:
        model, output = target
        request = await self._parse(legacy.parse_predict, model, body)
        logits = (await self._run(model, request.x))[output.name]
        if not np.isfinite(logits).all():
            raise RequestError(422, f"task '{output.task}' computed non-finite logits: finite inputs far outside "
                                    "the raw [0, 1] range overflow inside the network")
        return json_response(200, legacy.encode_predict(model, output, request, logits))

    async def _run(self, model: LoadedModel, x: np.ndarray) -> dict[str, np.ndarray]:
        self.in_flight += 1
        try:
            return await self.batchers[model.name].infer(x, alone=self.in_flight == 1)
        finally:
            self.in_flight -= 1

    async def _parse(self, parse, model: LoadedModel, body: bytes, *args):
        """Parse a body on the event loop when small, else in a worker thread (the event loop keeps answering)."""
        if len(body) <= INLINE_PARSE_BYTES:
            return parse(model, body, *args)
        return await asyncio.get_running_loop().run_in_executor(self.parse_pool, parse, model, body, *args)

    # ---- the transport's callbacks ----

    def finished(self, head: RequestHead, status: int) -> None:
        seconds = time.perf_counter() - head.started
        self.metrics.request(head.model, head.endpoint, status, seconds)
        if self.options.access_log:
            log.info("%s %s %s %d %.1f ms", head.client, head.method, head.path, status, seconds * 1e3)

    def shutting_down(self) -> None:
        self.ready = False

    def close(self) -> None:
        self.compute.shutdown(wait=False, cancel_futures=True)
        self.parse_pool.shutdown(wait=False, cancel_futures=True)
