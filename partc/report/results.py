"""Report, results: per-task accuracy and learning curves from the run's files.

Reads only what `partc train` wrote, through `partc.run`: results.json for
the final test table, metrics.jsonl for the curves (and for the test table
when results.json is missing). Missing or damaged files become entries of a
`problems` list; whatever can still be read is returned. A seed group's
members are combined per task: mean, standard deviation and each member's
value (`combine_results`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from partc.run import read_metrics, read_results, run_paths
from partc.stats import mean_std

METRIC_KEYS = ("loss", "top1", "top5", "samples")


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if isinstance(value, int) else float(value)


def _pick(row: dict[str, Any]) -> dict[str, float | None]:
    return {k: _number(row.get(k)) for k in METRIC_KEYS}


def final_results(run_dir: str | Path, rows: list[dict[str, Any]], tasks: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Each task's test metrics: results.json when readable, else the last test epoch of metrics.jsonl."""
    data, problems = read_results(run_dir)
    if data is not None:
        per_task = data["tasks"]
        found = {t: _pick(per_task[t]) for t in tasks if isinstance(per_task.get(t), dict)}
        if found:
            epoch = data.get("epoch") if isinstance(data.get("epoch"), int) else None
            return _with_mean({"source": "results.json", "epoch": epoch, "tasks": found}), problems
        problems.append(f"{run_paths(run_dir)['results']} has none of the network's tasks")
    test_rows = [r for r in rows if r.get("split") == "test" and r.get("task") in tasks]
    if not test_rows:
        if rows or not problems:
            problems.append("no test metrics: neither results.json nor test rows in metrics.jsonl")
        return {"source": None, "epoch": None, "tasks": {}, "mean_top1": None}, problems
    last = max(int(r["epoch"]) for r in test_rows)
    found = {r["task"]: _pick(r) for r in test_rows if int(r["epoch"]) == last}
    return _with_mean({"source": "metrics.jsonl", "epoch": last, "tasks": found}), problems


def _with_mean(results: dict[str, Any]) -> dict[str, Any]:
    top1 = [m["top1"] for m in results["tasks"].values() if m["top1"] is not None]
    results["mean_top1"] = sum(top1) / len(top1) if top1 else None
    return results


def learning_curves(rows: list[dict[str, Any]], tasks: list[str]) -> dict[str, dict[str, dict[str, list]]]:
    """{task: {split: {"epoch": [...], "loss": [...], "top1": [...]}}} for the train and val splits."""
    curves: dict[str, dict[str, dict[str, list]]] = {}
    for task in tasks:
        for split in ("train", "val"):
            mine = sorted((r for r in rows if r.get("task") == task and r.get("split") == split),
                          key=lambda r: int(r["epoch"]))
            if mine:
                curves.setdefault(task, {})[split] = {
                    "epoch": [int(r["epoch"]) for r in mine],
                    "loss": [_number(r.get("loss")) for r in mine],
                    "top1": [_number(r.get("top1")) for r in mine],
                }
    return curves


def run_results(run_dir: str | Path, tasks: list[str]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(final test results, learning curves, problems) of a run."""
    rows, problems = read_metrics(run_dir)
    bad_epochs = [r for r in rows if not isinstance(r.get("epoch"), int)]
    if bad_epochs:
        problems.append(f"{len(bad_epochs)} metrics row(s) without an integer epoch were skipped")
        rows = [r for r in rows if isinstance(r.get("epoch"), int)]
    results, more = final_results(run_dir, rows, tasks)
    return results, learning_curves(rows, tasks), problems + more


def member_label(seed: int | None) -> str:
    """How report.json names a member run: its train seed ("run" when run.json does not say)."""
    return str(seed) if seed is not None else "run"


def combine_results(per_member: dict[str, dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
    """Final results of several runs of one network (a seed group): per task the mean over members,
    the standard deviation, and every member's value ({label: top1}); the same shape for one run."""
    members = [m for m, r in per_member.items() if r["tasks"]]
    first = per_member[members[0]] if members else {"source": None, "epoch": None}
    combined: dict[str, Any] = {"source": first["source"], "epoch": first["epoch"], "members": members, "tasks": {}}
    for task in tasks:
        rows = {m: per_member[m]["tasks"][task] for m in members if task in per_member[m]["tasks"]}
        if not rows:
            continue
        entry: dict[str, Any] = {}
        for key in METRIC_KEYS:
            values = [r[key] for r in rows.values() if r.get(key) is not None]
            entry[key] = mean_std(values)[0]
        entry["samples"] = next(iter(rows.values())).get("samples")
        by_seed = {m: r["top1"] for m, r in rows.items() if r.get("top1") is not None}
        entry["top1_std"] = mean_std(list(by_seed.values()))[1]
        entry["top1_by_seed"] = by_seed
        combined["tasks"][task] = entry
    by_seed = {m: per_member[m]["mean_top1"] for m in members if per_member[m].get("mean_top1") is not None}
    combined["mean_top1"], combined["mean_top1_std"] = mean_std(list(by_seed.values()))
    combined["mean_top1_by_seed"] = by_seed
    return combined


def group_results(members: list[tuple[int | None, Path]], tasks: list[str]) -> tuple[dict[str, Any], dict, list[str]]:
    """(combined results, {label: curves}, problems) of the runs a run or seed group stands for."""
    per_member, curves, problems = {}, {}, []
    for seed, run in members:
        label = member_label(seed)
        results, member_curves, found = run_results(run, tasks)
        prefix = f"{run.name}: " if len(members) > 1 else ""
        problems += [prefix + p for p in found]
        per_member[label], curves[label] = results, member_curves
    return combine_results(per_member, tasks), curves, problems
