"""The `partc check` summary of a checked network (the IR dump is `partc.ir_text`).

Deterministic (golden tests read it): no timestamps, sorted where the spec
gives no order.
"""

from __future__ import annotations

from partc.ir import Network
from partc.language.printer import group_text, layer_text, shape_text


def _table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        out = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=False))]
        return "  ".join(out).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def _segment_kinds(level) -> str:
    return " + ".join(f"{g.count} x {group_text(g)}" for g in level.groups)


def segment_params_text(level) -> str:
    """Parameters per segment as `partc check` shows them: `48`, or `40 + 8/task` with per-task layers."""
    sizes = sorted({(g.params, g.per_task_params) for g in level.groups})
    return "/".join(f"{held:,}" + (f" + {own:,}/task" if own else "") for held, own in sizes)


def summary(net: Network) -> str:
    """The compact table `partc check` prints."""
    lines = [f"network {net.name}  ({net.file}, spec {net.spec_hash}, seed {net.seed})"]
    for spec in net.inputs.values():
        lines.append(f"input {spec.name}: {spec.dtype}{shape_text(spec.shape)}")
    counts = sorted({lv.count for lv in net.levels})
    m = str(counts[0]) if len(counts) == 1 else f"{counts[0]}..{counts[-1]}"
    lines.append(f"{len(net.levels)} levels x {m} segments, {len(net.tasks)} tasks")
    lines.append("")

    # who uses each segment, looked up once (a large spec has 100,000s of path cells)
    users_of = {lv.name: [net.segment_users(lv.name, i) for i in range(lv.count)] for lv in net.levels}
    rows = []
    for lv in net.levels:
        users = users_of[lv.name]
        post = ("residual " if lv.residual else "") + ", ".join(layer_text(layer) for layer in lv.then)
        rows.append([
            lv.name, _segment_kinds(lv), post.strip() or "-", f"{shape_text(lv.in_shape)} -> {shape_text(lv.shape)}",
            segment_params_text(lv), str(sum(1 for u in users if u)),
            str(sum(1 for u in users if len(u) > 1)), str(sum(1 for u in users if len(u) == 1)),
        ])
    lines += _table(["level", "segments", "then", "shape in -> out", "params/seg", "used", "shared", "private"],
                    rows, right={4, 5, 6, 7})
    lines.append("")

    lines.append("paths (segment indices per level; * = private to the task)")
    rows = []
    for name, task in net.tasks.items():
        cells = [name]
        for lv in net.levels:
            users = users_of[lv.name]
            marks = [f"{i}{'*' if len(users[i]) == 1 else ''}" for i in task.path[lv.name]]
            cells.append(",".join(marks))
        rows.append(cells)
    lines += _table(["task"] + [lv.name for lv in net.levels], rows)
    lines.append("")

    # with per-task layers, "private" holds the task's own copies of them too, shown apart as "task-owned"
    owned = net.has_per_task_layers
    rows = []
    for name, task in net.tasks.items():
        split = net.param_split(name)
        src = task.data.source if task.data else "-"
        extra = " via stem" if task.stem is not None else ""
        rows.append([name, f"{task.input}{extra}", src, str(task.classes), f"{split.total:,}", f"{split.shared:,}",
                     f"{split.private:,}"] + ([f"{split.task_owned:,}"] if owned else []) + [f"{split.stem_head:,}"])
    header = ["task", "input", "data", "classes", "params", "shared", "private"] + (["task-owned"] if owned else [])
    lines += _table(header + ["stem+head"], rows, right=set(range(3, len(header) + 1)))
    lines.append("")
    lines.append(f"total parameters: {net.total_params:,}   used by some task: {net.used_params:,}   "
                 f"in shared segments: {net.shared_params:,}"
                 + (f"   task-owned: {net.task_owned_params:,}" if owned else ""))
    return "\n".join(lines) + "\n"
