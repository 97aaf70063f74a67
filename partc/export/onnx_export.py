"""Export stage, torch -> ONNX: one task's fx module becomes one small ONNX model.

Exporter choice (torch 2.13): `torch.onnx.export(dynamo=True)` with
`dynamic_shapes` on the batch axis and its optimizer on. Compared with the
TorchScript exporter (`dynamo=False`) it
- keeps each weight's torch name (`levels.l2.5.0.weight`) as the initializer
  name even after folding BatchNorm into the preceding conv, so a file can be
  audited: every weight it holds is attributable to a module on the task's
  route (see partc/export/verify.py);
- folds eval-mode BatchNorm into conv/linear weights and drops idempotent
  ops (relu after relu), giving graphs of conv, relu, add, pool and gemm only;
- is the default and the maintained one (the TorchScript path is deprecated).
It emits opset 18 natively; other opsets go through onnx's version converter
(for 17, ReduceMean's axes move back to an attribute).

The exporter records each node's Python stack trace and namespace as node
metadata; we strip it: it holds local file paths and makes files
machine-dependent. The result is byte-for-byte reproducible for given weights.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import onnx

from partc.errors import ExportError
from partc.export import NATIVE_OPSET
from partc.export.metadata import ModelInfo

MIN_OPSET = 17


@contextlib.contextmanager
def _quiet_exporter():
    """Hide the exporter's chatter (torchvision notices, deprecation warnings); errors still raise."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def to_onnx(module, sample_shape: tuple[int, ...], info: ModelInfo, *, opset: int = NATIVE_OPSET,
            fold: bool = True) -> onnx.ModelProto:
    """The ONNX model of a module (eval mode) with a dynamic batch axis and partc metadata.

    The module takes one input and returns one tensor of logits per entry of
    `info.outputs`, in that order (a task module: one).

    `fold=False` skips the exporter's optimizer: BatchNorm stays a separate
    node with its own scale/shift (larger, slower; for inspection and for
    checking the parameter count before folding).
    """
    import torch

    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old", hint=f"use --opset {MIN_OPSET} or newer (default {NATIVE_OPSET})")
    if opset > onnx.defs.onnx_opset_version():
        raise ExportError(f"opset {opset} is newer than this onnx package knows ({onnx.defs.onnx_opset_version()})")
    example = torch.randn(2, *sample_shape)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                module, (example,), None, dynamo=True, verbose=False, external_data=False,
                input_names=[info.input_name], output_names=[o.name for o in info.outputs],
                dynamic_shapes=({0: batch},), opset_version=NATIVE_OPSET, optimize=fold,
            )
    except Exception as e:  # the exporter raises many kinds; the user needs the first line
        raise ExportError(f"{info.kind} '{info.name}': torch.onnx.export failed: {type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0][:300]}") from e
    model = program.model_proto
    _strip_debug_info(model)
    if opset != NATIVE_OPSET:
        model = _convert_opset(model, opset, f"{info.kind} '{info.name}'")
    model.producer_name = "partc"
    model.producer_version = info.partc_version
    model.doc_string = f"partc {info.kind} '{info.name}' of network '{info.network}'"
    del model.metadata_props[:]
    for key, value in info.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    return model


def _strip_debug_info(model: onnx.ModelProto) -> None:
    graph = model.graph
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in [*graph.input, *graph.output, *graph.value_info]:
        del value.metadata_props[:]
        value.doc_string = ""
    for init in graph.initializer:
        del init.metadata_props[:]
        init.doc_string = ""
    del graph.metadata_props[:]
    graph.doc_string = ""


def _convert_opset(model: onnx.ModelProto, opset: int, what: str) -> onnx.ModelProto:
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, opset)
    except Exception as e:
        raise ExportError(f"{what}: cannot convert the model to opset {opset}: {str(e).splitlines()[0][:200]}",
                          hint=f"use the exporter's native opset {NATIVE_OPSET}") from None
    if opset < 18:
        # Opset 18 added `noop_with_empty_axes` to the Reduce* ops; the converter leaves it behind.
        for node in converted.graph.node:
            if node.op_type.startswith("Reduce"):
                keep = [a for a in node.attribute if a.name != "noop_with_empty_axes" or a.i != 0]
                del node.attribute[:]
                node.attribute.extend(keep)
    return converted
