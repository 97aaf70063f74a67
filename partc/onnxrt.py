"""ONNX Runtime sessions for exported models (no torch): shared by export (verification) and serve.

`open_session` picks the execution provider: CUDA when a GPU is present and
ONNX Runtime's CUDA provider loads, the CPU otherwise. onnxruntime-gpu lists
CUDAExecutionProvider in `get_available_providers()` even on machines
without a GPU or without the CUDA libraries, and a failed provider load is
logged to stderr by ONNX Runtime's global logger (which
`SessionOptions.log_severity_level` does not reach). So we first ask the
CUDA driver whether a device exists (a silent ctypes call); only then try
the CUDA provider, with stderr muted during session creation, and fall back
to the CPU when it did not load. The user sees no provider-load noise.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from functools import lru_cache
from pathlib import Path

import onnxruntime as ort

from partc.devices import DEVICE_CHOICES
from partc.errors import ExportError

try:
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile

    _ORT_LOAD_ERRORS: tuple[type[BaseException], ...] = (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile)
except ImportError:  # a future ONNX Runtime moving its exception classes
    _ORT_LOAD_ERRORS = (RuntimeError,)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# ONNX Runtime's type strings -> numpy dtype names (what partc's metadata records).
ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(bfloat16)": "bfloat16", "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(bool)": "bool", "tensor(string)": "str",
}


@lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """GPUs the CUDA driver reports (0 without a driver or a GPU); never prints."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def cuda_possible() -> bool:
    return CUDA in ort.get_available_providers() and cuda_device_count() > 0


@contextlib.contextmanager
def _muted_stderr():
    """Silence file descriptor 2 (native libraries write there directly, not through sys.stderr)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def session_options(threads: int | None = None, *, spin: bool = True) -> ort.SessionOptions:
    """Session options; `spin=False`: ONNX Runtime's worker threads sleep between calls.

    By default its intra-op threads spin for a while after each call,
    waiting for the next. In partc serve that burns the cores the Python
    side needs (HTTP, JSON, other models' calls), and on a machine shared
    with other work it made batch-64 calls of a digits task 2.4x slower
    (29.5 against 12.5 ms, 2 threads, load average 4 on 2 cores), so
    predict and serve turn it off; export's verification keeps the default.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings at session creation
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(model: str | Path | bytes, device: str = "auto", threads: int | None = None, *,
                 spin: bool = True) -> ort.InferenceSession:
    """An inference session on the GPU when usable (`device` auto or cuda), else on the CPU."""
    if device not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {DEVICE_CHOICES}")
    source = model if isinstance(model, bytes) else str(model)
    options = session_options(threads, spin=spin)
    try:
        if device != "cpu" and cuda_possible():
            with _muted_stderr():
                session = ort.InferenceSession(source, options, providers=[CUDA, CPU])
            if CUDA in session.get_providers() or device == "auto":
                return session  # on the GPU, or (auto) already fallen back to the CPU
        if device == "cuda":
            raise ExportError("--device cuda: ONNX Runtime's CUDA provider is not usable here",
                              hint="no GPU, or the CUDA/cuDNN libraries are missing; use --device auto or cpu")
        return ort.InferenceSession(source, options, providers=[CPU])
    except _ORT_LOAD_ERRORS as e:
        name = "<bytes>" if isinstance(model, bytes) else str(model)
        raise ExportError(f"ONNX Runtime cannot load '{name}': {str(e).splitlines()[0][:300]}") from None


def graph_values(session: ort.InferenceSession) -> tuple[list[tuple], list[tuple]]:
    """The session's inputs and outputs as (name, shape, numpy dtype name) triples.

    A symbolic size stays its name (a str), an unknown size is None; a type
    numpy has no name for keeps ONNX Runtime's string ("tensor(...)").
    """
    def value(arg) -> tuple:
        shape = None if arg.shape is None else tuple(d if isinstance(d, (int, str)) else None for d in arg.shape)
        return (arg.name, shape, ORT_DTYPES.get(arg.type, arg.type))

    return [value(a) for a in session.get_inputs()], [value(a) for a in session.get_outputs()]
