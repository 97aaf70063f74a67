"""`partc predict` and `partc serve`: exported tasks on ONNX Runtime (never imports torch)."""

from __future__ import annotations

import argparse
import json
import sys

from partc.devices import DEVICE_CHOICES
from partc.serve import DEFAULT_MAX_BODY, DEFAULT_TOP


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
    import uvicorn

    from partc.serve.app import create_app
    from partc.serve.models import load_models

    models = load_models(args.model_dir, args.device, args.threads)
    app = create_app(models, max_body=args.max_body)
    sock = listen_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    providers = sorted({m.provider for m in models.values()})
    url_host = f"[{host}]" if ":" in host else host
    print(f"partc serve: {len(models)} task(s) ({', '.join(models)}) on {', '.join(providers)}; "
          f"http://{url_host}:{port}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=args.access_log)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def listen_socket(host: str, port: int):
    """A bound socket for the server: a busy port is a clear error, and port 0 picks a free one."""
    import socket

    from partc.errors import ServeError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as e:
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

    p = subparsers.add_parser(
        "serve", help="serve every exported task over HTTP (Starlette + uvicorn, ONNX Runtime)",
        description="GET /health, GET /tasks, GET /tasks/{task}, POST /tasks/{task}/predict with "
                    '{"inputs": [[...], ...], "top": k}. See docs/export.md.',
    )
    p.add_argument("model_dir", metavar="DIR", help="the 'partc export' folder (plain or triton layout)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one, printed at start)")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                   help=f"largest request body accepted, else 413 (default {DEFAULT_MAX_BODY})")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="auto: CUDA when usable, else CPU (default)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="ONNX Runtime intra-op threads per session (default: ONNX Runtime's choice)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)
