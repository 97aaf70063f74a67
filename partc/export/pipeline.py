"""Export stage, entry point: a run (or spec) -> verified ONNX files, one per task or one fused file.

    export_tasks(source, out_dir, tasks=None, ...) -> [TaskExport]   one file per task
    export_fused(source, out_dir, tasks=None, ...) -> FusedExport    one file, every task in one pass

Each file is written straight from the IR (partc/export/emit.py) with the
trained weights, then checked: valid ONNX, every weight on the route (of the
task, or of the union of the fused tasks), and ONNX Runtime (CPU) against
each task's torch module at batch 1 and 3. Only then is it written
(atomically). Any failure is an `ExportError`; nothing half-verified is left
behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from partc.errors import ExportError
from partc.export import NATIVE_OPSET
from partc.export.emit import check_opset, emit_model
from partc.export.metadata import CALLER, IN_GRAPH, ModelInfo, graph_problems
from partc.export.source import ExportSource, load_source
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
    flops: int  # per sample, from the IR


@dataclass
class FusedExport:
    network: str
    tasks: list[str]
    path: Path
    bytes: int
    max_abs_diff: dict[str, float]  # per task
    weights: WeightAudit  # of the union of the tasks' routes
    info: ModelInfo
    flops: int  # per sample of the fused pass, from the IR (the union rule, partc/export/emit.py)
    task_flops: int  # the same tasks' files run one after another: the sum of their routes' FLOPs

    @property
    def ideal_ratio(self) -> float:
        """Fused time over the task files' total time if time followed FLOPs."""
        return self.flops / self.task_flops


def _options(source, tasks, opset: int, layout: str, max_batch: int, dynamic_batching: bool) -> tuple[ExportSource, list]:
    """The loaded source and the chosen tasks, after checking the options (before any work)."""
    if layout not in LAYOUTS:
        raise ExportError(f"unknown layout '{layout}'", hint=f"use one of: {', '.join(LAYOUTS)}")
    if dynamic_batching and layout != "triton":
        raise ExportError("--dynamic-batching configures Triton", hint="use it with --layout triton")
    if max_batch < 1:
        raise ExportError(f"--max-batch must be at least 1, got {max_batch}")
    check_opset(opset)
    src = load_source(source)
    net = src.net
    names = list(dict.fromkeys(tasks)) if tasks else list(net.tasks)
    unknown = [t for t in names if t not in net.tasks]
    if unknown:
        raise ExportError(f"unknown task(s) {', '.join(unknown)}", hint=f"tasks of '{net.name}': {', '.join(net.tasks)}")
    return src, names


def _common(src: ExportSource, input_name: str, max_batch: int) -> dict:
    net = src.net
    return dict(network=net.name, spec_hash=net.spec_hash, partc_version=__version__, weights=src.weights,
                input_name=input_name, input_shape=tuple(net.inputs[input_name].shape), input_dtype="float32",
                max_batch=max_batch)


def export_tasks(source: str | Path, out_dir: str | Path, *, tasks: list[str] | None = None,
                 opset: int = NATIVE_OPSET, layout: str = "plain", max_batch: int = 64, fold: bool = True,
                 normalize_in_graph: bool = False, dynamic_batching: bool = False,
                 tolerance: float = TOLERANCE, log: Callable[[str], None] | None = None) -> list[TaskExport]:
    """Export `tasks` (all by default) of a run directory, checkpoint or spec into `out_dir`, a file each.

    `normalize_in_graph`: each file takes raw input in [0, 1] and applies the
    task's mean/std itself (a Sub and a Div before the first layer; for
    clients that cannot normalise, such as Triton's). `dynamic_batching`:
    the Triton layout's configs let Triton batch requests. `fold=False` keeps
    each BatchNorm as its own node (larger, slower; for inspection).
    """
    src, names = _options(source, tasks, opset, layout, max_batch, dynamic_batching)
    net = src.net
    tensors, params = src.tensors(), src.parameter_names()
    out = Path(out_dir)
    _refuse_case_collisions(names, out)
    results = []
    for name in names:
        stats = src.stats[name]
        info = ModelInfo.for_task(task=name, labels=stats["labels"], mean=stats["mean"], std=stats["std"],
                                  normalization=IN_GRAPH if normalize_in_graph else CALLER,
                                  **_common(src, net.tasks[name].input, max_batch))
        path, data, diffs, audit, macs = _export_file(src, [name], info, tensors, params, out, opset=opset, fold=fold,
                                                      layout=layout, dynamic_batching=dynamic_batching,
                                                      tolerance=tolerance)
        result = TaskExport(name, path, len(data), diffs[info.outputs[0].name], audit, info, 2 * macs)
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


def _refuse_case_collisions(names: list[str], out: Path) -> None:
    """Task files whose names differ only in case would overwrite each other where the folder ignores case."""
    by_folded: dict[str, list[str]] = {}
    for name in names:
        by_folded.setdefault(name.casefold(), []).append(name)
    clashes = [group for group in by_folded.values() if len(group) > 1]
    if clashes and not _case_sensitive(out):
        shown = "; ".join(" and ".join(f"'{n}'" for n in group) for group in clashes)
        raise ExportError(f"the file system of '{out}' ignores case, so the files of tasks {shown} would be one file",
                          hint="export into a folder on a case-sensitive file system, or export those tasks "
                               "one at a time into separate folders (--task)")


def _case_sensitive(out: Path) -> bool:
    """Whether the file system that will hold OUT tells 'a' from 'A' (probed with a temporary file)."""
    import tempfile

    folder = out
    while not folder.is_dir():
        if folder.parent == folder:
            return True
        folder = folder.parent
    try:
        with tempfile.NamedTemporaryFile(prefix=".partc-case-probe-", dir=folder) as probe:
            name = Path(probe.name)
            return not (name.parent / name.name.upper()).exists()
    except OSError:
        return True  # cannot probe (read-only, say): writing the files will say what is wrong


def export_fused(source: str | Path, out_dir: str | Path, *, tasks: list[str] | None = None,
                 opset: int = NATIVE_OPSET, layout: str = "plain", max_batch: int = 64, fold: bool = True,
                 dynamic_batching: bool = False, tolerance: float = TOLERANCE,
                 log: Callable[[str], None] | None = None) -> FusedExport:
    """Export `tasks` (all by default) as one file `<network>.onnx`: the network's input, one output per task.

    The file normalises in its graph, each task with its own statistics, and
    runs each segment once over the tasks routed through it (the union rule,
    partc/export/emit.py). All chosen tasks must take the same input.
    """
    from partc.train.flops import task_forward_flops

    src, names = _options(source, tasks, opset, layout, max_batch, dynamic_batching)
    net = src.net
    by_input: dict[str, list[str]] = {}
    for t in names:
        by_input.setdefault(net.tasks[t].input, []).append(t)
    if len(by_input) > 1:
        groups = "; ".join(f"input '{i}': {', '.join(ts)}" for i, ts in by_input.items())
        first = next(iter(by_input.values()))
        raise ExportError(f"a fused file takes one input, but the tasks take {len(by_input)} ({groups})",
                          hint="fuse the tasks of one input, e.g. " + " ".join(f"--task {t}" for t in first)
                               + ", and export the others on their own (without --fused)")
    (input_name,) = by_input
    if input_name in names:
        raise ExportError(f"task '{input_name}' has the name of the network's input; a fused file names its "
                          "outputs after the tasks", hint="rename the task or the input in the spec")
    info = ModelInfo.for_network(tasks={t: src.stats[t] for t in names}, **_common(src, input_name, max_batch))
    path, data, diffs, audit, macs = _export_file(src, names, info, src.tensors(), src.parameter_names(), Path(out_dir),
                                                  opset=opset, fold=fold, layout=layout,
                                                  dynamic_batching=dynamic_batching, tolerance=tolerance)
    result = FusedExport(net.name, names, path, len(data), diffs, audit, info, 2 * macs,
                         sum(task_forward_flops(net, t) for t in names))
    if log:
        log(describe_fused(result))
    return result


def _export_file(src: ExportSource, tasks: list[str], info: ModelInfo, tensors, params, out: Path, *, opset: int,
                 fold: bool, layout: str, dynamic_batching: bool, tolerance: float):
    """Emit, check, audit and verify one file, then write it (and its Triton config)."""
    from partc.run import atomic_write_bytes, atomic_write_text

    what = f"{info.kind} '{info.name}'"
    normalize = None if info.normalization == CALLER else {o.task: (o.mean, o.std) for o in info.outputs}
    emitted = emit_model(src.net, tasks, tensors, info, normalize=normalize, opset=opset, fold=fold)
    check_onnx(emitted.model, what)
    audit = audit_weights(emitted.model, src.net, tasks, tensors, params, what, own_constants=emitted.own_constants)
    data = emitted.model.SerializeToString()
    diffs = _verify_in_runtime(data, info, _references(src, info, normalize))
    worst = max(diffs, key=lambda o: (diffs[o] != diffs[o], diffs[o]))  # NaN first
    if not diffs[worst] <= tolerance:
        where = f"output '{worst}'" if len(diffs) > 1 else "it"
        raise ExportError(f"{what}: ONNX Runtime differs from torch by {diffs[worst]:.3g} at {where} "
                          f"(tolerance {tolerance:g})",
                          hint="the exported graph does not compute what the torch module computes")
    path = model_path(out, info.name, layout)
    atomic_write_bytes(path, data)
    if layout == "triton":
        atomic_write_text(path.parent.parent / "config.pbtxt", config_pbtxt(info, dynamic_batching=dynamic_batching))
        for output in info.outputs:
            atomic_write_text(path.parent.parent / labels_file(info, output), labels_txt(output))
    return path, data, diffs, audit, emitted.macs


def _references(src: ExportSource, info: ModelInfo, normalize) -> dict[str, Callable]:
    """Output name -> the torch computation it must match: the task's module, behind the graph's normalisation."""
    import torch

    references = {}
    for output in info.outputs:
        module = src.model.task(output.task).eval()
        if normalize is None:
            references[output.name] = module
            continue
        shape = (1, -1) + (1,) * (len(info.input_shape) - 1)
        mean, std = (torch.tensor(v, dtype=torch.float32).reshape(shape) for v in normalize[output.task])
        references[output.name] = lambda x, module=module, mean=mean, std=std: module((x - mean) / std)
    return references


def _verify_in_runtime(data: bytes, info: ModelInfo, references: dict[str, Callable]) -> dict[str, float]:
    """Per output, max |ONNX Runtime - torch|, after checking that the metadata describes the graph (as serving does)."""
    from partc.onnxrt import graph_values, open_session

    session = open_session(data, device="cpu", threads=1)  # batches of 1 and 3: threads only contend
    problems = info.problems() + graph_problems(info, *graph_values(session))
    if problems:
        raise ExportError(f"{info.kind} '{info.name}': the metadata does not describe the graph: {'; '.join(problems)}")
    return compare_with_torch(session, references, info.input_shape, info.input_name)


def describe(r: TaskExport) -> str:
    w = r.weights
    folded = f", {w.folded_batchnorm:,} BatchNorm scale/shift folded into convs" if w.folded_batchnorm else ""
    created = f", {w.created_bias:,} bias values created by folding" if w.created_bias else ""
    return (f"{r.task}: {r.path} {_size(r.bytes)}; route {w.route_params:,} params -> "
            f"{w.file_weights:,} weights in the file{folded}{created}; "
            f"max |onnxruntime - torch| = {r.max_abs_diff:.2e} (batch 1 and 3)")


def describe_fused(r: FusedExport) -> str:
    w = r.weights
    folded = f", {w.folded_batchnorm:,} BatchNorm scale/shift folded" if w.folded_batchnorm else ""
    return (f"{r.network} (fused, {len(r.tasks)} task(s): {', '.join(r.tasks)}): {r.path} {_size(r.bytes)}; union of "
            f"the routes {w.route_params:,} params -> {w.file_weights:,} weights in the file{folded}; one pass "
            f"{r.flops / 1e6:,.1f} MFLOPs per sample, the task files one after another {r.task_flops / 1e6:,.1f} "
            f"(ideal ratio {r.ideal_ratio:.2f}); max |onnxruntime - torch| = {max(r.max_abs_diff.values()):.2e} "
            f"(every task, batch 1 and 3)")


def _size(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB" if n >= 1e3 else f"{n} B"
