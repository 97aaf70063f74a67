"""Export stage, entry point: a run (or spec) -> one verified ONNX file per task.

For each task: take its fx module (only its stem, path segments and head),
export it (partc/export/onnx_export.py), check the file is valid ONNX and
that every weight in it is on the task's route, run it in ONNX Runtime
(CPU) at batch 1 and 3 against torch, and only then write it. Any failure is
an `ExportError`; nothing half-verified is left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from partc.errors import ExportError
from partc.export import NATIVE_OPSET
from partc.export.metadata import CALLER, IN_GRAPH, ModelInfo, graph_problems
from partc.export.onnx_export import to_onnx
from partc.export.source import load_source
from partc.export.triton import LAYOUTS, config_pbtxt, labels_file, labels_txt, model_path
from partc.export.verify import WeightAudit, audit_weights, check_onnx, compare_with_torch
from partc.version import __version__

TOLERANCE = 1e-4  # max |ONNX Runtime - torch| in fp32


@dataclass
class TaskExport:
    task: str
    path: Path
    bytes: int
    max_abs_diff: float
    weights: WeightAudit
    info: ModelInfo


def export_tasks(source: str | Path, out_dir: str | Path, *, tasks: list[str] | None = None,
                 opset: int = NATIVE_OPSET, layout: str = "plain", max_batch: int = 64, fold: bool = True,
                 normalize_in_graph: bool = False, dynamic_batching: bool = False,
                 tolerance: float = TOLERANCE, log: Callable[[str], None] | None = None) -> list[TaskExport]:
    """Export `tasks` (all by default) of a run directory, checkpoint or spec into `out_dir`.

    `normalize_in_graph`: each file takes raw input in [0, 1] and applies the
    task's mean/std itself (partc/export/normalization.py; for clients that
    cannot normalise, such as Triton's). `dynamic_batching`: the Triton
    layout's configs let Triton batch requests.
    """
    from partc.run import atomic_write_bytes, atomic_write_text

    if layout not in LAYOUTS:
        raise ExportError(f"unknown layout '{layout}'", hint=f"use one of: {', '.join(LAYOUTS)}")
    if dynamic_batching and layout != "triton":
        raise ExportError("--dynamic-batching configures Triton", hint="use it with --layout triton")
    if max_batch < 1:
        raise ExportError(f"--max-batch must be at least 1, got {max_batch}")
    src = load_source(source)
    net = src.net
    names = list(tasks) if tasks else list(net.tasks)
    unknown = [t for t in names if t not in net.tasks]
    if unknown:
        raise ExportError(f"unknown task(s) {', '.join(unknown)}", hint=f"tasks of '{net.name}': {', '.join(net.tasks)}")
    out = Path(out_dir)
    results = []
    for name in dict.fromkeys(names):
        task = net.tasks[name]
        spec_input = net.inputs[task.input]
        stats = src.stats[name]
        info = ModelInfo.for_task(
            task=name, labels=stats["labels"], mean=stats["mean"], std=stats["std"],
            normalization=IN_GRAPH if normalize_in_graph else CALLER,
            network=net.name, spec_hash=net.spec_hash, partc_version=__version__, weights=src.weights,
            input_name=spec_input.name, input_shape=tuple(spec_input.shape), input_dtype="float32", max_batch=max_batch,
        )
        module = src.model.task(name).eval()
        exported, wrapper = module, {}
        if normalize_in_graph:
            from partc.export.normalization import BUFFERS, PREFIX, NormalizedInput

            exported = NormalizedInput(module, stats["mean"], stats["std"], 1 + len(info.input_shape)).eval()
            wrapper = {"prefix": PREFIX, "own_constants": BUFFERS}
        proto = to_onnx(exported, info.input_shape, info, opset=opset, fold=fold)
        check_onnx(proto, name)
        audit = audit_weights(proto, module, src.model, name, net.task_params(name), **wrapper)
        data = proto.SerializeToString()
        diff = _verify_in_runtime(data, exported, info)
        if not diff <= tolerance:  # also catches NaN
            raise ExportError(f"task '{name}': ONNX Runtime differs from torch by {diff:.3g} (tolerance {tolerance:g})",
                              hint="the exported graph does not compute what the torch module computes")
        path = model_path(out, name, layout)
        atomic_write_bytes(path, data)
        if layout == "triton":
            atomic_write_text(path.parent.parent / "config.pbtxt", config_pbtxt(info, dynamic_batching=dynamic_batching))
            for output in info.outputs:
                atomic_write_text(path.parent.parent / labels_file(info, output), labels_txt(output))
        result = TaskExport(name, path, len(data), diff, audit, info)
        results.append(result)
        if log:
            log(describe(result))
    if log and results:
        whole = net.total_params * 4
        ratios = sorted(r.bytes / whole for r in results)
        span = f"{ratios[0]:.0%}" if ratios[0] == ratios[-1] else f"{ratios[0]:.0%}..{ratios[-1]:.0%}"
        log(f"whole network '{net.name}': {net.total_params:,} parameters = {_size(whole)} in fp32; "
            f"{len(results)} task file(s), each {span} of that, written to {out}")
    return results


def _verify_in_runtime(data: bytes, module, info: ModelInfo) -> float:
    """Max |ONNX Runtime - torch|, after checking that the metadata describes the graph (what serving checks at load)."""
    from partc.onnxrt import graph_values, open_session

    session = open_session(data, device="cpu")
    problems = info.problems() + graph_problems(info, *graph_values(session))
    if problems:
        raise ExportError(f"{info.kind} '{info.name}': the metadata does not describe the graph: {'; '.join(problems)}")
    return compare_with_torch(session, module, info.input_shape, info.input_name)


def describe(r: TaskExport) -> str:
    w = r.weights
    folded = f", {w.folded_batchnorm:,} BatchNorm scale/shift folded into convs" if w.folded_batchnorm else ""
    created = f", {w.created_bias:,} bias values created by folding" if w.created_bias else ""
    return (f"{r.task}: {r.path} {_size(r.bytes)}; route {w.route_params:,} params -> "
            f"{w.file_weights:,} weights in the file{folded}{created}; "
            f"max |onnxruntime - torch| = {r.max_abs_diff:.2e} (batch 1 and 3)")


def _size(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB" if n >= 1e3 else f"{n} B"
