"""Report, results: per-task accuracy and learning curves from the run's files.

Reads only what `partc train` wrote, through `partc.run`: results.json for
the final test table, metrics.jsonl for the curves (and for the test table
when results.json is missing). Missing or damaged files become entries of a
`problems` list; whatever can still be read is returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from partc.ir import Network
from partc.run import read_info, read_metrics, read_results, run_paths

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


def baseline_comparison(results: dict[str, Any], baseline_dir: str | Path, tasks: list[str],
                        net: Network | None = None) -> tuple[dict | None, list[str]]:
    """Test top-1 of each task here versus in a run without sharing (difference = here - baseline)."""
    baseline_dir = Path(baseline_dir)
    if not baseline_dir.is_dir():
        return None, [f"baseline run '{baseline_dir}' does not exist"]
    rows, problems = read_metrics(baseline_dir)
    base, more = final_results(baseline_dir, [r for r in rows if isinstance(r.get("epoch"), int)], tasks)
    compared = {}
    for task in tasks:
        here = results["tasks"].get(task, {}).get("top1")
        there = base["tasks"].get(task, {}).get("top1")
        if here is not None and there is not None:
            compared[task] = {"top1": here, "baseline_top1": there, "difference": here - there}
    if not compared:
        problems = [f"baseline '{baseline_dir}' has no test accuracy for any task of this run"]
    else:
        # The baseline only lends its final test table; its metrics file matters only when that table is missing.
        problems = [f"baseline: {p}" for p in (more if base["source"] == "results.json" else problems + more)]
    info, _ = read_info(baseline_dir)
    source_hash = info.get("source_spec_hash")
    if net is not None and source_hash is not None and not net.matches_hash(source_hash):
        problems.append(f"baseline '{baseline_dir}' was made from another spec (spec hash {source_hash}, "
                        f"this run's is {net.spec_hash})")
    return {"run": str(baseline_dir), "source": base["source"], "tasks": compared}, problems
