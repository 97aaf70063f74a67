"""Pass build_graph, lowering to the graph: the networkx.DiGraph every later stage reads.

Nodes: `input:NAME`, `stem:TASK`, `LEVEL[i]`, `LEVEL:sum`, `head:TASK`.
Each edge's `tasks` is the set of tasks flowing along it; each node's
`tasks` is the set of tasks routed through it (empty for an unused segment).
"""

from __future__ import annotations

from collections import defaultdict

import networkx as nx

from partc.errors import PartError
from partc.ir import Network
from partc.language import ast


def build_graph(net: Network, tree: ast.Network) -> list[PartError]:
    g = nx.DiGraph(name=net.name)
    # Collect each edge's tasks first and add the edges once at the end:
    # a large spec has hundreds of thousands of (edge, task) pairs.
    edge_tasks: dict[tuple[str, str], set[str]] = defaultdict(set)
    users: dict[str, set[str]] = defaultdict(set)

    for spec in net.inputs.values():
        g.add_node(f"input:{spec.name}", op="input", loc=spec.loc, shape=spec.shape, params=0)
    segment_nodes = {}
    for level in net.levels:
        segment_nodes[level.name] = [level.segment_node(i) for i in range(level.count)]
        for i, node in enumerate(segment_nodes[level.name]):
            group = level.group_of(i)
            g.add_node(node, op="segment", loc=group.loc, level=level.name, index=i,
                       template=group.template, in_shape=level.in_shape, shape=level.sum_shape,
                       params=group.params)  # + its per-task layers' for each user, below
        g.add_node(level.sum_node, op="level_sum", loc=level.loc, level=level.name, residual=level.residual,
                   in_shape=level.sum_shape, shape=level.shape, params=0)
    for task in net.tasks.values():
        source = f"input:{task.input}"
        if task.stem is not None:
            g.add_node(task.stem_node, op="stem", loc=task.loc, task=task.name, params=task.stem_params,
                       shape=net.trunk_input.shape)
            edge_tasks[source, task.stem_node].add(task.name)
            source = task.stem_node
        for level in net.levels:
            nodes = segment_nodes[level.name]
            for i in task.path.get(level.name, ()):
                edge_tasks[source, nodes[i]].add(task.name)
                edge_tasks[nodes[i], level.sum_node].add(task.name)
            if level.residual:
                edge_tasks[source, level.sum_node].add(task.name)
            source = level.sum_node
        g.add_node(task.head_node, op="head", loc=task.loc, task=task.name, params=task.head_params,
                   shape=(task.classes,))
        edge_tasks[source, task.head_node].add(task.name)
    for (u, v), tasks in edge_tasks.items():
        users[u] |= tasks
        users[v] |= tasks
    g.add_edges_from((u, v, {"tasks": frozenset(tasks)}) for (u, v), tasks in edge_tasks.items())
    levels = {level.name: level for level in net.levels}
    for node, attrs in g.nodes(data=True):
        attrs["tasks"] = frozenset(users.get(node, ()))
        if attrs["op"] == "segment":
            attrs["params"] += levels[attrs["level"]].segment_per_task_params(attrs["index"]) * len(attrs["tasks"])
    net.graph = g
    return []


def verify(net: Network) -> list[str]:
    """Invariants of the IR as far as the passes have built it; an empty list means it is well formed.

    Tables: every level's groups and segment counts agree; once paths are
    chosen, every task's indices at every level are sorted, distinct and in
    range; once shapes are inferred, every layer's output feeds the next.
    Graph (once built): acyclic, edges carry tasks their ends carry, each
    task's route reaches its head, the graph's segments are the paths, and
    a segment's parameters are the tables' (per-task layers once per user).
    """
    problems = []
    counts = {lv.name: lv.count for lv in net.levels}
    for level in net.levels:
        if level.count != sum(g.count for g in level.groups) or any(g.count < 1 for g in level.groups):
            problems.append(f"level {level.name}: group counts do not add up")
        for g in level.groups:
            for a, b in zip(g.layers, g.layers[1:]):
                if a.shape and b.in_shape and a.shape != b.in_shape:
                    problems.append(f"level {level.name}: layer {a.op} gives {a.shape}, {b.op} takes {b.in_shape}")
    for name, task in net.tasks.items():
        for level, indices in task.path.items():
            count = counts[level]
            if list(indices) != sorted(set(indices)) or any(not 0 <= i < count for i in indices):
                problems.append(f"task {name} at {level}: path {indices} is not sorted, distinct and in 0..{count - 1}")
    g = net.graph
    if not g.number_of_nodes():
        return problems
    if not nx.is_directed_acyclic_graph(g):
        problems.append("graph has a cycle")
    edges_of: dict[str, list[tuple[str, str]]] = defaultdict(list)  # task -> the edges it flows along
    for u, v, tasks in g.edges(data="tasks"):
        if not tasks:
            problems.append(f"edge {u} -> {v} carries no task")
        if not tasks <= g.nodes[u]["tasks"] or not tasks <= g.nodes[v]["tasks"]:
            problems.append(f"edge {u} -> {v} carries a task its ends do not")
        for t in tasks:
            edges_of[t].append((u, v))
    on_path: dict[tuple[str, str], set[int]] = defaultdict(set)  # (task, level) -> its segments in the graph
    for level in net.levels:
        for i in range(level.count):
            for t in g.nodes[level.segment_node(i)]["tasks"]:
                on_path[t, level.name].add(i)
    for level in net.levels:
        for i in range(level.count):
            node = g.nodes[level.segment_node(i)]
            owned = level.segment_per_task_params(i) * len(node["tasks"])
            if node["params"] != level.segment_params(i) + owned:
                problems.append(f"segment {level.segment_node(i)}: graph has {node['params']} params, tables "
                                f"{level.segment_params(i)} + {owned} of its tasks' own layers")
    from partc.passes.resources import count_params  # the count resource limits use, before the graph exists

    if count_params(net) != net.total_params:
        problems.append(f"parameters counted from the paths ({count_params(net)}) differ from the graph's "
                        f"({net.total_params})")
    for name, task in net.tasks.items():
        for level in net.levels:
            if on_path[name, level.name] != set(task.path[level.name]):
                problems.append(f"task {name} at {level.name}: graph has {sorted(on_path[name, level.name])}, "
                                f"path {task.path[level.name]}")
        sub = nx.DiGraph(edges_of[name])
        source = f"input:{task.input}"
        if task.head_node not in sub or source not in sub or not nx.has_path(sub, source, task.head_node):
            problems.append(f"task {name} has no route from its input to its head")
    return problems
