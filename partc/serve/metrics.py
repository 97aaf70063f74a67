"""Serve stage, metrics: what `GET /metrics` reports, in Prometheus text format (prometheus_client).

    partc_requests_total{model, endpoint, status}    HTTP requests answered
    partc_inferences_total{model}                    samples inferred
    partc_executions_total{model}                    ONNX Runtime calls (one per batch)
    partc_batch_size{model}                          samples per ONNX Runtime call (histogram)
    partc_queue_seconds{model}                       time a request waited for its batch (histogram)
    partc_compute_seconds{model}                     time of an ONNX Runtime call (histogram)
    partc_request_seconds{model, endpoint}           time from request headers to response (histogram)
    partc_open_connections                           connections open now

Each server owns its registry (not prometheus_client's global one), so
several servers in one process (tests) keep separate counts. Label values
come from fixed sets: a model label is a loaded model or "" (never a name a
client made up), an endpoint label one of the app's endpoint names.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, float("inf"))
CONTENT_TYPE = CONTENT_TYPE_LATEST

disable_created_metrics()  # no *_created series: they double the output and say only when the server started


class ServeMetrics:
    def __init__(self, max_batch: int, open_connections: Callable[[], int]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("partc_requests", "HTTP requests answered, by model, endpoint and status",
                                ["model", "endpoint", "status"], registry=r)
        self.inferences = Counter("partc_inferences", "Samples inferred", ["model"], registry=r)
        self.executions = Counter("partc_executions", "ONNX Runtime calls (one per batch)", ["model"], registry=r)
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024} | {max_batch})
        self.batch_size = Histogram("partc_batch_size", "Samples per ONNX Runtime call", ["model"],
                                    buckets=[*(s for s in sizes if s <= max_batch), float("inf")], registry=r)
        self.queue_seconds = Histogram("partc_queue_seconds", "Time a request waited for its ONNX Runtime call",
                                       ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.compute_seconds = Histogram("partc_compute_seconds", "Time of one ONNX Runtime call", ["model"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram("partc_request_seconds", "Time from request headers to response",
                                         ["model", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        connections = Gauge("partc_open_connections", "Connections open now", registry=r)
        connections.set_function(open_connections)
        self._children: dict[tuple, tuple] = {}  # labels -> the metrics' children (labels() costs a lock and a lookup)

    def batch(self, model: str, rows: int, queue_seconds: list[float], compute_seconds: float) -> None:
        """One ONNX Runtime call of `rows` samples, made of requests that waited `queue_seconds` each."""
        key = ("batch", model)
        if key not in self._children:
            self._children[key] = tuple(m.labels(model) for m in (self.inferences, self.executions, self.batch_size,
                                                                   self.compute_seconds, self.queue_seconds))
        inferences, executions, batch_size, compute, queued = self._children[key]
        inferences.inc(rows)
        executions.inc()
        batch_size.observe(rows)
        compute.observe(compute_seconds)
        for seconds in queue_seconds:
            queued.observe(seconds)

    def request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        key = (model, endpoint, status)
        if key not in self._children:
            self._children[key] = (self.requests.labels(model, endpoint, str(status)),
                                   self.request_seconds.labels(model, endpoint))
        count, latency = self._children[key]
        count.inc()
        latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
