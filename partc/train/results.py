"""Train stage, final results: the per-task table of results.json and results.md.

Built from metrics.jsonl alone (so a resumed or finished run gives the same
table): each task's test split at the last epoch, and the epoch at which
its validation top-1 was best (the earliest, on ties).
"""

from __future__ import annotations

from collections import defaultdict

from partc.ir import Network


def best_mean_val_epoch(rows: list[dict]) -> int | None:
    """The epoch with the best mean validation top-1 over tasks (earliest on ties)."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        if r["split"] == "val" and r.get("top1") is not None:
            by_epoch[r["epoch"]].append(r["top1"])
    if not by_epoch:
        return None
    return max(sorted(by_epoch), key=lambda e: sum(by_epoch[e]) / len(by_epoch[e]))


def build_results(net: Network, rows: list[dict], epoch: int, *, no_sharing: bool = False) -> dict:
    tasks = {}
    for t in net.tasks:
        test = next((r for r in rows if r["task"] == t and r["split"] == "test" and r["epoch"] == epoch), None)
        vals = sorted((r for r in rows if r["task"] == t and r["split"] == "val" and r.get("top1") is not None
                       and r["epoch"] <= epoch), key=lambda r: r["epoch"])
        best = max(vals, key=lambda r: r["top1"]) if vals else None
        tasks[t] = {
            "classes": net.tasks[t].classes,
            "top1": test["top1"] if test else None,
            "top5": test["top5"] if test else None,
            "loss": test["loss"] if test else None,
            "samples": test["samples"] if test else 0,
            "best_val_epoch": best["epoch"] if best else None,
            "best_val_top1": best["top1"] if best else None,
        }
    scored = [v for v in tasks.values() if v["top1"] is not None]
    return {
        "network": net.name,
        "epoch": epoch,
        "no_sharing": no_sharing,
        "tasks": tasks,
        "mean_top1": sum(v["top1"] for v in scored) / len(scored) if scored else None,
        "mean_top5": sum(v["top5"] for v in scored) / len(scored) if scored else None,
        "best_mean_val_epoch": best_mean_val_epoch([r for r in rows if r["epoch"] <= epoch]),
    }


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def results_table(results: dict) -> str:
    """Markdown table of the per-task test results (printed and saved as results.md)."""
    title = f"{results['network']}: test split after epoch {results['epoch']}"
    lines = [f"## {title}", "",
             "| task | classes | test top-1 | test top-5 | test loss | samples | best val epoch | best val top-1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t, v in results["tasks"].items():
        loss = "-" if v["loss"] is None else f"{v['loss']:.4f}"
        lines.append(f"| {t} | {v['classes']} | {_pct(v['top1'])} | {_pct(v['top5'])} | {loss} | {v['samples']} | "
                     f"{v['best_val_epoch'] or '-'} | {_pct(v['best_val_top1'])} |")
    lines.append(f"| **mean** | | **{_pct(results['mean_top1'])}** | {_pct(results['mean_top5'])} | | | "
                 f"{results['best_mean_val_epoch'] or '-'} | |")
    return "\n".join(lines) + "\n"
