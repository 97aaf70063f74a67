"""Report, HTML: report.json's numbers and the figures in one self-contained page.

The page is rendered by jinja2 from templates/report.html.j2 (autoescaped)
and needs nothing else: every PNG is embedded as a base64 data URI, the CSS
is inline, there is no script and no network reference, so the file can be
mailed or archived on its own.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jinja2

from partc.report.compare import interval_text

TEMPLATES = Path(__file__).resolve().parent / "templates"

FIGURE_TEXT = {
    "usage": ("Segment usage", "Each cell is one segment (columns) of one level (rows). A coloured cell is private "
              "to the task of that colour; a grey one is shared, darker with more users, and the number is how many "
              "tasks use it. Hatched segments belong to no path. A strip along a cell's foot marks per-task layers "
              "(task_batchnorm): each task routed through the segment owns its own copy, one band per owner."),
    "sharing": ("Sharing between tasks", "Left: how many segments two tasks' paths have in common over all levels. "
                "Right: Jaccard similarity of the two paths (common segments over segments in either path)."),
    "sharing_by_level": ("Sharing per level", "Segments two tasks have in common at each level."),
    "params": ("Parameters per task", "Parameters on each task's route, split into segments it shares, its own copies of "
               "per-task layers (task_batchnorm, dotted, when the network has any), segments only it uses, and its own "
               "stem and head. The label gives the total and the shared fraction."),
    "accuracy": ("Test accuracy", "Top-1 (solid) and top-5 (pale) accuracy of each task on its test split; for a seed "
                 "group the mean over seeds, the whisker one standard deviation of top-1."),
    "curves": ("Learning curves", "Loss and top-1 accuracy per epoch on the training and validation splits (for a seed "
               "group: its first member)."),
    "cka": ("Representation similarity (linear CKA)", "Linear centered kernel alignment between every pair of tasks' "
            "representations at the output of each level, on one common probe batch (a seed group: the mean over "
            "seeds). 1: the same representation up to rotation and scale; 0: unrelated. Grey cells: tasks on different "
            "inputs (no common samples). Read it against the references below, not on its own."),
    "cka_references": ("CKA against its references", "Mean CKA between tasks at each level for this run, the same "
                       "network untrained (init.pt), the no-sharing baseline (when given) and unrelated samples (one "
                       "side's rows permuted): marker the mean over seeds, whiskers min to max."),
    "lesion": ("Lesion: reliance on shared segments", "Test top-1 of each task with its trained weights (solid) and "
               "with only its shared segments put back to their initial weights (pale). A large drop says how much "
               "of the task's route is shared; it does not say the task gained anything from the other tasks."),
    "transfer": ("Transfer: with sharing against without", "Per task and overall, test top-1 of this run minus the "
                 "no-sharing baseline with the same train seed: bar the mean paired difference, whiskers its t "
                 "interval, dots each seed. A verdict only where the interval excludes zero."),
}


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _signed_points(value: Any) -> str:
    return "-" if value is None else f"{100 * value:+.1f} pt"


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _percent_sd(value: Any, sd: Any) -> str:
    """A mean accuracy with its standard deviation over seeds, when there is one: 97.3% +- 1.2."""
    return _percent(value) + (f" ± {100 * sd:.1f}" if sd is not None else "")


def _significant(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def render_html(data: dict[str, Any], figures: dict[str, Path]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(percent=_percent, points=_signed_points, number=_number, sig=_significant, percent_sd=_percent_sd,
                       interval_points=lambda r: interval_text(r) if r else "-",
                       interval_value=lambda r: interval_text(r, scale=1, unit="", digits=2) if r else "-")
    shown = {
        name: {"uri": data_uri(path), "file": path.name, "title": FIGURE_TEXT[name][0], "caption": FIGURE_TEXT[name][1]}
        for name, path in figures.items()
    }
    return env.get_template("report.html.j2").render(r=data, fig=shown)
