"""Report stage entry point: a run directory -> report.html, PNG figures, report.json.

`build_report` gathers every section it can and records what it cannot in
`problems` (shown at the top of the HTML, printed by the CLI as warnings):
structure needs only the run's spec.part; results need metrics.jsonl or
results.json; CKA needs the trained checkpoint; transfer also needs
checkpoints/init.pt and labelled test data. Only a missing run directory or
spec.part (nothing to report on) raises, as a `CheckpointError`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from partc.devices import pick_device
from partc.errors import PartError
from partc.ir import Network
from partc.report import figures
from partc.report.analysis import cka_by_level, transfer
from partc.report.evaldata import RANDOM_PROBE, EvalData, build_probes, load_test_data
from partc.report.html import FIGURE_TEXT, render_html
from partc.report.results import baseline_comparison, run_results
from partc.report.structure import extension, structure
from partc.run import load_checkpoint, load_run_network, load_trained_model, read_info, run_paths

REPORT_FORMAT = "partc-report/1"


@dataclass
class Report:
    out_dir: Path
    data: dict[str, Any]
    figures: dict[str, Path] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        return self.data["problems"]

    @property
    def html(self) -> Path:
        return self.out_dir / "report.html"

    @property
    def json(self) -> Path:
        return self.out_dir / "report.json"


def _baseline_dir(run_dir: Path, given: str | Path | None, info: dict[str, Any]) -> Path | None:
    """--baseline wins; else run.json's "baseline", read as given or relative to the run directory."""
    if given is not None:
        return Path(given)
    recorded = info.get("baseline")
    if not isinstance(recorded, str) or not recorded:
        return None
    path = Path(recorded)
    return path if path.is_absolute() or path.is_dir() else Path(os.path.normpath(run_dir / path))


def _cka_summary(cka: dict[str, Any]) -> dict[str, float | None]:
    """Mean CKA over distinct task pairs at each level: how alike the tasks' representations are."""
    means = {}
    for level, matrix in cka["matrices"].items():
        values = [v for i, row in enumerate(matrix) for j, v in enumerate(row) if i < j and v is not None]
        means[level] = sum(values) / len(values) if values else None
    return means


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    """The few numbers that answer "what do my tasks share, and does the sharing help?"."""
    params = data["structure"]["params"].values()
    summary: dict[str, Any] = {
        "mean_shared_fraction": _mean([p["shared"] / p["total"] for p in params if p["total"]]),
        "mean_top1": data["results"].get("mean_top1"),
    }
    means = {lv: v for lv, v in data.get("cka", {}).get("mean_between_tasks", {}).items() if v is not None}
    if means:
        summary["cka_most_alike_level"] = max(means, key=means.get)
        summary["cka_least_alike_level"] = min(means, key=means.get)
    sharing = [m["change"] for m in data.get("transfer", {}).values() if m["shared_segments"]]
    summary["mean_reset_change"] = _mean(sharing)
    summary["mean_baseline_difference"] = _mean([m["difference"] for m in (data.get("baseline") or {}).get("tasks", {}).values()])
    return summary


def build_report(run_dir: str | Path, out_dir: str | Path, *, baseline: str | Path | None = None,
                 data_root: str | None = None, eval_data: EvalData | None = None, probe_size: int = 256,
                 device: str = "cpu", seed: int = 0) -> Report:
    """Write report.html, report.json and the PNG figures of a run into `out_dir`.

    `eval_data` replaces the data stage's test splits (e.g. a notebook's own
    held-out data); by default each task's test split is loaded from its spec.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    net = load_run_network(run_dir)  # no run or no spec.part: nothing to report, raises
    tasks = list(net.tasks)
    torch_device = pick_device(device)  # the rules of `partc train --device`; refused before anything is written
    problems: list[str] = []

    info, found = read_info(run_dir)
    problems += found
    if info.get("spec_hash") is not None and not net.matches_hash(info["spec_hash"]):
        problems.append(f"run.json names spec hash {info['spec_hash']}, but spec.part hashes to {net.spec_hash}")

    data: dict[str, Any] = {"format": REPORT_FORMAT, "run": str(run_dir), "network": net.name,
                            "run_info": info, "problems": problems, "structure": structure(net)}

    results, curves, found = run_results(run_dir, tasks)
    problems += found
    data["results"], data["curves"] = results, curves
    if isinstance(info.get("extend"), dict):
        data["extension"] = extension(net, info["extend"], results)
        for lv in data["structure"]["levels"]:
            lv["status"] = data["extension"]["segments"][lv["name"]]

    _analyse(net, run_dir, data, problems, eval_data=eval_data, data_root=data_root, probe_size=probe_size,
             device=torch_device, seed=seed)

    baseline_dir = _baseline_dir(run_dir, baseline, info)
    if baseline_dir is not None:
        data["baseline"], found = baseline_comparison(results, baseline_dir, tasks, net)
        problems += found

    data["summary"] = summarise(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir, data)
    report.figures = _draw(data, tasks, out_dir)
    data["figures"] = {name: path.name for name, path in report.figures.items()}
    report.json.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    report.html.write_text(render_html(data, report.figures), encoding="utf-8")
    return report


def _analyse(net: Network, run_dir: Path, data: dict[str, Any], problems: list[str], *, eval_data: EvalData | None,
             data_root: str | None, probe_size: int, device: torch.device, seed: int) -> None:
    """The sections that need weights: CKA (last.pt + data) and transfer (also init.pt)."""
    try:
        _, model, state = load_trained_model(run_dir)
    except PartError as e:
        problems.append(f"trained weights unavailable, no CKA or transfer: {e.message}")
        return
    model.to(device)
    data["checkpoint"] = {"file": str(run_paths(run_dir)["last"]), "epoch": state.get("epoch")}
    init_state = None
    try:
        init_state = load_checkpoint(run_paths(run_dir)["init"], net)["model"]
    except (PartError, KeyError) as e:
        problems.append(f"initial weights unavailable, no transfer: {getattr(e, 'message', e)}")

    evaluation = eval_data if eval_data is not None else load_test_data(net, data_root)
    problems += evaluation.problems
    data["evaluation_data"] = {"source": evaluation.source,
                               "test_samples": {t: len(d.y) for t, d in evaluation.tests.items()}}
    probes = build_probes(net, evaluation, size=probe_size, seed=seed)
    random_inputs = [p.input for p in probes if p.kind == RANDOM_PROBE]
    if random_inputs:
        problems.append(f"CKA probe: random normal inputs for input(s) {', '.join(random_inputs)} (no test data); "
                        "similarities describe the network, not the tasks' data")
    data["cka"] = cka_by_level(net, model, probes, device)
    data["cka"]["mean_between_tasks"] = _cka_summary(data["cka"])
    if init_state is not None:
        data["transfer"] = transfer(net, model, init_state, evaluation, device)
        missing = [t for t in net.tasks if t not in data["transfer"]]
        if missing:
            problems.append(f"transfer skipped for task(s) without test data: {', '.join(missing)}")


def _draw(data: dict[str, Any], tasks: list[str], out_dir: Path) -> dict[str, Path]:
    """Every figure whose numbers exist, as out_dir/NAME.png."""
    plans = [
        ("usage", lambda: figures.usage_map(data["structure"])),
        ("sharing", lambda: figures.sharing_matrices(data["structure"])),
        ("sharing_by_level", lambda: figures.sharing_by_level(data["structure"])),
        ("params", lambda: figures.param_split(data["structure"])),
    ]
    if data["results"]["tasks"]:
        plans.append(("accuracy", lambda: figures.accuracy_bars(data["results"], tasks)))
    if data["curves"]:
        plans.append(("curves", lambda: figures.learning_curves(data["curves"], tasks)))
    if data.get("cka", {}).get("probes"):
        plans.append(("cka", lambda: figures.cka_grid(data["cka"])))
    if data.get("transfer"):
        plans.append(("transfer", lambda: figures.transfer_bars(data["transfer"], tasks)))
    if (data.get("baseline") or {}).get("tasks"):
        plans.append(("baseline", lambda: figures.baseline_bars(data["baseline"], tasks)))
    written = {}
    for name, draw in plans:
        written[name] = figures.save(draw(), out_dir / f"{name}.png")
    for name in FIGURE_TEXT.keys() - written.keys():  # a figure of an earlier report in the same folder
        (out_dir / f"{name}.png").unlink(missing_ok=True)
    return written
