"""Serve stage, dynamic batching: concurrent requests for one model coalesced into one ONNX Runtime call.

A `Batcher` keeps one queue per model and at most one ONNX Runtime call in
flight for it. When the call is free it takes every queued request that
fits into `max_batch` samples (whole requests, in arrival order), runs them
as one batch in the compute thread pool and hands each request its rows.
So under load, requests that arrive while a batch computes ride in the
next one; a lone client is never delayed, unless `max_delay` asks the
batcher to wait that long after the first queued request for others
(Triton's `max_queue_delay_microseconds`; 0 by default, see docs/serve.md
for the measurements behind the defaults).

Without batching (`batching=False`) each request is its own call, run
concurrently on the same pool: what `partc serve --no-batching` measures.

A call expected to take less than INLINE_SECONDS (from the measured time
per sample of this model's recent calls) runs on the event loop itself
when it is the only request the server is handling (`alone`): handing it
to a thread and back costs more than the call (about 0.15 ms against 0.1 ms
for a digits task at batch 1, measured on 2 cores), and the loop is
blocked no longer than that. With other requests in flight the call goes
to the pool, so that the loop keeps reading them and they can batch.

The queue is bounded (`max_queue` requests): past it a request gets 503 at
once instead of waiting without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from partc.errors import RequestError
from partc.serve import DEFAULT_MAX_QUEUE
from partc.serve.metrics import ServeMetrics
from partc.serve.models import LoadedModel

INLINE_SECONDS = 0.0005  # calls expected to be shorter run on the event loop (a thread hop costs more)
SMOOTHING = 0.25  # weight of the newest call in the running estimate of seconds per sample


@dataclass
class _Pending:
    x: np.ndarray  # what the graph takes: (rows, *input_shape), float32
    future: asyncio.Future
    enqueued: float


class Batcher:
    def __init__(self, model: LoadedModel, executor: Executor, metrics: ServeMetrics, *, batching: bool = True,
                 max_batch: int | None = None, max_delay: float = 0.0, max_queue: int = DEFAULT_MAX_QUEUE):
        self.model = model
        self.executor = executor
        self.metrics = metrics
        self.batching = batching
        self.max_batch = max_batch or model.info.max_batch
        self.max_delay = max_delay
        self.max_queue = max_queue
        self.queue: deque[_Pending] = deque()
        self.queued_rows = 0
        self.waiting = 0  # requests queued or computing (the bound applies to these)
        self.running = False
        self.arrived: asyncio.Event | None = None  # set when a request arrives during a max_delay wait
        self.seconds_per_row: float | None = None  # running estimate, from the calls so far

    async def infer(self, x: np.ndarray, *, alone: bool = False) -> dict[str, np.ndarray]:
        """Each output's logits for `x`, rows in the order given; errors from ONNX Runtime pass on.

        `alone`: no other request is in flight in the server (a quick call may then run on the event loop).
        """
        if self.waiting >= self.max_queue:
            raise RequestError(503, f"model '{self.model.name}' has {self.waiting} requests waiting; retry shortly",
                               {"retry-after": "1"})
        if alone and not self.running and not self.queue and self._quick(len(x)):
            return self._run_inline(x)
        self.waiting += 1
        try:
            if not self.batching:
                enqueued = time.perf_counter()
                return (await self._call([_Pending(x, None, enqueued)]))[0]
            future = asyncio.get_running_loop().create_future()
            self.queue.append(_Pending(x, future, time.perf_counter()))
            self.queued_rows += len(x)
            if not self.running:
                self.running = True
                asyncio.get_running_loop().create_task(self._drain())
            elif self.arrived is not None:
                self.arrived.set()
            return await future
        finally:
            self.waiting -= 1

    async def _drain(self) -> None:
        """Run batches while requests are queued; one call in flight at a time."""
        try:
            while self.queue:
                if self.max_delay > 0 and self.queued_rows < self.max_batch:
                    await self._wait_for_more()
                taken = self._take()
                if not taken:
                    continue
                try:
                    results = await self._call(taken)
                except Exception as e:  # ONNX Runtime failed: every request of the batch gets the error
                    for p in taken:
                        if not p.future.done():
                            p.future.set_exception(e)
                    continue
                for p, result in zip(taken, results):
                    if not p.future.done():  # a request whose client went away is cancelled
                        p.future.set_result(result)
        finally:
            self.running = False

    async def _wait_for_more(self) -> None:
        deadline = self.queue[0].enqueued + self.max_delay
        while self.queued_rows < self.max_batch:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self.arrived = asyncio.Event()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:  # noqa: UP041 (python 3.10 has its own class)
                return
            finally:
                self.arrived = None

    def _take(self) -> list[_Pending]:
        """The queued requests of the next batch: whole requests, in order, up to max_batch rows (at least one)."""
        taken: list[_Pending] = []
        rows = 0
        while self.queue:
            head = self.queue[0]
            if head.future.done():  # cancelled while queued
                self.queue.popleft()
                self.queued_rows -= len(head.x)
                continue
            if taken and rows + len(head.x) > self.max_batch:
                break
            self.queue.popleft()
            self.queued_rows -= len(head.x)
            taken.append(head)
            rows += len(head.x)
        return taken

    def _quick(self, rows: int) -> bool:
        return self.seconds_per_row is not None and rows * self.seconds_per_row < INLINE_SECONDS

    def _measured(self, rows: int, seconds: float) -> None:
        per_row = seconds / rows
        old = self.seconds_per_row
        self.seconds_per_row = per_row if old is None else old + SMOOTHING * (per_row - old)

    def _run_inline(self, x: np.ndarray) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        outputs = self.model.run_graph(x)
        seconds = time.perf_counter() - start
        self._measured(len(x), seconds)
        self.metrics.batch(self.model.name, len(x), [0.0], seconds)
        return outputs

    async def _call(self, taken: list[_Pending]) -> list[dict[str, np.ndarray]]:
        """One ONNX Runtime call over the requests' rows, in the compute pool; each request's share of the outputs."""
        x = taken[0].x if len(taken) == 1 else np.concatenate([p.x for p in taken])
        start = time.perf_counter()
        outputs = await asyncio.get_running_loop().run_in_executor(self.executor, self.model.run_graph, x)
        seconds = time.perf_counter() - start
        self._measured(len(x), seconds)
        self.metrics.batch(self.model.name, len(x), [start - p.enqueued for p in taken], seconds)
        results, offset = [], 0
        for p in taken:
            rows = len(p.x)
            results.append({name: value[offset:offset + rows] for name, value in outputs.items()})
            offset += rows
        return results
