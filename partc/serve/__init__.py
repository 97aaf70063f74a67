"""Serve stage: exported models on ONNX Runtime, from the command line or over HTTP.

    load_models(export_dir) -> {name: LoadedModel}            (partc.serve.models)
    PartcApp(models, options), Server(app, limits).serve(sock) (partc.serve.app, partc.serve.transport)

Nothing here imports torch, directly or through partc: the serving process
needs only onnxruntime, numpy, pillow, h11 and prometheus_client. This file
imports nothing at all, so the CLI can register its commands cheaply; the
defaults below are the one place the CLI and the Python API take them from.
"""

DEFAULT_TOP = 5  # labels per sample in predictions
DEFAULT_MAX_BODY = 16 * 1024 * 1024  # bytes of one request body
DEFAULT_MAX_BUFFERED = 32 * DEFAULT_MAX_BODY  # bytes of request bodies held at once, all connections together
DEFAULT_MAX_CONNECTIONS = 256  # open connections; the next one gets 503
DEFAULT_HEADER_TIMEOUT = 10.0  # seconds for request line and headers (and a keep-alive connection's idle time)
DEFAULT_BODY_TIMEOUT = 30.0  # seconds for a whole body once the headers are in
DEFAULT_SHUTDOWN_GRACE = 5.0  # seconds requests in flight get after SIGTERM
DEFAULT_MAX_QUEUE = 1024  # requests waiting per model before 503
