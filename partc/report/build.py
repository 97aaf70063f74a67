"""Report stage entry point: a run or a seed group -> report.html, PNG figures, report.json.

`build_report` gathers every section it can and records what it cannot in
`problems` (shown at the top of the HTML, printed by the CLI as warnings):
structure needs only the run's spec.part; results need metrics.jsonl or
results.json; CKA needs the trained checkpoint (its references: init.pt, and
the baseline's checkpoint); the lesion test also needs init.pt and labelled
test data; transfer needs a baseline. A seed group (`partc train --seeds`)
is reported over its members: every number is a mean over seeds with its
spread, and comparisons are paired by seed (`partc.report.compare`). Only a
missing run directory or spec.part (nothing to report on) raises, as a
`CheckpointError`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from partc.devices import pick_device
from partc.errors import CheckpointError, PartError
from partc.ir import Network
from partc.report import figures
from partc.report.analysis import cka_by_level, lesion, mean_between_tasks
from partc.report.compare import NEGLIGIBLE_CKA, cka_references, lesion_summary, transfer
from partc.report.evaldata import RANDOM_PROBE, EvalData, build_probes, load_test_data
from partc.report.html import FIGURE_TEXT, render_html
from partc.report.results import group_results, member_label
from partc.report.structure import extension, structure
from partc.run import (
    is_group,
    load_checkpoint,
    load_run_network,
    load_trained_model,
    read_group,
    read_info,
    recorded_splits,
    run_members,
    run_paths,
)
from partc.stats import mean_std

REPORT_FORMAT = "partc-report/2"
NOISE_PERMUTATIONS = 5  # row permutations averaged for the CKA noise floor


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


@dataclass
class _Members:
    """The runs a run directory or a seed group stands for, by label (the train seed)."""

    path: Path
    runs: dict[str, Path]
    group: dict[str, Any] | None

    @property
    def pairs(self) -> list[tuple[int | None, Path]]:
        return [(int(label) if label.isdigit() else None, run) for label, run in self.runs.items()]


def _members(path: Path, problems: list[str]) -> _Members:
    found, more = run_members(path)
    problems += more
    group, _ = read_group(path) if is_group(path) else (None, [])
    if is_group(path) and not found:
        raise CheckpointError(f"seed group '{path}' has no member runs", hint="train it with 'partc train --seeds'")
    return _Members(path, {member_label(seed): run for seed, run in found}, group)


def _baseline_dir(run_dir: Path, given: str | Path | None, info: dict[str, Any]) -> Path | None:
    """--baseline wins; else run.json's "baseline", read as given or relative to the run directory."""
    if given is not None:
        return Path(given)
    recorded = info.get("baseline")
    if not isinstance(recorded, str) or not recorded:
        return None
    path = Path(recorded)
    return path if path.is_absolute() or path.is_dir() else Path(os.path.normpath(run_dir / path))


def build_report(run_dir: str | Path, out_dir: str | Path, *, baseline: str | Path | None = None,
                 data_root: str | None = None, eval_data: EvalData | None = None, probe_size: int = 256,
                 device: str = "cpu", seed: int = 0) -> Report:
    """Write report.html, report.json and the PNG figures of a run or seed group into `out_dir`.

    `baseline` is a no-sharing run or seed group of the same tasks. `eval_data` replaces the
    data stage's test splits (e.g. a notebook's own held-out data); by default each task's test
    split is loaded from its spec.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    problems: list[str] = []
    members = _members(run_dir, problems)
    first = next(iter(members.runs.values()))
    net = load_run_network(first)  # no run or no spec.part: nothing to report, raises
    tasks = list(net.tasks)
    torch_device = pick_device(device)  # the rules of `partc train --device`; refused before anything is written

    info, found = read_info(first)
    problems += found
    infos = {label: read_info(run)[0] for label, run in members.runs.items()}
    for label, member_info in infos.items():
        if member_info.get("spec_hash") is not None and not net.matches_hash(member_info["spec_hash"]):
            where = f"{members.runs[label].name}: " if members.group else ""
            problems.append(f"{where}run.json names spec hash {member_info['spec_hash']}, but "
                            f"{first.name + '/' if members.group else ''}spec.part hashes to {net.spec_hash}")
    for label, member_info in infos.items():
        if isinstance(member_info.get("stopped"), dict):
            where = f"{members.runs[label].name}: " if members.group else ""
            problems.append(f"{where}training stopped early ({member_info['stopped'].get('reason')}); the run holds "
                            f"epoch {member_info['stopped'].get('kept_epoch')}, its last finite one")

    data: dict[str, Any] = {"format": REPORT_FORMAT, "run": str(run_dir), "network": net.name, "run_info": info,
                            "problems": problems, "structure": structure(net)}
    data["group"] = ({"seeds": members.group.get("seeds"), "members": {m: str(p) for m, p in members.runs.items()}}
                     if members.group else None)

    results, curves, found = group_results(members.pairs, tasks)
    problems += found
    data["results"] = results
    data["curves_member"] = next(iter(curves), None)
    data["curves"] = curves[data["curves_member"]] if curves else {}
    if isinstance(info.get("extend"), dict):  # a run `partc extend` made: inherited and new segments
        data["extension"] = extension(net, info["extend"], results)
        for lv in data["structure"]["levels"]:
            lv["status"] = data["extension"]["segments"][lv["name"]]

    baseline_dir = _baseline_dir(run_dir, baseline, info)
    base_members = None
    if baseline_dir is not None:
        base_members = _baseline(net, baseline_dir, tasks, data, problems)

    _analyse(net, members, base_members, data, problems, eval_data=eval_data, data_root=data_root,
             probe_size=probe_size, device=torch_device, seed=seed)
    _check_splits(infos, base_members, data, problems)

    not_finite = _make_finite(data)
    if not_finite:  # weights of an older run gone NaN, say: shown as missing, never written as bare NaN
        problems.append(f"{not_finite} number(s) of the analysis were NaN or infinite; shown as missing")
    data["summary"] = summarise(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir, data)
    report.figures = _draw(data, tasks, out_dir)
    data["figures"] = {name: path.name for name, path in report.figures.items()}
    report.json.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    report.html.write_text(render_html(data, report.figures), encoding="utf-8")
    return report


def _make_finite(value: Any) -> int:
    """Replace, in place, every NaN or infinite float inside `value`'s dicts and lists by None; how many."""
    count = 0
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in list(items):
        if isinstance(item, float) and not math.isfinite(item):
            value[key] = None
            count += 1
        elif isinstance(item, (dict, list)):
            count += _make_finite(item)
        elif isinstance(item, tuple):
            value[key] = list(item)
            count += _make_finite(value[key])
    return count


def _baseline(net: Network, baseline_dir: Path, tasks: list[str], data: dict[str, Any],
              problems: list[str]) -> _Members | None:
    """The baseline's results and the transfer comparison; the baseline's members for the CKA reference."""
    if not baseline_dir.is_dir():
        problems.append(f"baseline run '{baseline_dir}' does not exist")
        return None
    found: list[str] = []
    try:
        base = _members(baseline_dir, found)
    except PartError as e:
        problems.append(f"baseline: {e.message}")
        return None
    results, _, more = group_results(base.pairs, tasks)
    # The baseline lends its final test table; its metrics file matters only when that table is missing.
    problems += [f"baseline: {p}" for p in found + (more if results["source"] != "results.json" else [])]
    data["baseline"] = {"run": str(baseline_dir), "kind": "seed group" if base.group else "run",
                        "members": list(base.runs), "source": results["source"], "results": results}
    if not results["tasks"]:
        problems.append(f"baseline '{baseline_dir}' has no test accuracy for any task of this run")
    else:
        data["transfer"] = transfer(data["results"], results, tasks)
    for run in base.runs.values():
        source_hash = read_info(run)[0].get("source_spec_hash")
        if source_hash is not None and not net.matches_hash(source_hash):
            problems.append(f"baseline '{run}' was made from another spec (spec hash {source_hash}, "
                            f"this run's is {net.spec_hash})")
            break
    return base


def _analyse(net: Network, members: _Members, base: _Members | None, data: dict[str, Any], problems: list[str], *,
             eval_data: EvalData | None, data_root: str | None, probe_size: int, device: torch.device,
             seed: int) -> None:
    """The sections that need weights: CKA with its references, and the lesion test, for every member."""
    loaded = {}
    for label, run in members.runs.items():
        try:
            _, model, state = load_trained_model(run)
        except PartError as e:
            where = f"{run.name}: " if members.group else ""
            problems.append(f"{where}trained weights unavailable, no CKA or lesion test: {e.message}")
            continue
        loaded[label] = (run, model.to(device), state)
    if not loaded:
        return
    first_run, _, first_state = next(iter(loaded.values()))
    data["checkpoint"] = {"file": str(run_paths(first_run)["last"]), "epoch": first_state.get("epoch")}

    evaluation = eval_data if eval_data is not None else load_test_data(net, data_root)
    problems += evaluation.problems
    data["evaluation_data"] = {"source": evaluation.source, "digests": evaluation.digests,
                               "test_samples": {t: len(d.y) for t, d in evaluation.tests.items()}}
    probes = build_probes(net, evaluation, size=probe_size, seed=seed)
    random_inputs = [p.input for p in probes if p.kind == RANDOM_PROBE]
    if random_inputs:
        problems.append(f"CKA probe: random normal inputs for input(s) {', '.join(random_inputs)} (no test data); "
                        "similarities describe the network, not the tasks' data")

    trained, init, lesions = {}, {}, {}
    for label, (run, model, _) in loaded.items():
        trained[label] = cka_by_level(net, model, probes, device, permutations=NOISE_PERMUTATIONS, seed=seed)
        try:
            init_state = load_checkpoint(run_paths(run)["init"], net)["model"]
        except (PartError, KeyError) as e:
            where = f"{run.name}: " if members.group else ""
            problems.append(f"{where}initial weights unavailable, no untrained reference or lesion test: "
                            f"{getattr(e, 'message', e)}")
            continue
        lesions[label] = lesion(net, model, init_state, evaluation, device)
        model.load_state_dict(init_state)  # the same network untrained: the first reference
        init[label] = cka_by_level(net, model, probes, device)
    baseline = _baseline_cka(base, probes, device, problems) if base is not None else None

    cka = _combine_cka(trained)
    cka["seeds"] = list(trained)
    cka["references"] = {"init": _combine_cka(init) if init else None,
                         "noise_floor": {**_combine_cka({m: c["noise_floor"] for m, c in trained.items()}),
                                         "permutations": NOISE_PERMUTATIONS},
                         "baseline": _combine_cka(baseline) if baseline else None}
    if init:
        cka["comparison"] = cka_references(
            {m: c["mean_between_tasks"] for m, c in trained.items()}, {m: c["mean_between_tasks"] for m, c in init.items()},
            {m: c["noise_floor"]["mean_between_tasks"] for m, c in trained.items()},
            {m: c["mean_between_tasks"] for m, c in baseline.items()} if baseline else None, [lv.name for lv in net.levels])
    data["cka"] = {**trained[next(iter(trained))], **cka}
    data["cka"].pop("noise_floor", None)
    if lesions:
        data["lesion"] = lesion_summary(lesions, list(net.tasks))
        missing = [t for t in net.tasks if t not in data["lesion"]]
        if missing:
            problems.append(f"lesion test skipped for task(s) without test data: {', '.join(missing)}")


def _baseline_cka(base: _Members, probes, device: torch.device, problems: list[str]) -> dict[str, Any] | None:
    """The tasks' CKA in the no-sharing baseline, on the same probe (its tasks are this run's, by name)."""
    out = {}
    for label, run in base.runs.items():
        try:
            base_net, model, _ = load_trained_model(run)
        except PartError as e:
            problems.append(f"baseline {run.name}: trained weights unavailable, no baseline CKA: {e.message}")
            continue
        if any(t not in base_net.tasks for p in probes for t in p.tasks):
            problems.append(f"baseline '{run}' lacks tasks of this run: no baseline CKA")
            return None
        out[label] = cka_by_level(base_net, model.to(device), probes, device)
    return out or None


def _combine_cka(by_member: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Matrices averaged over members (cell by cell), the mean between tasks per level, and each member's."""
    first = next(iter(by_member.values()))
    matrices = {}
    for level, matrix in first["matrices"].items():
        matrices[level] = [[mean_std([c["matrices"][level][i][j] for c in by_member.values()
                                      if c["matrices"][level][i][j] is not None])[0]
                            for j in range(len(row))] for i, row in enumerate(matrix)]
    by_seed = {m: c["mean_between_tasks"] for m, c in by_member.items()}
    return {"matrices": matrices, "mean_between_tasks": mean_between_tasks(matrices), "by_seed": by_seed}


def _check_splits(infos: dict[str, dict], base: _Members | None, data: dict[str, Any], problems: list[str]) -> None:
    """Every run compared here saw the splits evaluated here: same sample digests (run.json "splits")."""
    now = data.get("evaluation_data", {}).get("digests", {})
    runs = dict(infos)
    if base is not None:
        runs.update({f"baseline {label}": read_info(run)[0] for label, run in base.runs.items()})
    for label, info in runs.items():
        if not info:
            continue
        who = label if label.startswith("baseline") else ("run" if len(infos) == 1 else f"seed {label}")
        try:
            recorded = recorded_splits(info)
        except CheckpointError as e:
            problems.append(f"{who}: {e.message}; its splits cannot be compared with those evaluated here")
            continue
        if recorded is None:
            problems.append(f"{who}: trained before partc split data by sample: its test split is not the one "
                            "evaluated here, and tasks sharing classes may have trained on each other's test samples")
            continue
        differ = sorted(t for t, d in (recorded.get("digests") or {}).items() if t in now and now[t] != d)
        if differ:
            problems.append(f"{who}: the splits of task(s) {', '.join(differ)} differ from those evaluated here "
                            "(the data changed since it was trained)")


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    """The few numbers that answer "what do my tasks share, and does the sharing help?", and their words."""
    params = data["structure"]["params"].values()
    results = data["results"]
    summary: dict[str, Any] = {
        "mean_shared_fraction": mean_std([p["shared"] / p["total"] for p in params if p["total"]])[0],
        "mean_top1": results.get("mean_top1"), "mean_top1_std": results.get("mean_top1_std"),
        "seeds": len(results.get("mean_top1_by_seed") or {}),
    }
    lesions = [m["change"] for m in data.get("lesion", {}).values() if m["shared_segments"]]
    summary["mean_reset_change"] = mean_std(lesions)[0]
    if data.get("transfer"):
        overall = data["transfer"]["overall"]
        summary["transfer"] = {"mean": overall["mean"], "ci": overall["ci"], "n": overall["n"],
                               "verdict": overall["verdict"]}
    comparison = data.get("cka", {}).get("comparison")
    if comparison:
        levels = comparison["levels"]
        summary["cka_levels_above_baseline"] = [lv for lv, r in levels.items()
                                                if r.get("vs_baseline", {}).get("direction") == "above"
                                                and r["vs_baseline"]["mean"] >= NEGLIGIBLE_CKA]
        summary["cka_levels_at_or_below_init"] = [lv for lv, r in levels.items() if r["vs_init"]["mean"] is not None
                                                  and r["vs_init"]["mean"] <= 0]
    return summary


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
    if data.get("cka", {}).get("comparison"):
        plans.append(("cka_references", lambda: figures.cka_references(data["cka"]["comparison"])))
    if data.get("lesion"):
        plans.append(("lesion", lambda: figures.lesion_bars(data["lesion"], tasks)))
    if (data.get("transfer") or {}).get("tasks"):
        plans.append(("transfer", lambda: figures.transfer_bars(data["transfer"], tasks)))
    written = {}
    for name, draw in plans:
        written[name] = figures.save(draw(), out_dir / f"{name}.png")
    for name in (FIGURE_TEXT.keys() | {"baseline"}) - written.keys():  # figures of an earlier report in the folder
        (out_dir / f"{name}.png").unlink(missing_ok=True)
    return written
