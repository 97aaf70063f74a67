"""Draw the network as Graphviz DOT, each task's path in its own colour.

DOT is written directly (no Python Graphviz binding needed); SVG and PNG go
through Graphviz's `dot` program when it is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from partc.errors import PartError
from partc.ir import Network
from partc.language.printer import layer_text

# Colour-blind-safe qualitative palette (Okabe-Ito plus Tableau), cycled.
PALETTE = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#7F3C8D",
    "#4E79A7", "#F28E2B", "#59A14F", "#B07AA1", "#76B7B2", "#EDC948", "#FF9DA7", "#9C755F",
]


def task_colours(net: Network) -> dict[str, str]:
    return {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(net.tasks)}


def to_dot(net: Network) -> str:
    colours = task_colours(net)
    g = net.graph
    out = [
        f'digraph "{net.name}" {{',
        "  rankdir=TB; newrank=true; splines=true; nodesep=0.15; ranksep=0.45;",
        '  node [fontname="Helvetica", fontsize=10, style=filled, fillcolor=white];',
        '  edge [arrowsize=0.5, penwidth=1.2];',
        f'  labelloc=t; label="{net.name}: {len(net.levels)} levels, {len(net.tasks)} tasks";',
    ]
    legend = " | ".join(f'<font color="{colours[t]}">{t}</font>' for t in net.tasks)
    out.append(f'  legend [shape=plaintext, fillcolor=none, label=<{legend}>];')
    for spec in net.inputs.values():
        shape = "x".join(map(str, spec.shape))
        out.append(f'  "input:{spec.name}" [shape=invhouse, label="{spec.name}\\n{shape}", fillcolor="#eeeeee"];')
    for task in net.tasks.values():
        if task.stem is not None:
            out.append(f'  "{task.stem_node}" [shape=box, label="stem {task.name}", color="{colours[task.name]}"];')
    for lv in net.levels:
        out.append(f'  subgraph "cluster_{lv.name}" {{')
        post = ("+ residual, " if lv.residual else "") + ", ".join(layer_text(layer) for layer in lv.then)
        out.append(f'    label="{lv.name}  {post}"; labeljust=l; style=rounded; color="#bbbbbb"; fontsize=10;')
        for i in range(lv.count):
            node = lv.segment_node(i)
            users = sorted(g.nodes[node]["tasks"], key=list(net.tasks).index)
            if not users:
                fill, style = "#f7f7f7", "dashed,filled"
            elif len(users) == 1:
                fill, style = colours[users[0]] + "55", "filled"
            else:
                fill, style = "#dddddd", "filled,bold"
            out.append(f'    "{node}" [shape=box, style="{style}", fillcolor="{fill}", label="{i}"];')
        out.append(f'    "{lv.sum_node}" [shape=circle, width=0.3, label="+", fixedsize=true];')
        # one row per level, segments in index order
        row = " ".join(f'"{lv.segment_node(i)}";' for i in range(lv.count))
        out.append(f"    {{ rank=same; {row} }}")
        if lv.count > 1:
            chain = " -> ".join(f'"{lv.segment_node(i)}"' for i in range(lv.count))
            out.append(f"    {chain} [style=invis];")
        out.append("  }")
    for task in net.tasks.values():
        out.append(f'  "{task.head_node}" [shape=box, label="head {task.name}\\n{task.classes} classes", '
                   f'color="{colours[task.name]}", penwidth=2];')
    for u, v, tasks in g.edges(data="tasks"):
        ordered = sorted(tasks, key=list(net.tasks).index)
        colour = ":".join(colours[t] for t in ordered)
        out.append(f'  "{u}" -> "{v}" [color="{colour}"];')
    out.append("}")
    return "\n".join(out) + "\n"


def write_graph(net: Network, path: str | Path) -> Path:
    """Write DOT, or render SVG/PNG through Graphviz, by the file's suffix."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("dot", "gv", "svg", "png", "pdf"):
        what = f"unknown format '.{suffix}'" if suffix else "no format suffix"
        raise PartError(f"cannot draw to '{path}': {what}", hint="use a file ending in .dot, .svg, .png or .pdf")
    dot_text = to_dot(net)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix in ("dot", "gv"):
            path.write_text(dot_text, encoding="utf-8")
            return path
    except OSError as e:
        raise PartError(f"cannot write '{path}': {e.strerror}", hint="check that the folder can be written") from None
    exe = shutil.which("dot")
    if exe is None:
        raise PartError(
            f"cannot render '{path}': Graphviz's 'dot' program is not installed",
            hint="install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz), "
            "or write DOT with -o net.dot",
        )
    try:
        result = subprocess.run([exe, f"-T{suffix}", "-o", str(path)], input=dot_text.encode(), capture_output=True)
    except OSError as e:
        raise PartError(f"cannot run Graphviz's 'dot' ({exe}): {e.strerror}", hint="reinstall Graphviz") from None
    if result.returncode != 0:
        raise PartError(f"Graphviz failed to render '{path}': {result.stderr.decode(errors='replace').strip()}")
    return path
