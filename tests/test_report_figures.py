"""Report figures stay readable: no text overlaps or leaves the figure, at the paper's full size.

The structure figures need only the IR, so the paper's own network
(cifar100_part: 10 tasks, 9 levels x 12 segments) is drawn for real; the
figures of trained runs take report.json sections, filled here with
plausible numbers for the same 10 tasks, 9 levels and 60 epochs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from matplotlib.axis import Tick
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

import partc
from partc.report import figures
from partc.report.compare import cka_references, lesion_summary, transfer
from partc.report.results import combine_results
from partc.report.structure import structure

SPECS = Path(__file__).resolve().parent.parent / "specs"


def drawn_texts(fig):
    """(text, box in pixels) of every text the figure draws; tick labels only for ticks inside the view."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    tick_labels = {id(t) for tick in fig.findobj(Tick) for t in (tick.label1, tick.label2)}
    texts = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    texts += [t for t in (tick.label1, tick.label2) if t.get_visible() and t.get_text().strip()]
    texts += [t for t in fig.findobj(Text) if id(t) not in tick_labels and t.get_visible() and t.get_text().strip()
              and (t.axes is None or t.axes.get_visible())]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts]


def text_problems(fig, slack: float = 0.5) -> list[str]:
    """Texts that overlap each other or stick out of the figure (boxes may touch within `slack` pixels)."""
    boxes = drawn_texts(fig)
    frame = fig.bbox
    problems = [f"outside the figure: {text!r}" for text, b in boxes
                if b.x0 < frame.x0 - slack or b.y0 < frame.y0 - slack or b.x1 > frame.x1 + slack
                or b.y1 > frame.y1 + slack]
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1:]:
            if a.x0 + slack < b.x1 and b.x0 + slack < a.x1 and a.y0 + slack < b.y1 and b.y0 + slack < a.y1:
                problems.append(f"overlap: {ta!r} and {tb!r}")
    return problems


def test_the_checker_sees_overlaps():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, "one label")
    ax.text(0.52, 0.5, "another label")
    ax.set_title("a title much too long for a two inch wide figure")
    found = text_problems(fig)
    assert any(p.startswith("overlap: 'one label'") for p in found)
    assert any(p.startswith("outside the figure") for p in found)


@pytest.fixture(scope="module")
def paper():
    return structure(partc.load(SPECS / "cifar100_part.part"))


@pytest.mark.parametrize("draw", [figures.usage_map, figures.sharing_matrices, figures.sharing_by_level,
                                  figures.param_split], ids=lambda f: f.__name__)
@pytest.mark.parametrize("spec", ["cifar100_part", "split_digits", "mixed_inputs"])
def test_structure_figures_are_readable(draw, spec, paper):
    s = paper if spec == "cifar100_part" else structure(partc.load(SPECS / f"{spec}.part"))
    assert text_problems(draw(s)) == []


def test_usage_map_writes_every_shared_count_and_names_every_task(paper):
    fig = figures.usage_map(paper)
    texts = [t for t, _ in drawn_texts(fig)]
    counts = [len(u) for lv in paper["levels"] for u in lv["users"] if len(u) > 1]
    cell_texts = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(int(t) for t in cell_texts if t.isdigit()) == sorted(counts)
    assert sum(t in paper["tasks"] for t in cell_texts) == sum(len(u) == 1 for lv in paper["levels"] for u in lv["users"])
    for task in paper["tasks"]:
        assert task in texts  # legend


def _paper_run_sections(tasks: list[str], levels: list[str]) -> dict:
    """Plausible report.json sections of a 10-task seed group of 3 (the figures draw whatever they are given),
    made by the report's own functions where it has them."""
    seeds = ["1", "2", "3"]

    def member(i: int, seed: int, base: float) -> dict:
        return {"top1": base + 0.02 * i + 0.01 * seed, "top5": 0.93 + 0.005 * i, "loss": 0.8, "samples": 1000}

    def group(base: float) -> dict:
        per = {s: {"source": "results.json", "epoch": 60, "tasks": {t: member(i, int(s), base) for i, t in enumerate(tasks)}}
               for s in seeds}
        for r in per.values():
            r["mean_top1"] = sum(m["top1"] for m in r["tasks"].values()) / len(tasks)
        return combine_results(per, tasks)

    results, baseline = group(0.7), group(0.69)
    epochs = list(range(1, 61))
    curves = {t: {split: {"epoch": epochs, "loss": [2.3 * math.exp(-e / (15 + i)) for e in epochs],
                          "top1": [0.95 * (1 - math.exp(-e / (10 + i))) for e in epochs]}
                  for split in ("train", "val")} for i, t in enumerate(tasks)}
    cka = {"tasks": tasks, "levels": levels, "seeds": seeds,
           "matrices": {lv: [[1.0 if a == b else 0.9 - 0.08 * k - 0.01 * abs(a - b) for b in range(len(tasks))]
                             for a in range(len(tasks))] for k, lv in enumerate(levels)},
           "probes": [{"input": "image", "tasks": tasks, "kind": "test samples of every task reading this input",
                       "samples": 250, "from_tasks": {t: 25 for t in tasks}}]}

    def by_seed(start: float, step: float) -> dict:
        return {s: {lv: start - step * k + 0.01 * int(s) for k, lv in enumerate(levels)} for s in seeds}

    comparison = cka_references(by_seed(0.95, 0.08), by_seed(0.99, 0.02), by_seed(0.05, 0.005), by_seed(0.94, 0.08),
                                levels)
    lesion = {t: {"shared_segments": 30 + i % 5, "trained_top1": 0.75 + 0.01 * i, "reset_top1": 0.1 + 0.01 * i,
                  "change": -0.65, "trained_top5": 0.95, "reset_top5": 0.5, "samples": 1000}
              for i, t in enumerate(tasks)}
    return {"results": results, "curves": curves, "cka": cka, "comparison": comparison,
            "lesion": lesion_summary({"1": lesion}, tasks), "transfer": transfer(results, baseline, tasks)}


@pytest.mark.parametrize("name", ["accuracy", "curves", "cka", "cka_references", "lesion", "transfer"])
def test_run_figures_are_readable_at_ten_tasks(name, paper):
    tasks, levels = paper["tasks"], [lv["name"] for lv in paper["levels"]]
    d = _paper_run_sections(tasks, levels)
    fig = {
        "accuracy": lambda: figures.accuracy_bars(d["results"], tasks),
        "curves": lambda: figures.learning_curves(d["curves"], tasks),
        "cka": lambda: figures.cka_grid(d["cka"]),
        "cka_references": lambda: figures.cka_references(d["comparison"]),
        "lesion": lambda: figures.lesion_bars(d["lesion"], tasks),
        "transfer": lambda: figures.transfer_bars(d["transfer"], tasks),
    }[name]()
    assert text_problems(fig) == []


def test_cka_grid_has_one_panel_per_level_and_one_shared_colour_bar(paper):
    tasks, levels = paper["tasks"], [lv["name"] for lv in paper["levels"]]
    fig = figures.cka_grid(_paper_run_sections(tasks, levels)["cka"])
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title().startswith("level ")]
    assert [ax.get_title() for ax in panels] == [f"level {lv}" for lv in levels]
    assert {im.get_clim() for ax in panels for im in ax.get_images()} == {(0, 1)}
    colour_bars = [ax for ax in fig.axes if ax.get_ylabel() == "linear CKA"]
    assert len(colour_bars) == 1
    assert [t.get_text() for t in panels[0].get_yticklabels()] == tasks
