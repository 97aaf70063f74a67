"""Stage 3, compile: checked IR -> `PartModel`, a torch module with task routing.

`PartModel` owns every segment, stem and head exactly once. Per-task
`torch.fx.GraphModule`s are built straight from the IR (no tracing): each
calls only its task's modules, which it shares with the model by reference.
`forward_all` runs a whole multi-task step segment-major: every segment runs
once over the rows of all tasks routed through it (gather, run, scatter-add,
as mixture-of-experts layers dispatch). In train mode a shared segment's
BatchNorm layers normalise each task's rows with that task's own batch
statistics by default (`batchnorm="per_task"`), so the fused step computes
what one forward per task would; `batchnorm="joint"` normalises all the rows
together.

A per-task layer (`task_batchnorm`) is owned by each task routed through its
segment: the segment holds {task: layer} at that position (partc.compiler.
modules), a task's fx module calls that segment's layers one by one with
its own copy, and `forward_all`, in train and eval mode alike, runs each
task's rows through that task's copy.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
from torch import Tensor, nn

from partc.compiler.modules import build_sequential, is_task_owned, segment_layers
from partc.ir import Network
from partc.layers import module_path

BATCHNORM_MODES = ("per_task", "joint")


class PartModel(nn.Module):
    """All segments, stems and heads of a network, and its task routes.

    `batchnorm` says how `forward_all` in train mode runs a BatchNorm layer of a segment that
    several tasks' rows pass through: "per_task" (each task's rows with their own batch statistics,
    running statistics updated task by task, as the per-task forwards would) or "joint" (one batch
    statistic over all the rows, which couples the tasks). Per-task forwards and eval mode ignore it.
    """

    def __init__(self, net: Network, batchnorm: str = "per_task"):
        super().__init__()
        self.net = net
        self.batchnorm = batchnorm
        self.task_names = list(net.tasks)
        # Static routing tables: which tasks run each segment (order of self.task_names).
        self._segment_users = {
            (lv.name, i): [t for t in self.task_names if i in net.tasks[t].path[lv.name]]
            for lv in net.levels
            for i in range(lv.count)
        }
        # Segments holding per-task layers: they run layer by layer, each task with its own copies.
        self._task_owned = {(lv.name, i) for lv in net.levels for i in range(lv.count)
                            if lv.group_of(i).has_per_task_layers}
        self.levels = nn.ModuleDict()
        self.posts = nn.ModuleDict()  # each level's parameter-free `then` ops
        for level in net.levels:
            segments = []
            for i in range(level.count):
                segments.append(build_sequential(level.group_of(i).layers, self._segment_users[level.name, i]))
            self.levels[level.name] = nn.ModuleList(segments)
            self.posts[level.name] = build_sequential(level.then)
        self.stems = nn.ModuleDict(
            {name: build_sequential(t.stem) for name, t in net.tasks.items() if t.stem is not None}
        )
        self.heads = nn.ModuleDict({name: build_sequential(t.head) for name, t in net.tasks.items()})
        # Not registered as submodules: they share this model's modules by reference.
        self._task_modules: dict[tuple[str, bool], fx.GraphModule] = {}
        self._row_plans: dict[tuple[int, ...], dict] = {}
        self._frozen: tuple[str, ...] = ()

    # ---- frozen modules (partc extend) ----
    def freeze(self, paths: tuple[str, ...] | list[str]) -> None:
        """Never train the modules at `paths`: no gradient for their parameters, and always eval mode,
        so a BatchNorm among them normalises with its running statistics and never updates them."""
        modules = [self.get_submodule(path) for path in paths]  # an unknown path is a bug: raises
        self._frozen = tuple(paths)
        for module in modules:
            module.requires_grad_(False)
        self.train(self.training)

    @property
    def frozen(self) -> tuple[str, ...]:
        return self._frozen

    def train(self, mode: bool = True) -> PartModel:
        super().train(mode)
        for path in self._frozen:
            self.get_submodule(path).eval()
        return self

    @property
    def batchnorm(self) -> str:
        return self._batchnorm

    @batchnorm.setter
    def batchnorm(self, mode: str) -> None:
        if mode not in BATCHNORM_MODES:
            raise ValueError(f"batchnorm must be one of {', '.join(BATCHNORM_MODES)}, got {mode!r}")
        self._batchnorm = mode

    # ---- look-ups ----
    def segment(self, level: str, index: int) -> nn.Sequential:
        """Segment `index` of `level`; one with per-task layers runs through `segment_layers(segment, task)`."""
        return self.levels[level][index]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters on `task`'s route: its stem, its path's segments (of their per-task layers, its own
        copies only), its head."""
        self._check_task(task)
        modules: list[nn.Module] = []
        if task in self.stems:
            modules.append(self.stems[task])
        for level, indices in self.net.tasks[task].path.items():
            modules += [m for i in indices for m in segment_layers(self.levels[level][i], task)]
        modules.append(self.heads[task])
        return [p for m in modules for p in m.parameters()]

    def _check_task(self, task: str) -> None:
        if task not in self.net.tasks:
            raise KeyError(f"unknown task '{task}'; tasks: {', '.join(self.task_names)}")

    # ---- per-task routes ----
    def task(self, name: str, *, features: bool = False) -> fx.GraphModule:
        """The fx module of one task; with `features`, it also returns each level's output."""
        self._check_task(name)
        key = (name, features)
        if key not in self._task_modules:
            self._task_modules[key] = fx.GraphModule(self, _task_graph(self.net, name, features),
                                                     class_name=f"Task_{name}")
        return self._task_modules[key]

    def forward(self, x: Tensor, task: str) -> Tensor:
        return self.task(task)(x)

    def features(self, x: Tensor, task: str) -> dict[str, Tensor]:
        """Each level's output on `task`'s path (after residual and `then`)."""
        return self.task(task, features=True)(x)[1]

    # ---- fused multi-task step ----
    def forward_all(self, batches: dict[str, Tensor]) -> dict[str, Tensor]:
        """Logits of every task in `batches`, each segment run once over its tasks' rows."""
        tasks = [t for t in self.task_names if t in batches]
        unknown = set(batches) - set(tasks)
        if unknown:
            raise KeyError(f"unknown task(s) {sorted(unknown)}; tasks: {', '.join(self.task_names)}")
        rows = [self.stems[t](batches[t]) if t in self.stems else batches[t] for t in tasks]
        h = torch.cat(rows) if len(rows) > 1 else rows[0]
        plan = self._row_plan(tuple(tasks), tuple(r.shape[0] for r in rows), h.device)
        for level in self.net.levels:
            # Sum into a buffer of our own: adding in place into a segment's output would corrupt
            # what autograd saved (a ReLU keeps its output for the backward pass).
            out = None
            for i, segment in enumerate(self.levels[level.name]):
                rows, present, sizes = plan[(level.name, i)]
                if rows is None:  # no task in this batch routes through the segment
                    continue
                contiguous = isinstance(rows, slice)
                x = h[rows] if contiguous else h.index_select(0, rows)
                y = self._run_segment(segment, x, present, sizes, (level.name, i) in self._task_owned)
                if out is None:
                    out = y.new_zeros((h.shape[0],) + y.shape[1:])
                if contiguous:
                    out[rows] += y
                else:
                    out.index_add_(0, rows, y)
            if level.residual:
                out = out + h
            h = self.posts[level.name](out)
        logits = {}
        for t, (start, stop) in zip(tasks, plan["spans"]):
            logits[t] = self.heads[t](h[start:stop])
        return logits

    def _run_segment(self, segment: nn.Sequential, x: Tensor, tasks: tuple[str, ...], sizes: tuple[int, ...],
                     task_owned: bool) -> Tensor:
        """One segment over the rows of its tasks (`tasks` in row order, `sizes`: each one's row count).

        With per-task BatchNorm in train mode, each BatchNorm layer runs once per task chunk ("ghost
        batch norm"): every task is normalised by its own batch statistics, and calling the layer
        itself chunk by chunk, in task order, updates the running statistics (and a batch of one
        fails) exactly as one forward per task would. A per-task layer (`task_owned` segments) runs
        once per task chunk with that task's own copy, in train and eval mode. Every other layer runs
        on all the rows at once.
        """
        ghost = self.training and self.batchnorm == "per_task" and len(sizes) > 1
        if not (ghost or task_owned):
            return segment(x)
        for layer in segment:
            if is_task_owned(layer):
                if len(tasks) == 1:
                    x = layer[tasks[0]](x)
                else:
                    x = torch.cat([layer[t](chunk) for t, chunk in zip(tasks, x.split(sizes))])
            elif ghost and isinstance(layer, nn.modules.batchnorm._BatchNorm):
                x = torch.cat([layer(chunk) for chunk in x.split(sizes)])
            else:
                x = layer(x)
        return x

    def _row_plan(self, tasks: tuple[str, ...], sizes: tuple[int, ...], device: torch.device) -> dict:
        """Which rows of the concatenated batch each segment runs on, which of its tasks they belong
        to and how many each owns, in row order (cached per shape and device).

        Gathered rows keep the tasks' order, so a segment's rows are its tasks' spans end to end.
        Index tensors live on the batch's device: CUDA index_select/index_add_ refuse CPU indices.
        """
        key = (tasks, sizes, device)
        if key in self._row_plans:
            return self._row_plans[key]
        if len(self._row_plans) >= 256:  # batch sizes that vary step by step must not grow it forever
            self._row_plans.clear()
        spans, start = [], 0
        for n in sizes:
            spans.append((start, start + n))
            start += n
        span_of = dict(zip(tasks, spans))
        plan: dict = {"spans": spans}
        for (level, i), users in self._segment_users.items():
            names = tuple(t for t in users if t in span_of)
            present = [span_of[t] for t in names]
            sizes = tuple(b - a for a, b in present)
            if not present:
                plan[(level, i)] = (None, names, sizes)
            elif _contiguous(present):
                plan[(level, i)] = (slice(present[0][0], present[-1][1]), names, sizes)
            else:
                plan[(level, i)] = (torch.cat([torch.arange(a, b, device=device) for a, b in present]), names, sizes)
        self._row_plans[key] = plan
        return plan


def _contiguous(spans: list[tuple[int, int]]) -> bool:
    return all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def _task_graph(net: Network, name: str, features: bool) -> fx.Graph:
    """An fx graph calling only task `name`'s modules: stem, sum per level, residual, then, head.

    A segment runs as one module call, or, when it holds per-task layers, layer by layer with the
    task's own copy of those (`levels.l2.5.1.<task>`), so the module holds none of another task's.
    """
    task = net.tasks[name]
    g = fx.Graph()
    h = g.placeholder("x")
    if task.stem is not None:
        h = g.call_module(f"stems.{name}", (h,))
    level_outputs = {}
    for level in net.levels:
        total = None
        for i in task.path[level.name]:
            container, group = f"levels.{level.name}.{i}", level.group_of(i)
            if group.has_per_task_layers:
                y = h
                for j, layer in enumerate(group.layers):
                    y = g.call_module(module_path(container, j, layer.op, name), (y,))
            else:
                y = g.call_module(container, (h,))
            total = y if total is None else g.call_function(operator.add, (total, y))
        if level.residual:
            total = g.call_function(operator.add, (total, h))
        h = g.call_module(f"posts.{level.name}", (total,)) if level.then else total
        level_outputs[level.name] = h
    logits = g.call_module(f"heads.{name}", (h,))
    g.output((logits, level_outputs) if features else logits)
    g.lint()
    return g


def compile_network(net: Network, *, batchnorm: str = "per_task") -> PartModel:
    """The compile stage's entry point; `batchnorm`: see `PartModel`."""
    return PartModel(net, batchnorm)
