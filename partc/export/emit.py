"""Export stage, IR -> ONNX: the routes of one or more tasks as one ONNX graph, straight from the IR (torch-free).

    emit_model(net, tasks, weights, info, outputs=..., normalize=..., opset=18, fold=True) -> Emitted

Every layer is written by its entry in the layer table (`onnx`, partc/layers.py);
this module only walks the network: input normalisation, stems, levels (segment
sums, residual, `then`), heads. Weights come from the trained model's state dict
by module path (`partc.layers.module_path`), and each initializer keeps that
name (`levels.l2.5.0.weight`), so a file can be audited: every weight in it is
attributable to a module on the route (partc/export/verify.py). A BatchNorm (any
layer with an `affine`) directly after a conv or linear layer (`absorbs`) is
folded into that layer's weight and bias; elsewhere it is its own node.

One task gives a task file; several give a fused file, the union of their routes.
The union rule: the graph carries *streams*, each a tensor of N rows (the batch)
that is the same for a set of tasks. At the input, tasks share a stream when they
normalise alike (the same mean and std, or the caller normalises) and have no stem
(a stem is the task's own). A segment runs once per level over the stacked
streams of the tasks routed through it (one Concat, one call, one Split, as
`PartModel.forward_all` does), and after the level two tasks keep sharing a
stream only if they summed the same segment outputs (the same segments on the
same stream). A layer with `per_task` (its own module per task) applies each
task's module to that task's rows, so the tasks of a stream part there. Every
layer application is counted in multiply-adds by the same rule (`Emitted.macs`),
so the FLOPs of the fused pass are computed from the IR, not measured.

Output is deterministic: names, node order and initializer order follow the IR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from partc.errors import ExportError
from partc.export import NATIVE_OPSET
from partc.export.metadata import ModelInfo
from partc.ir import Layer, Level, Network
from partc.layers import PRIMITIVES, module_path
from partc.train.flops import layer_macs

MIN_OPSET = 17
INPUT_STATS = ("input_mean", "input_std")  # the in-graph normalisation's constants (one pair per group)


@dataclass(frozen=True)
class Rows:
    """A tensor of stacked blocks of N rows; block b is the same tensor for every task of `blocks[b]`."""

    name: str
    blocks: tuple[tuple[str, ...], ...]


@dataclass
class Emitted:
    model: onnx.ModelProto
    macs: int  # multiply-adds per sample of the whole graph (the union rule)
    own_constants: tuple[str, ...]  # initializers that are no module's tensor: the normalisation statistics


@dataclass
class _Graph:
    """Nodes and initializers being written, with unique value names and a multiply-add count."""

    weights: Mapping[str, np.ndarray]
    opset: int
    nodes: list = field(default_factory=list)
    initializers: dict[str, TensorProto] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)
    stacked: dict[tuple[str, ...], str] = field(default_factory=dict)
    macs: int = 0

    def fresh(self, hint: str) -> str:
        name, n = hint, 1
        while name in self.taken:
            n += 1
            name = f"{hint}#{n}"
        self.taken.add(name)
        return name

    def node(self, op_type: str, inputs: Sequence[str], hint: str, outputs: int = 1, **attributes) -> list[str]:
        names = [self.fresh(f"{hint}/{op_type}")] if outputs == 1 else \
            [self.fresh(f"{hint}/{op_type}:{i}") for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=names[0], **attributes))
        return names

    def tensor(self, name: str, array: np.ndarray) -> str:
        if name not in self.initializers:
            self.taken.add(name)
            self.initializers[name] = numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)
        return name

    def state(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise ExportError(f"the trained model has no tensor '{name}'",
                              hint="the checkpoint does not match the network; export from the run that trained it")
        return self.weights[name]

    def scalar(self, value: float) -> str:
        return self.tensor(f"const:{value!r}", np.array(value, np.float32))

    def stack(self, names: list[str], hint: str) -> str:
        """The tensors stacked along the batch axis (one Concat per distinct list: segments with the same
        users share it)."""
        if len(names) == 1:
            return names[0]
        if tuple(names) not in self.stacked:
            self.stacked[tuple(names)] = self.node("Concat", names, hint, axis=0)[0]
        return self.stacked[tuple(names)]

    def unstack(self, rows: Rows, hint: str) -> list[str]:
        """One tensor per block: a Split of the stacked rows into equal parts."""
        if len(rows.blocks) == 1:
            return [rows.name]
        count = len(rows.blocks)
        parts = {"num_outputs": count} if self.opset >= 18 else {}  # opset 18 made the count an attribute
        return self.node("Split", [rows.name], hint, outputs=count, axis=0, **parts)


class LayerEmitter:
    """What a layer's `onnx` rule sees (`g`, partc/layers.py): one module of one layer, and node-making.

    With `fold` = (scale, shift), the following per-channel affine is folded
    into the tensors the primitive `absorbs`.
    """

    def __init__(self, graph: _Graph, layer: Layer, module: str, x: str, fold: tuple | None = None):
        self._graph, self._module, self._fold = graph, module, fold
        self._absorbs = PRIMITIVES[layer.op].absorbs
        self.x, self.in_shape, self.out_shape = x, tuple(layer.in_shape), tuple(layer.shape)

    def _name(self, tensor: str) -> str:
        return f"{self._module}.{tensor}"

    def weight(self, tensor: str) -> str:
        name = self._name(tensor)
        if name in self._graph.initializers:
            return name
        if self._fold is not None and tensor == self._absorbs[0]:
            scale, _ = self._fold
            w = self._graph.state(name).astype(np.float64)
            return self._graph.tensor(name, w * scale.reshape((-1,) + (1,) * (w.ndim - 1)))
        if self._fold is not None and tensor == self._absorbs[1]:
            scale, shift = self._fold
            bias = self._graph.weights.get(name)
            return self._graph.tensor(name, shift if bias is None else bias.astype(np.float64) * scale + shift)
        return self._graph.tensor(name, self._graph.state(name))

    def optional(self, tensor: str) -> list[str]:
        folded_bias = self._fold is not None and tensor == self._absorbs[1]
        return [self.weight(tensor)] if folded_bias or self._name(tensor) in self._graph.weights else []

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        return self._graph.node(op_type, inputs, self._module, **attributes)[0]

    def scalar(self, value: float) -> str:
        return self._graph.scalar(value)


def _affine(graph: _Graph, layer: Layer, module: str) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) of an eval-mode per-channel affine layer, in float64."""
    tensor = lambda t: graph.state(f"{module}.{t}").astype(np.float64)  # noqa: E731
    return PRIMITIVES[layer.op].affine(tensor)


def _apply(graph: _Graph, layer: Layer, module: str, x: str, fold: tuple | None = None) -> str:
    rule = PRIMITIVES[layer.op].onnx
    if rule is None:
        raise ExportError(f"layer '{layer.op}' has no ONNX rule in the layer table", hint="add `onnx=` to its entry")
    return rule(LayerEmitter(graph, layer, module, x, fold), layer.args)


def _layers(graph: _Graph, layers: list[Layer], container: str, rows: Rows, fold: bool) -> Rows:
    """A layer sequence (segment, stem, head, `then`) over stacked rows; returns its output rows."""
    position = 0
    while position < len(layers):
        layer = layers[position]
        prim = PRIMITIVES[layer.op]
        alone = len(rows.blocks) == 1 and len(rows.blocks[0]) == 1  # the rows of a single task
        if prim.per_task and not alone:
            # Each task's own module on its own block: the tasks of a block part here.
            parts, blocks = [], []
            for part, block in zip(graph.unstack(rows, container), rows.blocks):
                for task in block:
                    parts.append(_apply(graph, layer, module_path(container, position, layer.op, task), part))
                    blocks.append((task,))
            graph.macs += layer_macs(layer) * len(parts)
            rows = Rows(graph.stack(parts, container), tuple(blocks))
            position += 1
            continue
        task = rows.blocks[0][0] if alone else None
        module = module_path(container, position, layer.op, task)
        after = layers[position + 1] if position + 1 < len(layers) else None
        folds = (fold and prim.absorbs is not None and after is not None and PRIMITIVES[after.op].affine is not None
                 and (alone or not PRIMITIVES[after.op].per_task))
        scale_shift = _affine(graph, after, module_path(container, position + 1, after.op, task)) if folds else None
        rows = Rows(_apply(graph, layer, module, rows.name, scale_shift), rows.blocks)
        graph.macs += layer_macs(layer) * len(rows.blocks)
        position += 2 if folds else 1
    return rows


def _level(graph: _Graph, net: Network, level: Level, streams: list[Rows], fold: bool) -> list[Rows]:
    """One level over the streams (one block each): each used segment once over its tasks' stacked streams,
    then one sum (+ residual, `then`) per group of tasks that add up the same segment outputs."""
    paths = {t: net.tasks[t].path[level.name] for s in streams for t in s.blocks[0]}
    block_of: dict[tuple[int, str], str] = {}  # (segment, task) -> that task's rows of the segment's output
    for i in range(level.count):
        users = [(tuple(t for t in s.blocks[0] if i in paths[t]), s.name) for s in streams]
        users = [(tasks, x) for tasks, x in users if tasks]
        if not users:
            continue
        container = f"levels.{level.name}.{i}"
        x = graph.stack([x for _, x in users], container)
        out = _layers(graph, level.group_of(i).layers, container, Rows(x, tuple(t for t, _ in users)), fold)
        for block, part in zip(out.blocks, graph.unstack(out, container)):
            for task in block:
                block_of[i, task] = part
    sums: dict[tuple, list[str]] = {}  # what a task adds up -> the tasks that add up the same
    for stream in streams:
        for task in stream.blocks[0]:
            key = (tuple(block_of[i, task] for i in paths[task]), stream.name if level.residual else None)
            sums.setdefault(key, []).append(task)
    result = []
    for (parts, residual), tasks in sums.items():
        hint = f"levels.{level.name}"
        total = parts[0]
        for part in [*parts[1:], *([residual] if residual else [])]:
            total = graph.node("Add", [total, part], hint)[0]  # in path order, as the torch module adds
        out = _layers(graph, level.then, f"posts.{level.name}", Rows(total, (tuple(tasks),)), fold)
        result += [Rows(part, (block,)) for block, part in zip(out.blocks, graph.unstack(out, f"posts.{level.name}"))]
    return result


def _input_streams(graph: _Graph, net: Network, tasks: list[str], x: str, normalize: Mapping[str, tuple] | None,
                   fold: bool) -> tuple[list[Rows], tuple[str, ...]]:
    """Streams after normalisation and stems; the names of the normalisation constants."""
    rank = len(net.inputs[x].shape)
    groups: dict[Any, list[str]] = {}  # normalisation -> the tasks normalising so
    for t in tasks:
        groups.setdefault(None if normalize is None else tuple(map(tuple, normalize[t])), []).append(t)
    constants: list[str] = []
    streams = []
    for stats, group in groups.items():
        h = x
        if stats is not None:
            suffix = "" if len(groups) == 1 else f".{group[0]}"
            shape = (1, -1) + (1,) * (rank - 1)  # per channel, broadcast over the batch and the other axes
            mean, std = (graph.tensor(f"{name}{suffix}", np.asarray(v, np.float32).reshape(shape))
                         for name, v in zip(INPUT_STATS, stats))
            constants += [mean, std]
            h = graph.node("Div", [graph.node("Sub", [x, mean], "input")[0], std], "input")[0]
        shared = tuple(t for t in group if not net.tasks[t].stem)
        if shared:
            streams.append(Rows(h, (shared,)))
        streams += [_layers(graph, net.tasks[t].stem, f"stems.{t}", Rows(h, ((t,),)), fold)
                    for t in group if net.tasks[t].stem]  # a stem is its task's own: a stream of its own
    return streams, tuple(constants)


def emit_model(net: Network, tasks: list[str], weights: Mapping[str, np.ndarray], info: ModelInfo, *,
               normalize: Mapping[str, tuple] | None = None, opset: int = NATIVE_OPSET,
               fold: bool = True) -> Emitted:
    """The ONNX model of `tasks`' routes (all on one input), one output per task (`info.outputs`, in order).

    `weights`: the model's state dict as float arrays; `normalize`: task ->
    (mean, std) per channel, applied in the graph (None: the caller
    normalises, only for a single task). `fold=False` keeps every BatchNorm
    as its own node (for inspection).
    """
    check_opset(opset)
    x = net.tasks[tasks[0]].input
    if any(net.tasks[t].input != x for t in tasks):
        raise ExportError("the tasks of one graph must take the same input")
    if normalize is None and len(tasks) > 1:
        raise ExportError("the tasks of a fused graph normalise in the graph (each with its own statistics)")
    graph = _Graph(weights, opset)
    outputs = {o.task: o.name for o in info.outputs}
    graph.taken.update([x, *outputs.values()])
    streams, constants = _input_streams(graph, net, tasks, x, normalize, fold)
    for level in net.levels:
        streams = _level(graph, net, level, streams, fold)
    logits = {_layers(graph, net.tasks[t].head, f"heads.{t}", Rows(s.name, ((t,),)), fold).name: outputs[t]
              for s in streams for t in s.blocks[0]}
    for node in graph.nodes:  # each head's last tensor takes its output's name
        node.output[:] = [logits.get(o, o) for o in node.output]
        node.input[:] = [logits.get(i, i) for i in node.input]
    model = helper.make_model(
        helper.make_graph(graph.nodes, f"partc_{info.name}",
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", *net.inputs[x].shape])],
                          [helper.make_tensor_value_info(outputs[t], TensorProto.FLOAT,
                                                         ["batch", net.tasks[t].classes]) for t in tasks],
                          list(graph.initializers.values())),
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="partc", producer_version=info.partc_version,
        doc_string=f"partc {info.kind} '{info.name}' of network '{info.network}'",
    )
    model.ir_version = helper.find_min_ir_version_for(model.opset_import)  # the oldest runtimes that can read it
    for key, value in info.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    return Emitted(model, graph.macs, constants)


def check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old", hint=f"use --opset {MIN_OPSET} or newer (default {NATIVE_OPSET})")
    if opset > onnx.defs.onnx_opset_version():
        raise ExportError(f"opset {opset} is newer than this onnx package knows ({onnx.defs.onnx_opset_version()})")

