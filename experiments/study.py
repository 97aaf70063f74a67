"""The sharing study: does routing digits tasks through shared segments help, and when?

    python3 experiments/study.py                 # train what is missing, then write docs/STUDY.md's tables
    python3 experiments/study.py --table-only    # only rewrite the tables from experiments/results/study.jsonl
    python3 experiments/study.py --family pairs --limit 10   # one setting

Four families of tasks on scikit-learn's digits (`FAMILIES`), each at
limit= 10, 20 and 50 training samples per task, each trained as three seed
groups of the same seeds: `shared` (the spec as written, fused), `nosharing`
(`partc train --no-sharing`: every task on private copies of its path) and
`interleaved` (the spec, the paper's interleaved schedule). All three share
the network seed, so paths and data splits are the same; the train seed
varies initial weights and data order. Runs go to runs/study/ (ignored by
git); each finished group appends one row per seed to
experiments/results/study.jsonl, so a killed study resumes where it stopped
(groups already in the file are skipped, a half-trained group resumes).

The comparisons are paired by seed with 95% t intervals (partc.stats), the
same computation `partc report --baseline` makes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "experiments" / "results" / "study.jsonl"
RUNS = ROOT / "runs" / "study"
STUDY_MD = ROOT / "docs" / "STUDY.md"
SEEDS = [1, 2, 3]
LIMITS = [10, 20, 50]
VARIANTS = ["shared", "nosharing", "interleaved"]
STEPS = 100  # optimizer steps per task in every setting: epochs = STEPS / steps per epoch
BATCH = 5
LABEL_NOISE = 0.2

PAIRS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
FAMILIES = {
    # name: (what it is, [(task, classes)], extra data options)
    "pairs": ("five disjoint binary pairs (no class in two tasks)", [(f"d{a}{b}", [a, b]) for a, b in PAIRS], ""),
    "halves": ("the two 5-class halves (disjoint)", [("low", [0, 1, 2, 3, 4]), ("high", [5, 6, 7, 8, 9])], ""),
    "overlap": ("five 5-class tasks, each sharing 3 classes with each neighbour",
                [(f"o{k}", [(2 * k + i) % 10 for i in range(5)]) for k in range(5)], ""),
    "noisy": ("the five binary pairs with 20% of each class's training labels wrong",
              [(f"d{a}{b}", [a, b]) for a, b in PAIRS], f", label_noise={LABEL_NOISE}"),
}


def spec_text(family: str, limit: int) -> str:
    """A small PaRT network: 3 levels of 6 segments, each task on 2 of them per level."""
    _, tasks, extra = FAMILIES[family]
    steps_per_epoch = -(-limit // min(BATCH, limit))
    epochs = -(-STEPS // steps_per_epoch)
    lines = [f"network study_{family}_{limit} {{", "  input digit: float[1, 8, 8]", "  seed 7", "",
             "  segment block(c) { conv(c, k=3, pad=1); batchnorm; relu }", "",
             "  level l1 = 6 x block(16)",
             "  level l2 = 6 x block(16) residual then maxpool(2)",
             "  level l3 = 6 x block(32) then avgpool", ""]
    for name, classes in tasks:
        lines.append(f"  task {name} {{ data digits(classes={classes}, limit={limit}{extra}) path random(2) }}")
    lines += ["", f"  train {{ epochs {epochs}; batch {BATCH}; optimizer adam(lr=2e-3); schedule cosine }}", "}"]
    return "\n".join(lines) + "\n"


def done_groups() -> set[tuple[str, int, str]]:
    if not RESULTS.is_file():
        return set()
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    seeds: dict[tuple, set] = {}
    for r in rows:
        seeds.setdefault((r["family"], r["limit"], r["variant"]), set()).add(r["seed"])
    return {key for key, found in seeds.items() if found >= set(SEEDS)}


def train_setting(family: str, limit: int, done: set) -> None:
    import partc
    from partc.run import is_group
    from partc.train.seeds import train_group

    spec = RUNS / f"{family}_{limit}.part"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(spec_text(family, limit), encoding="utf-8")
    net = partc.load(spec)
    for variant in VARIANTS:
        if (family, limit, variant) in done:
            continue
        out = RUNS / f"{family}_{limit}_{variant}"
        began = time.perf_counter()
        results = train_group(net, out, SEEDS, resume=is_group(out), device="cpu", quiet=True,
                              no_sharing=variant == "nosharing", mode="interleaved" if variant == "interleaved" else None)
        seconds = time.perf_counter() - began
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a", encoding="utf-8") as f:
            for seed, r in sorted(results.items()):
                f.write(json.dumps({"family": family, "limit": limit, "variant": variant, "seed": seed,
                                    "mean_top1": r["mean_top1"], "tasks": {t: v["top1"] for t, v in r["tasks"].items()},
                                    "group_seconds": round(seconds, 1)}) + "\n")
        print(f"{family} limit={limit} {variant}: mean top-1 "
              + ", ".join(f"{100 * r['mean_top1']:.1f}%" for _, r in sorted(results.items()))
              + f" ({seconds:.0f} s)", flush=True)


# ---- tables ---------------------------------------------------------------------------------------

def load_rows() -> list[dict]:
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()] if RESULTS.is_file() else []


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _diff(result: dict) -> str:
    from partc.stats import undetected

    if result["mean"] is None:
        return "-"
    text = f"{100 * result['mean']:+.1f} [{100 * result['ci'][0]:+.1f}, {100 * result['ci'][1]:+.1f}]" \
        if result["ci"] else f"{100 * result['mean']:+.1f}"
    word = {"above": "**helps**", "below": "**hurts**"}.get(result["direction"], undetected(result["n"]).replace(
        "no detectable difference", "n.d."))
    return f"{text} {word}"


def tables(rows: list[dict]) -> tuple[str, dict]:
    """The study's main table (markdown) and the per-task counts of verdicts."""
    from partc.stats import mean_std, paired

    def by_seed(family, limit, variant, task=None):
        return {r["seed"]: (r["mean_top1"] if task is None else r["tasks"][task]) for r in rows
                if (r["family"], r["limit"], r["variant"]) == (family, limit, variant)}

    lines = ["| family | limit | shared | no sharing | interleaved | shared - no sharing [95% CI] | "
             "interleaved - no sharing [95% CI] |", "|---|---:|---:|---:|---:|---|---|"]
    counts = {"shared": {"above": 0, "below": 0, "unclear": 0}, "interleaved": {"above": 0, "below": 0, "unclear": 0}}
    seed_wins = {"shared": [0, 0, 0], "interleaved": [0, 0, 0]}  # won, lost, tied: single seeds, as in the issue
    for family in FAMILIES:
        for limit in LIMITS:
            groups = {v: by_seed(family, limit, v) for v in VARIANTS}
            if not all(len(g) == len(SEEDS) for g in groups.values()):
                continue
            cells = []
            for v in VARIANTS:
                mean, std = mean_std(list(groups[v].values()))
                cells.append(f"{_pct(mean)} ± {_pct(std)}")
            diffs = [_diff(paired(groups[v], groups["nosharing"])) for v in ("shared", "interleaved")]
            lines.append(f"| {family} | {limit} | " + " | ".join(cells) + " | " + " | ".join(diffs) + " |")
            tasks = next(r["tasks"] for r in rows if (r["family"], r["limit"]) == (family, limit))
            for v in ("shared", "interleaved"):
                for task in tasks:
                    result = paired(by_seed(family, limit, v, task), by_seed(family, limit, "nosharing", task))
                    counts[v][result["direction"]] += 1
                for seed in SEEDS:
                    d = groups[v][seed] - groups["nosharing"][seed]
                    seed_wins[v][0 if d > 1e-9 else 1 if d < -1e-9 else 2] += 1
    return "\n".join(lines) + "\n", {"per_task": counts, "single_seeds": seed_wins}


def write_tables(rows: list[dict]) -> None:
    """Replace the generated block of docs/STUDY.md (between its markers) with the current tables."""
    table, counts = tables(rows)
    c, w = counts["per_task"], counts["single_seeds"]
    block = [table, "",
             "Per-task verdicts over all settings (paired over 3 seeds, 95% t interval):", "",
             "| variant vs no sharing | helps | hurts | no detectable difference |", "|---|---:|---:|---:|"]
    for v in ("shared", "interleaved"):
        block.append(f"| {v} | {c[v]['above']} | {c[v]['below']} | {c[v]['unclear']} |")
    block += ["", "Single runs judged on their own (one seed against the same seed without sharing, mean over tasks), "
              "as a one-run comparison would:", "",
              "| variant vs no sharing | won | lost | tied |", "|---|---:|---:|---:|"]
    for v in ("shared", "interleaved"):
        block.append(f"| {v} | {w[v][0]} | {w[v][1]} | {w[v][2]} |")
    seconds = sum(r["group_seconds"] for r in rows) / len(SEEDS) if rows else 0
    block += ["", f"{len(rows)} runs; {seconds / 60:.0f} min of training in all on the machine below."]
    text = STUDY_MD.read_text(encoding="utf-8")
    start, end = "<!-- study table: written by experiments/study.py -->", "<!-- end of study table -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    STUDY_MD.write_text(head + start + "\n" + "\n".join(block) + "\n" + end + tail, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--family", choices=list(FAMILIES))
    parser.add_argument("--limit", type=int, choices=LIMITS)
    args = parser.parse_args()
    if not args.table_only:
        import torch

        torch.set_num_threads(1)  # a tiny network on a shared machine: one thread is fastest
        print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        done = done_groups()
        for family in [args.family] if args.family else FAMILIES:
            for limit in [args.limit] if args.limit else LIMITS:
                train_setting(family, limit, done)
    write_tables(load_rows())
    print(f"wrote {STUDY_MD}")


if __name__ == "__main__":
    main()
