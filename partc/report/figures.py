"""Report, figures: matplotlib drawings of the numbers in report.json.

Every function takes a section of the report dict (so a figure shows exactly
the numbers the JSON holds) and returns a `matplotlib.figure.Figure` built
without pyplot: no global state, no GUI backend (saving a PNG renders it
with Agg), so importing this never changes a user's matplotlib setup.
Layouts are sized from the number of tasks, levels and segments, so the
paper's 10 tasks x 12 segments x 9 levels stays readable.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from partc.dot import PALETTE

DPI = 110
SHARED_GREY = "#8c8c8c"
MISSING = "#e6e6e6"  # heatmap cells without a value (tasks on different inputs)


def task_colours(tasks: list[str]) -> dict[str, str]:
    """The same colours `partc graph` gives the tasks."""
    return {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(tasks)}


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _ink(colour) -> str:
    """Black or white text, whichever reads on `colour`."""
    r, g, b = to_rgb(colour)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _grey(users: int, most: int) -> tuple[float, float, float]:
    """Shared cells: light grey for 2 users, darker with each further user up to `most`."""
    span = max(1, most - 2)
    level = 0.86 - 0.52 * min(users - 2, span) / span
    return (level, level, level)


def _task_ticks(ax, tasks: list[str], axis: str = "both", fontsize: float = 8) -> None:
    rotate = max(map(len, tasks)) > 3
    if axis in ("x", "both"):
        ax.set_xticks(range(len(tasks)))
        ax.set_xticklabels(tasks, fontsize=fontsize, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                           rotation_mode="anchor")
    if axis in ("y", "both"):
        ax.set_yticks(range(len(tasks)))
        ax.set_yticklabels(tasks, fontsize=fontsize)


def _count_format(value: float, _pos=None) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M".replace(".0M", "M")
    if abs(value) >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


# ---------------------------------------------------------------- structure
# An extended run marks inherited-frozen and new segments with a frame (inherited-trained ones have none).
EXTENSION_EDGES = {"inherited-frozen": {"edgecolor": "#000000", "linewidth": 2.0},
                   "new": {"edgecolor": "#000000", "linewidth": 1.2, "linestyle": (0, (2, 1.5))}}


def usage_map(structure: dict[str, Any]) -> Figure:
    """Levels x segments: private cells in the task's colour, shared ones grey with the user count; a
    segment with per-task layers (task_batchnorm) gets a strip along its foot, one band per owner."""
    tasks, levels = structure["tasks"], structure["levels"]
    colours = task_colours(tasks)
    width = max(lv["segments"] for lv in levels)
    most = max((len(u) for lv in levels for u in lv["users"]), default=2)
    cell = 0.5  # inches
    legend_width = 1.9 if len(tasks) > 8 else 1.2
    fig = Figure(figsize=(1.0 + cell * width + legend_width, 1.1 + cell * max(len(levels), 5)), layout="constrained")
    ax = fig.add_subplot()
    counts_seen = set()
    owned_seen = False
    # A cell is `cell` inches wide: names up to 4 characters fit at 8 pt, up to 7 at 6.5 pt.
    name_size = 8 if max(map(len, tasks)) <= 4 else 6.5 if max(map(len, tasks)) <= 7 else None
    for row, lv in enumerate(levels):
        for col, users in enumerate(lv["users"]):
            if not users:
                face, text = "white", ""
            elif len(users) == 1:
                face, text = colours[users[0]], users[0] if name_size else ""
            else:
                face, text = _grey(len(users), most), str(len(users))
                counts_seen.add(len(users))
            status = lv.get("status", [None] * len(lv["users"]))[col]  # an extended run: inherited or new
            ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, facecolor=face, edgecolor="#555555", linewidth=0.6,
                                   hatch="////" if not users else None))
            if users and lv["task_params_per_segment"][col]:
                owned_seen = True
                band = 1 / len(users)
                for k, t in enumerate(users):  # each owner's own layers: a band of its colour
                    ax.add_patch(Rectangle((col - 0.5 + k * band, row + 0.28), band, 0.22, facecolor=colours[t],
                                           edgecolor="white", linewidth=0.6))
            if status in EXTENSION_EDGES:
                ax.add_patch(Rectangle((col - 0.42, row - 0.42), 0.84, 0.84, fill=False, **EXTENSION_EDGES[status]))
            if text:
                ax.text(col, row, text, ha="center", va="center", fontsize=8 if len(users) > 1 else name_size,
                        color=_ink(face),
                        fontweight="bold" if len(users) > 1 else "normal")
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(len(levels) - 0.5, -0.5)
    ax.set_xticks(range(width))
    ax.set_xticklabels([str(i) for i in range(width)], fontsize=8)
    ax.set_yticks(range(len(levels)))
    ax.set_yticklabels([lv["name"] for lv in levels], fontsize=8)
    ax.set_aspect("equal")
    ax.set_xlabel("segment index")
    ax.set_ylabel("level")
    ax.set_title(f"{structure['network']}: which tasks use each segment", fontsize=10)
    private = [Patch(facecolor=colours[t], edgecolor="#555555", label=t) for t in tasks]
    shared = [Patch(facecolor=_grey(n, most), edgecolor="#555555", label=f"{n} tasks") for n in sorted(counts_seen)]
    shared.append(Patch(facecolor="white", edgecolor="#555555", hatch="////", label="unused"))
    if owned_seen:
        shared.append(Patch(facecolor=colours[tasks[0]], edgecolor="white",
                            label="foot strip, a band per\ntask: its own layers\n(task_batchnorm)"))
    if any("status" in lv for lv in levels):
        shared += [Patch(facecolor="white", label=label, **EXTENSION_EDGES[kind])
                   for kind, label in (("inherited-frozen", "frozen (base)"), ("new", "new segment"))]
    fig.legend(handles=private, title="private to", loc="outside right upper", fontsize=8, title_fontsize=8,
               ncols=2 if len(tasks) > 8 else 1, frameon=False)
    fig.legend(handles=shared, title="shared by\n(count in cell)", loc="outside right lower", fontsize=8,
               title_fontsize=8, ncols=2 if len(shared) > 8 else 1, frameon=False)
    return fig


def _heatmap(ax, matrix, labels, *, vmin, vmax, cmap, fmt: str | None, fontsize: float = 7, own_diagonal=False):
    """A task x task heatmap; with `own_diagonal`, the diagonal (a task with itself) is greyed, not scaled."""
    import numpy as np

    values = np.array([[math.nan if v is None else v for v in row] for row in matrix], dtype=float)
    shown = values.copy()
    if own_diagonal:
        np.fill_diagonal(shown, math.nan)
    cmap = matplotlib.colormaps[cmap].with_extremes(bad=MISSING)
    image = ax.imshow(np.ma.masked_invalid(shown), vmin=vmin, vmax=vmax, cmap=cmap)
    _task_ticks(ax, labels, fontsize=fontsize)
    if fmt:
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                if math.isnan(v):
                    continue
                text = format(int(v) if fmt == "d" else v, fmt)
                if own_diagonal and i == j:
                    ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color="#666666", style="italic")
                else:
                    ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                            color=_ink(cmap((v - vmin) / ((vmax - vmin) or 1))))
    return image


def _off_diagonal_max(matrix) -> float:
    values = [v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j and v is not None]
    return max(values, default=0) or 1


def sharing_matrices(structure: dict[str, Any]) -> Figure:
    """Task x task: segments shared (all levels) and Jaccard similarity of the paths."""
    tasks = structure["tasks"]
    side = 1.6 + 0.42 * len(tasks)
    fig = Figure(figsize=(2 * side + 1.6, side + 0.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    shared = structure["shared_segments"]
    image = _heatmap(left, shared, tasks, vmin=0, vmax=_off_diagonal_max(shared), cmap="Blues",
                     fmt="d" if len(tasks) <= 14 else None, fontsize=8, own_diagonal=True)
    fig.colorbar(image, ax=left, shrink=0.8, label="segments shared", ticks=MaxNLocator(integer=True))
    left.set_title("segments shared, all levels\n(diagonal, grey: the task's path length)", fontsize=9)
    jaccard = structure["path_jaccard"]
    image = _heatmap(right, jaccard, tasks, vmin=0, vmax=_off_diagonal_max(jaccard), cmap="Blues",
                     fmt=".2f" if len(tasks) <= 10 else None, fontsize=7, own_diagonal=True)
    fig.colorbar(image, ax=right, shrink=0.8, label="Jaccard similarity of paths")
    right.set_title("path similarity: |A and B| / |A or B|\n(diagonal, grey: 1 by definition)", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("task")
        ax.set_ylabel("task")
    fig.suptitle(f"{structure['network']}: sharing between tasks", fontsize=11)
    return fig


def _level_grid(levels: list[str], tasks: list[str]):
    cols = min(len(levels), 4 if len(tasks) <= 6 else 3)
    rows = math.ceil(len(levels) / cols)
    panel = max(2.4, 1.3 + 0.3 * len(tasks))
    fig = Figure(figsize=(cols * panel + 1.2, rows * panel + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(levels):]:
        ax.set_visible(False)
    return fig, axes[: len(levels)]


def sharing_by_level(structure: dict[str, Any]) -> Figure:
    """Task x task segments shared, one small heatmap per level on one colour scale."""
    tasks = structure["tasks"]
    by_level = structure["shared_segments_by_level"]
    levels = list(by_level)
    top = max(_off_diagonal_max(m) for m in by_level.values())
    fig, axes = _level_grid(levels, tasks)
    image = None
    for ax, level in zip(axes, levels):
        image = _heatmap(ax, by_level[level], tasks, vmin=0, vmax=top, cmap="Blues",
                         fmt="d" if len(tasks) <= 10 else None, own_diagonal=True)
        ax.set_title(f"level {level}", fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.6, label="segments shared", ticks=MaxNLocator(integer=True))
    fig.suptitle(f"{structure['network']}: segments shared per level (rows and columns: tasks; "
                 "diagonal, grey: the task's own segments)", fontsize=10)
    return fig


def param_split(structure: dict[str, Any]) -> Figure:
    """Parameters on each task's route: shared segments, its own per-task layers, private segments, stem and head."""
    tasks = structure["tasks"]
    colours = task_colours(tasks)
    params = structure["params"]
    fig = Figure(figsize=(3.0 + 0.8 * len(tasks), 4.2), layout="constrained")
    ax = fig.add_subplot()
    xs = range(len(tasks))
    shared = [params[t]["shared"] for t in tasks]
    owned = [params[t]["task_owned"] for t in tasks]
    private = [params[t]["private_segments"] for t in tasks]
    own = [params[t]["stem_head"] for t in tasks]
    ax.bar(xs, shared, color=SHARED_GREY, edgecolor="#444444", linewidth=0.5)
    below = list(shared)
    if any(owned):
        ax.bar(xs, owned, bottom=below, color=[colours[t] for t in tasks], alpha=0.7, hatch="...",
               edgecolor="#444444", linewidth=0.5)
        below = [a + b for a, b in zip(below, owned)]
    ax.bar(xs, private, bottom=below, color=[colours[t] for t in tasks], edgecolor="#444444", linewidth=0.5)
    ax.bar(xs, own, bottom=[a + b for a, b in zip(below, private)], color=[colours[t] for t in tasks], alpha=0.45,
           hatch="///", edgecolor="#444444", linewidth=0.5)
    top = max(params[t]["total"] for t in tasks) or 1
    for x, t in zip(xs, tasks):
        share = params[t]["shared"] / params[t]["total"] if params[t]["total"] else 0.0
        shown = ">99%" if 0.995 <= share < 1 else f"{share:.0%}"  # never round a private part away
        ax.text(x, params[t]["total"] + 0.01 * top, f"{_count_format(params[t]['total'])}\n{shown} shared",
                ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, top * 1.15)
    ax.yaxis.set_major_formatter(FuncFormatter(_count_format))
    _task_ticks(ax, tasks, axis="x")
    ax.set_xlabel("task")
    ax.set_ylabel("parameters on the task's route")
    ax.set_title(f"{structure['network']}: parameters per task, shared and private", fontsize=10)
    handles = [Patch(facecolor=SHARED_GREY, edgecolor="#444444", label="shared segments")]
    if any(owned):
        handles.append(Patch(facecolor="#999999", edgecolor="#444444", hatch="...",
                             label="own per-task layers\n(task_batchnorm)"))
    handles += [Patch(facecolor="#777777", edgecolor="#444444", label="private segments\n(task colour)"),
                Patch(facecolor="#bbbbbb", edgecolor="#444444", hatch="///", label="stem + head")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    return fig


# ---------------------------------------------------------------- results
def accuracy_bars(results: dict[str, Any], tasks: list[str]) -> Figure:
    """Test top-1 and top-5 per task; over a seed group, the means with the top-1 standard deviation."""
    shown = [t for t in tasks if t in results["tasks"]]
    fig = Figure(figsize=(3.0 + 0.8 * len(shown), 4.0), layout="constrained")
    ax = fig.add_subplot()
    rows = results["tasks"]
    _paired_bars(ax, shown, [rows[t]["top1"] or 0.0 for t in shown], [rows[t]["top5"] or 0.0 for t in shown],
                 first_error=[rows[t].get("top1_std") for t in shown])
    _task_ticks(ax, shown, axis="x")
    ax.set_xlabel("task")
    ax.set_ylabel("test accuracy")
    where = f"epoch {results['epoch']}" if results.get("epoch") else "final"
    members = len(results.get("members") or [])
    over = f"mean over {members} seeds, bars: +- 1 sd; " if members > 1 else ""
    ax.set_title(f"test accuracy per task ({over}{where}; from {results['source']})", fontsize=10)
    fig.legend(handles=[Patch(facecolor="#666666", label="top-1"), Patch(facecolor="#666666", alpha=0.4, label="top-5")],
               loc="outside right upper", fontsize=8, frameon=False)
    return fig


def learning_curves(curves: dict[str, Any], tasks: list[str]) -> Figure:
    """Loss and top-1 per epoch, train and val, one line per task."""
    colours = task_colours(tasks)
    fig = Figure(figsize=(9.5, 6.2), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    losses = [v for per_task in curves.values() for series in per_task.values() for v in series["loss"] if v is not None]
    # Losses that fall by orders of magnitude read better on a log scale.
    log_loss = bool(losses) and min(losses) > 0 and max(losses) / min(losses) > 100
    for col, split in enumerate(("train", "val")):
        for row, key in enumerate(("loss", "top1")):
            ax = axes[row][col]
            for t in tasks:
                series = curves.get(t, {}).get(split)
                if series:
                    points = [(e, v) for e, v in zip(series["epoch"], series[key]) if v is not None]
                    if points:
                        ax.plot(*zip(*points), color=colours[t], linewidth=1.3, marker="." if len(points) < 30 else None)
            ax.set_title(f"{split} {'loss' if key == 'loss' else 'top-1 accuracy'}", fontsize=10)
            ax.set_ylabel(("loss (log scale)" if log_loss else "loss") if key == "loss" else "top-1")
            if key == "loss" and log_loss:
                ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if key == "top1":
                ax.set_ylim(0, 1.02)
                ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    fig.legend(handles=[Line2D([], [], color=colours[t], linewidth=2, label=t) for t in tasks if t in curves], title="task",
               loc="outside right upper", fontsize=8, title_fontsize=8, ncols=2 if len(tasks) > 12 else 1, frameon=False)
    fig.suptitle("learning curves", fontsize=11)
    return fig


# ---------------------------------------------------------------- representations
def cka_grid(cka: dict[str, Any]) -> Figure:
    """Task x task linear CKA at the output of every level, one colour scale 0..1 (a seed group: the mean)."""
    tasks, levels = cka["tasks"], cka["levels"]
    fig, axes = _level_grid(levels, tasks)
    image = None
    for ax, level in zip(axes, levels):
        image = _heatmap(ax, cka["matrices"][level], tasks, vmin=0, vmax=1, cmap="viridis",
                         fmt=".2f" if len(tasks) <= 6 else None)
        ax.set_title(f"level {level}", fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.6, label="linear CKA")
    kinds = sorted({p["kind"] for p in cka["probes"]})
    seeds = len(cka.get("seeds") or [])
    over = f" (mean over {seeds} seeds)" if seeds > 1 else ""
    fig.suptitle(f"representation similarity between tasks{over} (rows and columns: tasks)\nprobe: {'; '.join(kinds)}",
                 fontsize=10)
    return fig


REFERENCE_STYLE = {  # comparison key -> (label, colour, marker)
    "trained": ("this run (trained)", "#1f4e9c", "o"),
    "baseline": ("no-sharing baseline (trained)", "#d9822b", "s"),
    "init": ("this network untrained (init.pt)", "#6a9f58", "^"),
    "noise_floor": ("unrelated samples (rows permuted)", "#9a9a9a", "v"),
}


def cka_references(comparison: dict[str, Any]) -> Figure:
    """Mean between-task CKA per level, for the run and each reference: mean over seeds, whiskers min..max."""
    levels = list(comparison["levels"])
    fig = Figure(figsize=(3.2 + 0.9 * len(levels), 4.2), layout="constrained")
    ax = fig.add_subplot()
    keys = [k for k in REFERENCE_STYLE if all(k in comparison["levels"][lv] for lv in levels)]
    width = 0.8 / len(keys)
    for n, key in enumerate(keys):
        label, colour, marker = REFERENCE_STYLE[key]
        xs, means, low, high = [], [], [], []
        for i, lv in enumerate(levels):
            entry = comparison["levels"][lv][key]
            values = list(entry["by_seed"].values())
            if entry["mean"] is None:
                continue
            xs.append(i - 0.4 + width * (n + 0.5))
            means.append(entry["mean"])
            low.append(entry["mean"] - min(values))
            high.append(max(values) - entry["mean"])
        ax.errorbar(xs, means, yerr=[low, high], fmt=marker, color=colour, label=label, capsize=3, markersize=6,
                    linewidth=1)
    ax.set_xticks(range(len(levels)))
    ax.set_xticklabels(levels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("level")
    ax.set_ylabel("mean CKA between tasks")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("CKA between tasks against its references\n(marker: mean over seeds; whiskers: min..max)", fontsize=10)
    fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    return fig


def _paired_bars(ax, tasks: list[str], first: list[float], second: list[float],
                 first_error: list[float | None] | None = None, second_error: list[float | None] | None = None) -> None:
    """Two bars per task in its colour: solid (first) and pale (second), with their values (and +- error)."""
    colours = task_colours(tasks)
    for offset, values, alpha, errors in ((-0.2, first, 1.0, first_error), (0.2, second, 0.4, second_error)):
        xs = [i + offset for i in range(len(tasks))]
        ax.bar(xs, values, width=0.38, color=[colours[t] for t in tasks], alpha=alpha, edgecolor="#444444",
               linewidth=0.5)
        if errors is not None and any(e is not None for e in errors):
            ax.errorbar(xs, values, yerr=[e or 0.0 for e in errors], fmt="none", ecolor="#222222", capsize=3,
                        linewidth=0.8)
        if len(tasks) <= 12:
            for x, v in zip(xs, values):
                ax.text(x + 0.02, v + 0.01, f"{v:.2f}", ha="left" if errors else "center", va="bottom", fontsize=7)
    ax.set_ylim(0, 1.12)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])


def lesion_bars(lesion: dict[str, Any], tasks: list[str]) -> Figure:
    """Test top-1 with trained weights vs with the task's shared segments reset to init (a seed group: means)."""
    shown = [t for t in tasks if t in lesion]
    fig = Figure(figsize=(3.0 + 0.8 * len(shown), 4.2), layout="constrained")
    ax = fig.add_subplot()
    _paired_bars(ax, shown, [lesion[t]["trained_top1"] for t in shown], [lesion[t]["reset_top1"] for t in shown])
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels([f"{t}\n{lesion[t]['shared_segments']} shared" for t in shown], fontsize=7)
    ax.set_xlabel("task (and how many segments of its path it shares)")
    ax.set_ylabel("test top-1")
    ax.set_title("lesion: reliance on shared segments\n(trained vs its shared segments reset to init; not transfer)",
                 fontsize=10)
    fig.legend(handles=[Patch(facecolor="#666666", label="trained"),
                        Patch(facecolor="#666666", alpha=0.4, label="shared\nsegments reset")],
               loc="outside right upper", fontsize=8, frameon=False)
    return fig


def transfer_bars(transfer: dict[str, Any], tasks: list[str]) -> Figure:
    """Per task and overall: top-1 with sharing minus without, mean over paired seeds with its t interval."""
    rows = transfer["tasks"]
    shown = [t for t in tasks if t in rows]
    colours = task_colours(tasks)
    entries = [(t, rows[t], colours[t]) for t in shown] + [("mean", transfer["overall"], "#333333")]
    fig = Figure(figsize=(3.4 + 0.8 * len(entries), 4.2), layout="constrained")
    ax = fig.add_subplot()
    for x, (_, r, colour) in enumerate(entries):
        if r["mean"] is None:
            continue
        mean = 100 * r["mean"]
        ax.bar(x, mean, width=0.6, color=colour, alpha=0.85, edgecolor="#444444", linewidth=0.5)
        if r["ci"] is not None:
            ax.errorbar([x], [mean], yerr=[[mean - 100 * r["ci"][0]], [100 * r["ci"][1] - mean]], fmt="none",
                        ecolor="#111111", capsize=4, linewidth=1)
        for value in r["values"]:
            ax.plot(x + 0.18, 100 * value, ".", color="#111111", markersize=4)
    ax.axhline(0, color="#444444", linewidth=0.8)
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -100), min(high, 100))  # a difference of accuracies lies within +-100 points
    ax.set_xticks(range(len(entries)))
    short = {"above": "helps", "below": "hurts", "unclear": "no detectable\ndifference", None: "no interval"}
    ax.set_xticklabels([f"{name}\n{short[r['direction']]}" for name, r, _ in entries], fontsize=7)
    ax.set_ylabel("test top-1, with sharing minus without (points)")
    n = transfer["overall"]["n"]
    level = round(100 * transfer["level"])
    ax.set_title(f"transfer: shared run vs no-sharing baseline, paired by seed (n={n})\n"
                 f"bar: mean difference; whiskers: {level}% t interval; dots: each seed", fontsize=10)
    return fig
