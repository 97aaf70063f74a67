"""Pass 5, lowering to the graph: the networkx.DiGraph every later stage reads.

Nodes: `input:NAME`, `stem:TASK`, `LEVEL[i]`, `LEVEL:sum`, `head:TASK`.
Each edge's `tasks` is the set of tasks flowing along it; each node's
`tasks` is the set of tasks routed through it (empty for an unused segment).
"""

from __future__ import annotations

import networkx as nx

from partc.errors import PartError
from partc.ir import Network


def build_graph(net: Network) -> list[PartError]:
    g = nx.DiGraph(name=net.name, spec_hash=net.spec_hash)
    users: dict[str, set[str]] = {}

    def edge(u: str, v: str, task: str) -> None:
        if g.has_edge(u, v):
            g.edges[u, v]["tasks"] = g.edges[u, v]["tasks"] | {task}
        else:
            g.add_edge(u, v, tasks=frozenset({task}))
        users.setdefault(u, set()).add(task)
        users.setdefault(v, set()).add(task)

    for spec in net.inputs.values():
        g.add_node(f"input:{spec.name}", op="input", loc=spec.loc, shape=spec.shape, params=0)
    for level in net.levels:
        for i in range(level.count):
            group = level.group_of(i)
            g.add_node(level.segment_node(i), op="segment", loc=group.loc, level=level.name, index=i,
                       template=group.template, in_shape=level.in_shape, shape=level.sum_shape,
                       params=group.params)
        g.add_node(level.sum_node, op="level_sum", loc=level.loc, level=level.name, residual=level.residual,
                   in_shape=level.sum_shape, shape=level.shape, params=0)
    for task in net.tasks.values():
        source = f"input:{task.input}"
        if task.stem is not None:
            g.add_node(task.stem_node, op="stem", loc=task.loc, task=task.name, params=task.stem_params,
                       shape=net.trunk_input.shape)
            edge(source, task.stem_node, task.name)
            source = task.stem_node
        for level in net.levels:
            for i in task.path.get(level.name, ()):
                edge(source, level.segment_node(i), task.name)
                edge(level.segment_node(i), level.sum_node, task.name)
            if level.residual:
                edge(source, level.sum_node, task.name)
            source = level.sum_node
        g.add_node(task.head_node, op="head", loc=task.loc, task=task.name, params=task.head_params,
                   shape=(task.classes,))
        edge(source, task.head_node, task.name)
    for node in g.nodes:
        g.nodes[node]["tasks"] = frozenset(users.get(node, ()))
    net.graph = g
    return []


def verify(net: Network) -> list[str]:
    """Invariants of the IR graph; an empty list means it is well formed."""
    problems = []
    g = net.graph
    if not nx.is_directed_acyclic_graph(g):
        problems.append("graph has a cycle")
    for u, v, tasks in g.edges(data="tasks"):
        if not tasks:
            problems.append(f"edge {u} -> {v} carries no task")
        if not tasks <= g.nodes[u]["tasks"] or not tasks <= g.nodes[v]["tasks"]:
            problems.append(f"edge {u} -> {v} carries a task its ends do not")
    for name, task in net.tasks.items():
        for level in net.levels:
            on_path = {i for i in range(level.count) if name in g.nodes[level.segment_node(i)]["tasks"]}
            if on_path != set(task.path[level.name]):
                problems.append(f"task {name} at {level.name}: graph has {sorted(on_path)}, path {task.path[level.name]}")
        sub = g.edge_subgraph([(u, v) for u, v, t in g.edges(data="tasks") if name in t])
        if not nx.has_path(sub, f"input:{task.input}", task.head_node):
            problems.append(f"task {name} has no route from its input to its head")
    return problems
