"""Report, comparisons: a run's numbers against their references, over seeds, in numbers and in words.

- `transfer`: each task's test top-1 with sharing against the no-sharing
  baseline, paired by train seed (the members of both groups with the same
  seed saw the same data splits and the same data order); the mean paired
  difference, its t interval, and a verdict only when the interval excludes
  zero.
- `cka_references`: at every level, the tasks' mean between-task CKA of the
  trained network against three references on the same probe: the untrained
  network (init.pt: what the architecture and the input give for free), the
  no-sharing baseline (what training without sharing gives), and the noise
  floor (one side's samples permuted: what unrelated samples give).
- `lesion_summary`: the reset test over seeds.

Every statement says what its numbers support and nothing more; with n = 3
seeds an interval is wide, and the words say so.
"""

from __future__ import annotations

from typing import Any

from partc.stats import LEVEL, mean_std, paired, undetected

VERDICTS = {"above": "sharing helps", "below": "sharing hurts"}
NEGLIGIBLE_CKA = 0.02  # a CKA difference smaller than this is called negligible, even when its interval excludes zero


def _pt(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f} pt"


def interval_text(result: dict[str, Any], scale: float = 100.0, unit: str = " pt", digits: int = 1) -> str:
    """A paired difference with its interval: "+1.2 pt [-0.3, +2.7]" (accuracies), "+0.02 [-0.01, +0.05]" (CKA)."""
    mean = result.get("mean")
    if mean is None:
        return "-"
    text = f"{scale * mean:+.{digits}f}{unit}"
    if result.get("ci") is not None:
        low, high = (scale * v for v in result["ci"])
        text += f" [{low:+.{digits}f}, {high:+.{digits}f}]"
    return text


def accuracy_verdict(result: dict[str, Any]) -> str:
    """The words for a paired accuracy difference (with sharing minus without)."""
    if not result["pairs"]:
        return "no seed in common with the baseline: nothing to pair, no verdict"
    return VERDICTS.get(result["direction"], undetected(result["n"]))


def transfer(results: dict[str, Any], baseline: dict[str, Any], tasks: list[str]) -> dict[str, Any]:
    """Per task and overall: top-1 with sharing minus without, paired by seed, with its interval and verdict."""
    out: dict[str, Any] = {"level": LEVEL, "tasks": {}}
    for task in tasks:
        here, there = results["tasks"].get(task), baseline["tasks"].get(task)
        if here is None or there is None:
            continue
        result = paired(here["top1_by_seed"], there["top1_by_seed"])
        out["tasks"][task] = {**result, "top1": here["top1"], "top1_std": here["top1_std"],
                              "baseline_top1": there["top1"], "baseline_top1_std": there["top1_std"],
                              "verdict": accuracy_verdict(result)}
    overall = paired(results["mean_top1_by_seed"], baseline["mean_top1_by_seed"])
    out["overall"] = {**overall, "top1": results["mean_top1"], "baseline_top1": baseline["mean_top1"],
                      "verdict": accuracy_verdict(overall)}
    out["pairs"] = overall["pairs"]
    out["statements"] = _transfer_statements(out)
    return out


def _transfer_statements(t: dict[str, Any]) -> list[str]:
    overall, n = t["overall"], t["overall"]["n"]
    level = f"{round(100 * t['level'])}%"
    lines = [f"Mean test top-1 over tasks, with sharing minus without: {interval_text(overall)}"
             + (f" ({level} t interval over {n} paired seeds)" if overall["ci"] is not None else "")
             + f": {overall['verdict']}."]
    helped = [task for task, r in t["tasks"].items() if r["direction"] == "above"]
    hurt = [task for task, r in t["tasks"].items() if r["direction"] == "below"]
    unclear = [task for task in t["tasks"] if task not in helped and task not in hurt]
    if n >= 2:
        parts = []
        if helped:
            parts.append(f"sharing helps {', '.join(helped)}")
        if hurt:
            parts.append(f"sharing hurts {', '.join(hurt)}")
        if unclear:
            parts.append(f"no detectable difference for {', '.join(unclear)}")
        lines.append("Per task: " + "; ".join(parts) + ".")
        if n <= 5:
            lines.append(f"With n={n} seeds an interval is wide (a difference must be large and consistent to "
                         "exclude zero); 'no detectable difference' is not evidence that there is none.")
    return lines


def cka_references(trained: dict[str, dict[str, float | None]], init: dict[str, dict[str, float | None]],
                   noise: dict[str, dict[str, float | None]], baseline: dict[str, dict[str, float | None]] | None,
                   levels: list[str]) -> dict[str, Any]:
    """Per level: the trained mean between-task CKA and each reference, by member ({label: value}), and paired differences.

    Each argument maps a member label (the train seed) to {level: mean CKA between tasks}.
    """
    out: dict[str, Any] = {"level": LEVEL, "levels": {}}
    for level in levels:
        here, untrained, unrelated = _at(trained, level), _at(init, level), _at(noise, level)
        row: dict[str, Any] = {"trained": _spread(here), "init": _spread(untrained), "noise_floor": _spread(unrelated),
                               "vs_init": paired(here, untrained), "vs_noise_floor": paired(here, unrelated)}
        if baseline is not None:
            row["baseline"] = _spread(_at(baseline, level))
            row["vs_baseline"] = paired(here, _at(baseline, level))
        out["levels"][level] = row
    out["statements"] = _cka_statements(out["levels"], baseline is not None)
    return out


def _at(by_member: dict[str, dict[str, float | None]], level: str) -> dict[str, float | None]:
    return {m: values.get(level) for m, values in by_member.items()}


def _spread(by_member: dict[str, float | None]) -> dict[str, Any]:
    values = {m: v for m, v in by_member.items() if v is not None}
    mean, std = mean_std(list(values.values()))
    return {"mean": mean, "std": std, "by_seed": values}


def _cka(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _level_statement(level: str, row: dict[str, Any], has_baseline: bool) -> str:
    trained = row["trained"]
    n = len(trained["by_seed"])
    spread = f" (sd {trained['std']:.2f} over {n} seeds)" if trained["std"] is not None else ""
    refs = [f"untrained network {_cka(row['init']['mean'])}"]
    if has_baseline:
        refs.append(f"no-sharing baseline {_cka(row['baseline']['mean'])}")
    refs.append(f"unrelated samples {_cka(row['noise_floor']['mean'])}")
    text = f"Level {level}: mean CKA between tasks {_cka(trained['mean'])}{spread}; " + ", ".join(refs) + ". "
    if has_baseline:
        vs = row["vs_baseline"]
        diff = interval_text(vs, scale=1, unit="", digits=2)
        if vs["direction"] in ("above", "below") and abs(vs["mean"]) < NEGLIGIBLE_CKA:
            text += (f"The difference from the no-sharing baseline is detectable but negligible ({diff}, under "
                     f"{NEGLIGIBLE_CKA}): sharing does not change this similarity in any way that matters. ")
        elif vs["direction"] == "above":
            text += (f"The tasks are more alike than without sharing ({diff}): consistent with shared segments "
                     "making their representations alike here. ")
        elif vs["direction"] == "below":
            text += f"The tasks are less alike than without sharing ({diff}). "
        elif vs["direction"] == "unclear":
            text += (f"No detectable difference from the no-sharing baseline at n={vs['n']} ({diff}): this similarity "
                     "is not evidence of sharing. ")
        elif vs["pairs"]:
            text += f"Against the no-sharing baseline {diff}, from one pair of runs: no interval, no verdict. "
        else:
            text += "The baseline has no seed in common with this run: nothing to pair. "
    vs = row["vs_init"]
    diff = interval_text(vs, scale=1, unit="", digits=2)
    if vs["direction"] == "below":
        text += f"Training made the tasks less alike than the untrained network ({diff}). "
    elif vs["direction"] == "above":
        text += f"Training made them more alike than the untrained network ({diff}). "
    elif vs["direction"] == "unclear":
        text += f"No detectable change from the untrained network ({diff}). "
    elif vs["mean"] is not None:
        text += f"Against the untrained network {diff} (one run: no interval). "
    floor = row["vs_noise_floor"]
    if floor["direction"] in ("below", "unclear") or (floor["mean"] is not None and floor["mean"] < 0.05):
        text += "It is not distinguishable from unrelated samples. "
    return text.strip()


def _cka_statements(levels: dict[str, Any], has_baseline: bool) -> list[str]:
    lines = [_level_statement(level, row, has_baseline) for level, row in levels.items()]
    init_high = [lv for lv, row in levels.items() if row["init"]["mean"] is not None and row["trained"]["mean"] is not None
                 and row["init"]["mean"] >= row["trained"]["mean"]]
    if init_high:
        lines.append(f"At {', '.join(init_high)} the untrained network's tasks are at least as alike as the trained "
                     "ones: the similarity there is no more than the common input and the architecture give without "
                     "any training, so it is no sign of sharing.")
    if not has_baseline:
        lines.append("No no-sharing baseline was given (--baseline), so these numbers cannot tell what sharing does "
                     "to the representations: only how alike they are.")
    lines.append("CKA says how alike the tasks' representations of one probe are; it does not show that a task uses "
                 "another task's features, nor that sharing helps accuracy (that is the transfer comparison).")
    return lines


def lesion_summary(per_member: dict[str, dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
    """The reset test over members: per task the mean trained and reset top-1, the change, and each member's change."""
    out: dict[str, Any] = {}
    for task in tasks:
        rows = {m: r[task] for m, r in per_member.items() if task in r}
        if not rows:
            continue
        first = next(iter(rows.values()))
        changes = {m: r["change"] for m, r in rows.items()}
        mean_change, std_change = mean_std(list(changes.values()))
        out[task] = {
            "shared_segments": first["shared_segments"], "samples": first["samples"],
            "trained_top1": mean_std([r["trained_top1"] for r in rows.values()])[0],
            "reset_top1": mean_std([r["reset_top1"] for r in rows.values()])[0],
            "trained_top5": mean_std([r["trained_top5"] for r in rows.values()])[0],
            "reset_top5": mean_std([r["reset_top5"] for r in rows.values()])[0],
            "change": mean_change, "change_std": std_change, "change_by_seed": changes,
        }
    return out

