"""Report, structure: who uses which segment, computed from the IR alone.

Everything here reads the checked network (`ir.Network`) (and, for an
extended run, run.json's "extend" record), never weights, so
the structure part of a report exists for any run that has its spec.part.
The numbers are the IR's own (`segment_users`, `task_params`,
`task_shared_params`), so the report and `partc check` cannot disagree.
"""

from __future__ import annotations

from typing import Any

from partc.ir import Network
from partc.run import Growth
from partc.summary import segment_params_text


def segment_usage(net: Network) -> dict[str, list[list[str]]]:
    """{level: [sorted users of segment 0, of segment 1, ...]}, in spec task order."""
    order = list(net.tasks)
    return {
        lv.name: [sorted(net.segment_users(lv.name, i), key=order.index) for i in range(lv.count)]
        for lv in net.levels
    }


def shared_segments(net: Network, a: str, b: str, level: str | None = None) -> int:
    """How many segments tasks a and b both route through (at one level, or all)."""
    levels = [level] if level else [lv.name for lv in net.levels]
    ta, tb = net.tasks[a], net.tasks[b]
    return sum(len(set(ta.path[lv]) & set(tb.path[lv])) for lv in levels)


def path_jaccard(net: Network, a: str, b: str) -> float:
    """|path a & path b| / |path a | path b| over (level, segment) pairs."""
    pa = {(lv, i) for lv, ix in net.tasks[a].path.items() for i in ix}
    pb = {(lv, i) for lv, ix in net.tasks[b].path.items() for i in ix}
    union = pa | pb
    return len(pa & pb) / len(union) if union else 0.0


def task_param_split(net: Network, task: str) -> dict[str, int]:
    """A task's parameters: in shared segments, its own per-task layers, in private segments, in its stem
    and head (`ir.ParamSplit`; they add up to its total)."""
    return net.param_split(task).as_dict()


def structure(net: Network) -> dict[str, Any]:
    """The structure section of report.json."""
    tasks = list(net.tasks)
    usage = segment_usage(net)
    levels = []
    for lv in net.levels:
        users = usage[lv.name]
        levels.append({
            "name": lv.name,
            "segments": lv.count,
            "params_per_segment": [lv.segment_params(i) for i in range(lv.count)],  # held once, shared by its users
            "task_params_per_segment": [lv.segment_per_task_params(i) for i in range(lv.count)],  # per user
            "params_text": segment_params_text(lv),  # as `partc check` writes it: "48", "40 + 8/task"
            "users": users,
            "used": sum(1 for u in users if u),
            "shared": sum(1 for u in users if len(u) > 1),
            "private": sum(1 for u in users if len(u) == 1),
        })
    return {
        "network": net.name,
        "tasks": tasks,
        "inputs": {t: net.tasks[t].input for t in tasks},
        "paths": {t: {lv: list(ix) for lv, ix in net.tasks[t].path.items()} for t in tasks},
        "levels": levels,
        "shared_segments": [[shared_segments(net, a, b) for b in tasks] for a in tasks],
        "shared_segments_by_level": {
            lv.name: [[shared_segments(net, a, b, lv.name) for b in tasks] for a in tasks] for lv in net.levels
        },
        "path_jaccard": [[path_jaccard(net, a, b) for b in tasks] for a in tasks],
        "params": {t: task_param_split(net, t) for t in tasks},
        "total_params": net.total_params,
        "used_params": net.used_params,
        "shared_params": net.shared_params,
        "task_owned_params": net.task_owned_params,
    }


def extension(net: Network, record: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The extension section of report.json, for a run `partc extend` made (run.json's "extend" record):
    each segment inherited-frozen, inherited-trained or new, and the base tasks' test top-1 before and after."""
    growth = Growth.from_dict(record)
    status = {lv.name: [growth.segment_status(lv.name, i) for i in range(lv.count)] for lv in net.levels}
    before_after = {}
    for task in growth.base_tasks:
        before = (growth.base_results.get(task) or {}).get("top1")
        after = (results.get("tasks", {}).get(task) or {}).get("top1")
        before_after[task] = {"before": before, "after": after,
                              "change": None if before is None or after is None else after - before}
    return {"base_run": growth.base_run, "base_spec_hash": growth.base_spec_hash, "base_tasks": list(growth.base_tasks),
            "new_tasks": list(growth.new_tasks), "freeze": growth.freeze, "segments": status,
            "counts": {kind: sum(row.count(kind) for row in status.values())
                       for kind in ("inherited-frozen", "inherited-trained", "new")},
            "base_accuracy": before_after}
