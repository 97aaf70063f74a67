"""Stage 2 product: the checked network (IR).

`Network.graph` is a `networkx.DiGraph` with one node per input, task stem,
segment instance, level combine and task head. Every edge carries `tasks`,
the frozenset of tasks that flow along it, so a task's subgraph is a filter
on edges (`task_subgraph`). The typed tables beside the graph (`levels`,
`tasks`) hold the same facts in the shape later stages want to read.

Node names: `input:NAME`, `stem:TASK`, `LEVEL[i]`, `LEVEL:sum`, `head:TASK`.
Node attributes: `op`, `loc`, plus what passes add (`in_shape`, `shape`,
`params`, `tasks`, `level`, `index`).

Parameter counts follow one rule, applied here and read by every stage
(`partc check`, codegen's summary, the report, the export audit): a
segment's layers hold their parameters once, shared by every task routed
through it, except a per-task layer (`task_batchnorm`, `Primitive.per_task`),
of which each task routed through the segment owns a copy: its parameters
count once per such task and belong to that task alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from partc.errors import Location, SpecWarning
from partc.layers import PRIMITIVES


@dataclass
class Layer:
    """One primitive with its arguments bound and evaluated."""

    op: str
    args: dict[str, Any]
    loc: Location
    in_shape: tuple[int, ...] = ()
    shape: tuple[int, ...] = ()
    params: int = 0  # of one copy: a per-task layer has one copy per task routed through its segment

    @property
    def per_task(self) -> bool:
        return PRIMITIVES[self.op].per_task


@dataclass(frozen=True)
class ParamRef:
    """A template parameter used as a layer argument (`c` in `conv(c, k=3)`)."""

    name: str


@dataclass
class TemplateLayer:
    """A layer of a segment template as written: the arguments it gives, parameters kept symbolic."""

    op: str
    args: dict[str, Any]  # primitive parameter name -> plain value or ParamRef (only those written)
    written: str  # the call as the spec writes it, e.g. "conv(c, k=3, pad=1)"
    loc: Location


@dataclass
class Template:
    """A segment template (`segment block(c) { ... }`): what codegen writes as one class."""

    name: str
    params: list[str]
    layers: list[TemplateLayer]
    loc: Location


@dataclass
class InputSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]
    loc: Location


@dataclass
class SegmentGroup:
    """`count x template(args)`: consecutive segments of one kind in a level."""

    count: int
    template: str
    template_args: dict[str, Any]
    layers: list[Layer]  # the body of each of these segments
    loc: Location
    params: int = 0  # per segment, held once for all the tasks routed through it
    per_task_params: int = 0  # per segment and task routed through it: its per-task layers (task_batchnorm)

    @property
    def has_per_task_layers(self) -> bool:
        return any(layer.per_task for layer in self.layers)


@dataclass
class Level:
    name: str
    position: int  # 0-based order in the spec
    groups: list[SegmentGroup]
    residual: bool
    then: list[Layer]  # applied after sum (+ residual)
    loc: Location
    in_shape: tuple[int, ...] = ()
    sum_shape: tuple[int, ...] = ()  # every segment's output, before `then`
    shape: tuple[int, ...] = ()  # after `then`

    @property
    def count(self) -> int:
        """M, the number of candidate segments at this level."""
        return sum(g.count for g in self.groups)

    def group_of(self, index: int) -> SegmentGroup:
        for g in self.groups:
            if index < g.count:
                return g
            index -= g.count
        raise IndexError(index)

    def segment_params(self, index: int) -> int:
        """Parameters of segment `index` held once, shared by its tasks (all of them but its per-task layers')."""
        return self.group_of(index).params

    def segment_per_task_params(self, index: int) -> int:
        """Parameters of segment `index` that each task routed through it owns a copy of."""
        return self.group_of(index).per_task_params

    def segment_node(self, index: int) -> str:
        return segment_node(self.name, index)

    @property
    def sum_node(self) -> str:
        return f"{self.name}:sum"


@dataclass
class DataSpec:
    source: str
    args: dict[str, Any]
    loc: Location


@dataclass
class Task:
    name: str
    loc: Location
    input: str
    classes: int
    labels: list[str]
    data: DataSpec | None
    path: dict[str, tuple[int, ...]] = field(default_factory=dict)  # level -> segment indices
    path_locs: dict[str, Location] = field(default_factory=dict)
    input_loc: Location | None = None  # where `input NAME` is written, if it is
    stem: list[Layer] | None = None
    stem_group: SegmentGroup | None = None  # a stem written as `stem template(args)`
    head: list[Layer] = field(default_factory=list)  # ends in linear(classes)
    head_written: int = 0  # how many of the head's layers the spec wrote (the rest: flatten, linear(classes))
    classes_value: Any = None  # what a `classes ...` statement says, when the task has one
    weight: float = 1.0
    sampling: float = 1.0
    stem_params: int = 0
    head_params: int = 0

    @property
    def stem_node(self) -> str:
        return f"stem:{self.name}"

    @property
    def head_node(self) -> str:
        return f"head:{self.name}"


@dataclass
class Constraint:
    kind: str  # "share" | "private"
    tasks: list[str]
    levels: list[str]
    loc: Location


@dataclass(frozen=True)
class ParamSplit:
    """The parameters on one task's route, by who holds them (`Network.param_split`)."""

    shared: int  # of segments it shares with other tasks, held once for all of them
    task_owned: int  # its own copies of per-task layers (task_batchnorm), in shared and private segments
    private_segments: int  # the rest of the segments only it routes through
    stem_head: int

    @property
    def total(self) -> int:
        return self.shared + self.task_owned + self.private_segments + self.stem_head

    @property
    def private(self) -> int:
        """Segment parameters no other task holds: private segments and the task's own layers in shared ones."""
        return self.task_owned + self.private_segments

    def as_dict(self) -> dict[str, int]:
        return {"total": self.total, "shared": self.shared, "task_owned": self.task_owned,
                "private_segments": self.private_segments, "stem_head": self.stem_head}


@dataclass
class Network:
    """The checked network. Passes fill it in order (see `partc.passes.PASSES`), starting from `empty`."""

    name: str
    file: str
    source: str
    loc: Location | None = None
    spec_hash: str = ""  # of the checked network's meaning (`partc.passes.fingerprint`): comments and layout aside
    source_hash: str = ""  # of the spec text itself
    seed: int = 0
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    templates: dict[str, Template] = field(default_factory=dict)
    levels: list[Level] = field(default_factory=list)
    tasks: dict[str, Task] = field(default_factory=dict)
    constraints: list[Constraint] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    warnings: list[SpecWarning] = field(default_factory=list)  # located, in source order (`find_warnings`)

    def matches_hash(self, recorded: str | None) -> bool:
        """A run or checkpoint records one of this network's hashes (older partc recorded the text's)."""
        return recorded is not None and recorded in (self.spec_hash, self.source_hash)

    # ---- look-ups used by every later stage ----
    def level(self, name: str) -> Level:
        for lvl in self.levels:
            if lvl.name == name:
                return lvl
        raise KeyError(name)

    @property
    def trunk_input(self) -> InputSpec:
        """The input the first level is built for; other inputs need a stem."""
        return next(iter(self.inputs.values()))

    def segment_users(self, level: str, index: int) -> frozenset[str]:
        return self.graph.nodes[segment_node(level, index)]["tasks"]

    # ---- parameter counts (the rule: see the module docstring) ----
    def segment_params(self, level: str, index: int) -> int:
        """All parameters of one compiled segment: its shared ones once, its per-task layers once per user."""
        lv = self.level(level)
        users = len(self.segment_users(level, index)) if lv.segment_per_task_params(index) else 0
        return lv.segment_params(index) + lv.segment_per_task_params(index) * users

    def _segments(self) -> Iterator[tuple[Level, int, int]]:
        """(level, index, how many tasks use it) of every segment."""
        for lv in self.levels:
            for i in range(lv.count):
                yield lv, i, len(self.segment_users(lv.name, i))

    def param_split(self, task: str) -> ParamSplit:
        """The parameters on `task`'s route: shared, its own per-task layers, private segments, stem and head."""
        t = self.tasks[task]
        shared = owned = private = 0
        for lv in self.levels:
            for i in t.path.get(lv.name, ()):
                owned += lv.segment_per_task_params(i)
                if len(self.segment_users(lv.name, i)) > 1:
                    shared += lv.segment_params(i)
                else:
                    private += lv.segment_params(i)
        return ParamSplit(shared, owned, private, t.stem_params + t.head_params)

    def task_params(self, task: str) -> int:
        """Parameters on the task's route: stem, path segments (with its own per-task layers only), head."""
        return self.param_split(task).total

    def task_shared_params(self, task: str) -> int:
        """Parameters of the task's path segments that other tasks also use (not its own per-task layers)."""
        return self.param_split(task).shared

    @property
    def total_params(self) -> int:
        segs = sum(lv.segment_params(i) + lv.segment_per_task_params(i) * users for lv, i, users in self._segments())
        return segs + sum(t.stem_params + t.head_params for t in self.tasks.values())

    @property
    def used_params(self) -> int:
        """Parameters of segments some task uses, plus every stem and head."""
        used = sum(lv.segment_params(i) + lv.segment_per_task_params(i) * users
                   for lv, i, users in self._segments() if users)
        return used + sum(t.stem_params + t.head_params for t in self.tasks.values())

    @property
    def shared_params(self) -> int:
        """Parameters that two or more tasks use: shared segments' weights, not the tasks' own layers in them."""
        return sum(lv.segment_params(i) for lv, i, users in self._segments() if users > 1)

    @property
    def task_owned_params(self) -> int:
        """Parameters of every task's own copies of per-task layers (0 without task_batchnorm)."""
        return sum(lv.segment_per_task_params(i) * users for lv, i, users in self._segments())

    @property
    def has_per_task_layers(self) -> bool:
        return any(g.has_per_task_layers for lv in self.levels for g in lv.groups)


def segment_node(level: str, index: int) -> str:
    """The graph node of segment `index` of `level`: `l3[5]`."""
    return f"{level}[{index}]"


def task_subgraph(net: Network, task: str) -> nx.DiGraph:
    """The nodes and edges task `task` flows through (a view of `net.graph`)."""
    edges = [(u, v) for u, v, tasks in net.graph.edges(data="tasks") if task in tasks]
    return net.graph.edge_subgraph(edges)
