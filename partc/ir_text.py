"""The checked network as text: `dump` for golden tests and debugging, `meaning` for its hash.

Like mypyc's IR pretty-printer: deterministic (spec order; no locations,
timestamps or file names), one line per fact, indented by containment.
`partc check --dump` prints `dump`; the fingerprint pass hashes `meaning`,
the part of the dump that says what the network computes and how it
trains (templates' names, constraints and the graph are left out: they
shape the spec, not the network).

    network NAME seed=S
    input NAME float[C, H, W]
    template NAME(params) { layers as written }
    level NAME [in] -> [out], M segments[, residual]
      segment(s) A[..B]: kind, P params each[ + Q per task]
        layer: [in] -> [out], P params[ per task]
      then layer: [in] -> [out]
    task NAME: input I, data SOURCE(args), K classes [labels], weight W, sampling S
      path LEVEL[indices] ...
      stem / head layer: [in] -> [out], P params
    constraint share|private TASKS at LEVELS
    train SETTING=VALUE ...
    warning LINE:COLUMN: MESSAGE (`find_warnings`)
    node / edge lines of the graph
"""

from __future__ import annotations

from partc.data.catalog import SOURCES
from partc.ir import Layer, Network
from partc.language.printer import group_text, layer_text, shape_text, value_text


def dump(net: Network) -> str:
    """Every table of the checked network and its graph."""
    return "\n".join(_lines(net, meaning_only=False)) + "\n"


def meaning(net: Network) -> str:
    """What the network computes and how it trains, as text (hashed into `net.spec_hash`)."""
    return "\n".join(_lines(net, meaning_only=True)) + "\n"


def _layer_line(prefix: str, layer: Layer, written: bool) -> str:
    size = f", {layer.params:,} params{' per task' if layer.per_task else ''}" if layer.params else ""
    return f"{prefix}{layer_text(layer, written)}: {shape_text(layer.in_shape)} -> {shape_text(layer.shape)}{size}"


def _data_text(task, written: bool) -> str:
    if task.data is None:
        return "none"
    source = SOURCES[task.data.source]
    args = [value_text(task.data.args[name], written) for name in source.positional if name in task.data.args]
    args += [f"{k}={value_text(v, written)}" for k, v in task.data.args.items() if k not in source.positional]
    return f"{task.data.source}({', '.join(args)})"


def _lines(net: Network, *, meaning_only: bool) -> list[str]:
    written = not meaning_only  # the hash must not depend on how a number was written (1e-3 or 0.001)
    lines = [f"network {net.name} seed={net.seed}"]
    lines += [f"input {spec.name} {spec.dtype}{shape_text(spec.shape)}" for spec in net.inputs.values()]
    if not meaning_only:
        for t in net.templates.values():
            params = f"({', '.join(t.params)})" if t.params else ""
            lines.append(f"template {t.name}{params} {{ {'; '.join(layer.written for layer in t.layers)} }}")
    for level in net.levels:
        lines.append(f"level {level.name} {shape_text(level.in_shape)} -> {shape_text(level.shape)}, "
                     f"{level.count} segments" + (", residual" if level.residual else ""))
        start = 0
        for g in level.groups:
            span = f"segment {start}" if g.count == 1 else f"segments {start}..{start + g.count - 1}"
            own = f" + {g.per_task_params:,} per task" if g.per_task_params else ""
            lines.append(f"  {span}: {group_text(g, written)}, {g.params:,} params each{own}")
            lines += [_layer_line("    ", layer, written) for layer in g.layers]
            start += g.count
        lines += [_layer_line("  then ", layer, written) for layer in level.then]
    for name, task in net.tasks.items():
        labels = ", ".join(f'"{label}"' for label in task.labels)
        lines.append(f"task {name}: input {task.input}, data {_data_text(task, written)}, {task.classes} classes "
                     f"[{labels}], weight {value_text(task.weight)}, sampling {value_text(task.sampling)}")
        if task.path:
            route = " ".join(f"{lv}[{', '.join(map(str, ix))}]" for lv, ix in task.path.items())
            lines.append(f"  path {route}")
        lines += [_layer_line("  stem ", layer, written) for layer in task.stem or []]
        lines += [_layer_line("  head ", layer, written) for layer in task.head]
    if not meaning_only:
        for c in net.constraints:
            lines.append(f"constraint {c.kind} {', '.join(c.tasks)} at {', '.join(c.levels)}")
    settings = " ".join(f"{k}={value_text(v, written)}" for k, v in sorted(net.train.items()))
    lines.append(f"train {settings}".rstrip())
    if not meaning_only:
        lines += [f"warning {w.loc.line}:{w.loc.column}: {w.message}" if w.loc else f"warning: {w.message}"
                  for w in net.warnings]
    if not meaning_only and net.graph.number_of_nodes():
        lines += _graph_lines(net)
    return lines


def _graph_lines(net: Network) -> list[str]:
    g = net.graph
    order = _node_order(net)
    lines = []
    for node in sorted(g.nodes, key=order):
        a = g.nodes[node]
        tasks = ",".join(sorted(a["tasks"]))
        lines.append(f"node {node} op={a['op']} shape={shape_text(a.get('shape', ()))} params={a.get('params', 0)} "
                     f"tasks={{{tasks}}}")
    for u, v, tasks in sorted(g.edges(data="tasks"), key=lambda e: (order(e[0]), order(e[1]))):
        lines.append(f"edge {u} -> {v} tasks={{{','.join(sorted(tasks))}}}")
    return lines


def _node_order(net: Network):
    level_pos = {lv.name: lv.position for lv in net.levels}
    task_pos = {t: i for i, t in enumerate(net.tasks)}

    def key(node: str):
        if node.startswith("input:"):
            return (0, 0, node)
        if node.startswith("stem:"):
            return (1, task_pos[node[5:]], node)
        if node.startswith("head:"):
            return (3, task_pos[node[5:]], node)
        level = node.split("[")[0].split(":")[0]
        index = int(node.split("[")[1][:-1]) if "[" in node else 10**9
        return (2, level_pos[level], index)

    return key
