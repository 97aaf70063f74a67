"""Serve stage: exported tasks on ONNX Runtime, from the command line or over HTTP.

    load_models(export_dir) -> {task: TaskModel}     (partc.serve.models)
    create_app(models)      -> Starlette app          (partc.serve.app)

Nothing here imports torch, directly or through partc: the serving process
needs only onnxruntime, numpy, pillow, starlette and uvicorn. This file
imports nothing at all, so the CLI can register its commands cheaply.
"""

DEFAULT_MAX_BODY = 16 * 1024 * 1024  # bytes of a request body partc serve accepts
DEFAULT_TOP = 5  # labels per sample in predictions
