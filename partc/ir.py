"""Stage 2 product: the checked network (IR).

`Network.graph` is a `networkx.DiGraph` with one node per input, task stem,
segment instance, level combine and task head. Every edge carries `tasks`,
the frozenset of tasks that flow along it, so a task's subgraph is a filter
on edges (`task_subgraph`). The typed tables beside the graph (`levels`,
`tasks`) hold the same facts in the shape later stages want to read.

Node names: `input:NAME`, `stem:TASK`, `LEVEL[i]`, `LEVEL:sum`, `head:TASK`.
Node attributes: `op`, `loc`, plus what passes add (`in_shape`, `shape`,
`params`, `tasks`, `level`, `index`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from partc.errors import Location


@dataclass
class Layer:
    """One primitive with its arguments bound and evaluated."""

    op: str
    args: dict[str, Any]
    loc: Location
    in_shape: tuple[int, ...] = ()
    shape: tuple[int, ...] = ()
    params: int = 0

    def describe(self) -> str:
        from partc.layers import PRIMITIVES, show_value

        prim = PRIMITIVES[self.op]
        shown = []
        for p in prim.params:
            value = self.args[p.name]
            if value == p.default:
                continue
            shown.append(show_value(value) if not shown and p is prim.params[0] else f"{p.name}={show_value(value)}")
        return f"{self.op}({', '.join(shown)})" if shown else self.op


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
    params: int = 0  # per segment

    def describe(self) -> str:
        from partc.layers import show_value

        if not self.template_args and len(self.layers) == 1 and self.layers[0].op == self.template:
            return self.layers[0].describe()  # a layer used directly as the segment: show its arguments
        args = ", ".join(show_value(v) for v in self.template_args.values())
        return f"{self.template}({args})" if args or self.template_args else self.template


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
        return self.group_of(index).params

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
    head: list[Layer] = field(default_factory=list)  # ends in linear(classes)
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


@dataclass
class Network:
    name: str
    file: str
    source: str
    spec_hash: str
    seed: int
    inputs: dict[str, InputSpec]
    levels: list[Level]
    tasks: dict[str, Task]
    constraints: list[Constraint]
    train: dict[str, Any]
    train_locs: dict[str, Location]
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)

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

    def task_params(self, task: str) -> int:
        """Parameters on the task's route: stem, path segments, head."""
        t = self.tasks[task]
        levels = {lv.name: lv for lv in self.levels}
        on_path = sum(levels[lv].segment_params(i) for lv, ix in t.path.items() for i in ix)
        return t.stem_params + on_path + t.head_params

    def task_shared_params(self, task: str) -> int:
        """Parameters of the task's path segments that other tasks also use."""
        levels = {lv.name: lv for lv in self.levels}
        total = 0
        for lv, indices in self.tasks[task].path.items():
            total += sum(levels[lv].segment_params(i) for i in indices if len(self.segment_users(lv, i)) > 1)
        return total

    @property
    def total_params(self) -> int:
        segs = sum(lv.segment_params(i) for lv in self.levels for i in range(lv.count))
        return segs + sum(t.stem_params + t.head_params for t in self.tasks.values())

    @property
    def used_params(self) -> int:
        """Parameters of segments some task uses, plus every stem and head."""
        used = sum(
            lv.segment_params(i)
            for lv in self.levels
            for i in range(lv.count)
            if self.segment_users(lv.name, i)
        )
        return used + sum(t.stem_params + t.head_params for t in self.tasks.values())

    @property
    def shared_params(self) -> int:
        return sum(
            lv.segment_params(i)
            for lv in self.levels
            for i in range(lv.count)
            if len(self.segment_users(lv.name, i)) > 1
        )


def segment_node(level: str, index: int) -> str:
    """The graph node of segment `index` of `level`: `l3[5]`."""
    return f"{level}[{index}]"


def task_subgraph(net: Network, task: str) -> nx.DiGraph:
    """The nodes and edges task `task` flows through (a view of `net.graph`)."""
    edges = [(u, v) for u, v, tasks in net.graph.edges(data="tasks") if task in tasks]
    return net.graph.edge_subgraph(edges)
