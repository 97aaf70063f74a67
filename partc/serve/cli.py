"""`partc predict` and `partc serve`: exported tasks on ONNX Runtime (never imports torch)."""

from __future__ import annotations

import argparse
import json
import sys

from partc.devices import DEVICE_CHOICES
from partc.serve import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_QUEUE,
    DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_TOP,
)


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from partc.errors import DataError
    from partc.export.metadata import IN_GRAPH
    from partc.serve.inputs import open_input
    from partc.serve.models import load_task

    if args.top < 1:
        raise DataError(f"--top must be at least 1, got {args.top}")
    model = load_task(args.model, args.task, args.device)
    output = model.output(args.task)
    if args.normalized and model.info.normalization == IN_GRAPH:
        raise DataError(f"'{args.model}' normalises in its graph; give raw inputs in [0, 1], without --normalized")
    inputs = [open_input(path, model.info.input_shape, invert=args.invert) for path in args.inputs]  # all checked first
    report = _JsonReport(output.task, model.provider) if args.json else _TableReport(output.task, output.labels)
    failed, total = [], 0
    for source in inputs:
        warned = False
        for start, batch in source.chunks(model.info.max_batch):  # a batch the model accepts, and bounded memory
            if not (args.normalized or warned) and (batch.min() < -0.01 or batch.max() > 1.01):
                # A common slip: raw digits (0..16) or 8-bit pixels (0..255) saved as .npy.
                print(f"warning: '{source.path}' has values in [{batch.min():.3g}, {batch.max():.3g}]; partc expects raw "
                      "values in [0, 1] (digits / 16, pixels / 255), or --normalized for normalised inputs",
                      file=sys.stderr)
                warned = True
            logits = model.predict(batch, normalized=args.normalized, task=output.task)
            finite = np.isfinite(logits).all(axis=1)
            tops = iter(model.top_k(logits[finite], args.top, output.task)) if finite.any() else iter(())
            for i, ok in enumerate(finite):
                name = str(source.path) if source.single else f"{source.path}[{start + i}]"
                total += 1
                if ok:
                    report.prediction(name, next(tops))
                else:
                    failed.append(name)
                    report.error(name, "the network computed non-finite logits (inf or NaN)")
    report.close()
    if failed:
        raise DataError(f"{len(failed)} of {total} sample(s) gave non-finite logits (first: {failed[0]})",
                        hint="finite inputs far outside the raw [0, 1] range overflow inside the network")
    return 0


class _JsonReport:
    """`--json`: one document, written a prediction per line as the chunks are computed (never NaN)."""

    def __init__(self, task: str, provider: str):
        self.first = True
        sys.stdout.write(f'{{\n  "task": {json.dumps(task)},\n  "provider": {json.dumps(provider)},\n  "predictions": [')

    def _entry(self, entry: dict) -> None:
        sys.stdout.write(("\n    " if self.first else ",\n    ") + json.dumps(entry, allow_nan=False))
        self.first = False

    def prediction(self, name: str, top: list[tuple[str, float]]) -> None:
        self._entry({"input": name, "top": [{"label": label, "probability": p} for label, p in top]})

    def error(self, name: str, message: str) -> None:
        self._entry({"input": name, "error": message})

    def close(self) -> None:
        sys.stdout.write("\n  ]\n}\n" if not self.first else "]\n}\n")
        sys.stdout.flush()


class _TableReport:
    def __init__(self, task: str, labels: tuple[str, ...]):
        self.task = task
        self.width = max(len(label) for label in labels)

    def prediction(self, name: str, top: list[tuple[str, float]]) -> None:
        print(f"{name}  (task {self.task})")
        for label, p in top:
            print(f"  {label:<{self.width}}  {p:.4f}")

    def error(self, name: str, message: str) -> None:
        print(f"{name}  (task {self.task})\n  error: {message}")

    def close(self) -> None:
        sys.stdout.flush()


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from partc.errors import ServeError
    from partc.serve.app import PartcApp, ServeOptions
    from partc.serve.models import load_models
    from partc.serve.transport import Limits, Server

    if args.max_buffered < args.max_body:
        raise ServeError(f"--max-buffered {args.max_buffered} is below --max-body {args.max_body}",
                         hint="the body budget of all connections must hold at least one largest body")
    token = read_token(args.token_file) if args.token_file else None
    threads = args.threads or default_threads()
    models = load_models(args.model_dir, args.device, threads)
    limits = Limits(max_body=args.max_body, max_buffered=args.max_buffered, max_connections=args.max_connections,
                    header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                    shutdown_grace=args.shutdown_grace)
    options = ServeOptions(batching=not args.no_batching, max_batch=args.max_batch, max_delay=args.max_queue_delay / 1e3,
                           max_queue=args.max_queue, token=token, access_log=args.access_log)
    sock = listen_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("partc serve: %(message)s"))
    logger = logging.getLogger("partc.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    warning = bind_warning(host, token is not None)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    app = PartcApp(models, options)
    server = Server(app, limits)
    app.server = server
    providers = sorted({m.provider for m in models.values()})
    sizes = sorted({b.max_batch for b in app.batchers.values()})
    batching = "off" if args.no_batching else \
        f"up to {'/'.join(map(str, sizes))} samples a call, {args.max_queue_delay:g} ms delay"
    url_host = f"[{host}]" if ":" in host else host

    def listening() -> None:
        print(f"partc serve: {len(models)} model(s) ({', '.join(models)}) on {', '.join(providers)}, {threads} ONNX "
              f"Runtime thread(s) each, batching {batching}; http://{url_host}:{port}", flush=True)

    try:
        asyncio.run(server.serve(sock, on_listening=listening))
    finally:
        app.close()
        sock.close()
    return 0


def default_threads() -> int:
    """ONNX Runtime intra-op threads per session for a server: half the CPUs, leaving the rest to the Python side."""
    from partc.devices import cpu_threads

    return max(1, cpu_threads() // 2)


def read_token(path: str) -> str:
    """The bearer token in a file (one line, printable ASCII, no spaces); a warning when others may read the file."""
    import os
    import stat

    from partc.errors import ServeError

    try:
        text = open(path, encoding="utf-8").read().strip()
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise ServeError(f"cannot read the token file '{path}': {e}") from None
    if not text or not text.isascii() or not text.isprintable() or any(c.isspace() for c in text):
        raise ServeError(f"the token file '{path}' must hold one token: printable ASCII without spaces",
                         hint="e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > token.txt")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"warning: the token file '{path}' is readable by other users (chmod 600 it)", file=sys.stderr)
    return text


def bind_warning(address: str, has_token: bool) -> str | None:
    """A warning for a bound address other machines can reach (None for loopback)."""
    import ipaddress

    try:
        if ipaddress.ip_address(address.split("%")[0]).is_loopback:
            return None
    except ValueError:
        pass
    protection = "a bearer token (--token-file) over plain HTTP" if has_token else "no authentication"
    return (f"warning: listening on {address}, reachable from other machines, with {protection}; bind 127.0.0.1 "
            "and put a TLS proxy in front to expose it")


def listen_socket(host: str, port: int):
    """A bound socket for the server: a busy port is a clear error, and port 0 picks a free one."""
    import socket

    from partc.errors import ServeError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError, OverflowError) as e:
        raise ServeError(f"cannot resolve host '{host}': {e}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror}",
                         hint="choose another --port (0 picks a free one)") from None
    return sock


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="classify .npy arrays or images with an exported task (ONNX Runtime)",
        description="Run an exported task on inputs and print the top-k labels with softmax probabilities. "
                    "Inputs are raw values in [0, 1] (images: pixels / 255), normalised with the file's mean/std; "
                    "values outside [0, 1] draw a warning.",
    )
    p.add_argument("model", metavar="DIR_OR_ONNX", help="the 'partc export' folder (plain or triton) or one .onnx file")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".npy (one sample or a batch) or image files")
    p.add_argument("--task", metavar="T", help="the task to run (needed when DIR holds several)")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="K", help=f"labels shown per input (default {DEFAULT_TOP})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--normalized", action="store_true", help="inputs are already normalised: skip (x - mean) / std")
    p.add_argument("--invert", action="store_true", help="use 1 - x (dark ink on white paper, for the digits tasks)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="auto: CUDA when usable, else CPU (default)")
    p.set_defaults(func=cmd_predict)

    from partc.argtypes import int_at_least, number_between
    from partc.devices import cpu_threads

    p = subparsers.add_parser(
        "serve", help="serve every exported model over HTTP: Open Inference Protocol v2, metrics, batching",
        description="Serve the exported models in DIR (ONNX Runtime, no torch): KServe/Triton v2 at /v2 "
                    "(/v2/models/{model}/infer), Prometheus metrics at /metrics, dynamic batching. See docs/serve.md.",
    )
    p.add_argument("model_dir", metavar="DIR", help="the 'partc export' folder (plain or triton layout)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others draw a warning)")
    p.add_argument("--port", type=int_at_least(0, maximum=65535), default=8000,
                   help="port (default 8000; 0 picks a free one, printed at start)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="auto: CUDA when usable, else CPU (default)")
    p.add_argument("--threads", type=int_at_least(1, " (this machine's CPUs)", maximum=cpu_threads()), metavar="N",
                   help="ONNX Runtime intra-op threads per model (default: half the CPUs, at least 1)")
    p.add_argument("--token-file", metavar="PATH",
                   help="require 'Authorization: Bearer <token>' with the token in this file (health probes excepted)")
    g = p.add_argument_group("batching")
    g.add_argument("--no-batching", action="store_true", help="run each request on its own ONNX Runtime call")
    g.add_argument("--max-batch", type=int_at_least(1), metavar="N",
                   help="samples per ONNX Runtime call (default and upper bound: each model's max_batch)")
    g.add_argument("--max-queue-delay", type=number_between(0, 1000, " ms"), default=0.0, metavar="MS",
                   help="how long a batch waits for more requests after its first (default 0: never waits)")
    g.add_argument("--max-queue", type=int_at_least(1), default=DEFAULT_MAX_QUEUE, metavar="N",
                   help=f"requests waiting per model before 503 (default {DEFAULT_MAX_QUEUE})")
    g = p.add_argument_group("limits")
    g.add_argument("--max-body", type=int_at_least(1024, maximum=1 << 34), default=DEFAULT_MAX_BODY, metavar="BYTES",
                   help=f"largest request body, else 413 (default {DEFAULT_MAX_BODY})")
    g.add_argument("--max-buffered", type=int_at_least(1024, maximum=1 << 36), default=DEFAULT_MAX_BUFFERED,
                   metavar="BYTES", help=f"request body bytes held at once by all connections, else 503 "
                                         f"(default {DEFAULT_MAX_BUFFERED})")
    g.add_argument("--max-connections", type=int_at_least(1, maximum=100_000), default=DEFAULT_MAX_CONNECTIONS,
                   metavar="N", help=f"open connections; the next gets 503 (default {DEFAULT_MAX_CONNECTIONS})")
    g.add_argument("--header-timeout", type=number_between(0.1, 3600, " s"), default=DEFAULT_HEADER_TIMEOUT,
                   metavar="S", help="seconds for a request's headers, and a keep-alive connection's idle time "
                                     f"(default {DEFAULT_HEADER_TIMEOUT:g})")
    g.add_argument("--body-timeout", type=number_between(0.1, 3600, " s"), default=DEFAULT_BODY_TIMEOUT, metavar="S",
                   help=f"seconds for a request's whole body (default {DEFAULT_BODY_TIMEOUT:g})")
    g.add_argument("--shutdown-grace", type=number_between(0, 600, " s"), default=DEFAULT_SHUTDOWN_GRACE, metavar="S",
                   help=f"on SIGTERM, seconds requests in flight get before connections drop "
                        f"(default {DEFAULT_SHUTDOWN_GRACE:g})")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)
