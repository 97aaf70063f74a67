"""Train stage, seed groups: one run per train seed of the same network (`partc train --seeds 1,2,3`).

    train_group(net, out_dir, seeds, ...) -> {seed: results}   (runs GROUP/seed-N, GROUP/group.json)
    run_group(out_dir, seeds, run_one, about, resume=...)   -> the loop over seeds any command can reuse

What varies between the members of a group is the train seed alone: initial
weights, the order of the training data and augmentation draws. The network
seed stays the spec's, so every member has the same paths (it is the same
network) and the same data splits (`partc.data.splits` keys samples by the
network seed): a member of a shared group and the member of its no-sharing
group with the same seed are trained and tested on the same samples, and
their difference is a paired measurement. The spread over a group is the
spread over training randomness, not over test sets.

`run_group` knows nothing of training: it keeps group.json (through
`partc.run`) and calls `run_one(member_dir, seed)` for each seed, so a later
command (e.g. `partc extend`) makes groups the same way with its own
`run_one`. A group killed halfway resumes with `--resume`: finished members
are kept (their results re-read), unfinished ones resume, missing ones start.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from partc.errors import TrainError
from partc.ir import Network
from partc.run import member_dir, require_group, run_paths, write_group
from partc.stats import mean_std


def parse_seeds(text: str) -> list[int]:
    """'1,2,3' or '1..5' (or both: '1..3,10') -> sorted distinct seeds; ValueError otherwise."""
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        low, sep, high = part.partition("..")
        if not part or not low.strip().isdigit() or (sep and not high.strip().isdigit()):
            raise ValueError(f"expected seeds like 1,2,3 or 1..5, got '{text}'")
        lo, hi = int(low), int(high) if sep else int(low)
        if hi < lo:
            raise ValueError(f"seed range {part} runs backwards")
        if hi - lo >= 1000:
            raise ValueError(f"seed range {part} holds more than 1000 seeds")
        seeds.update(range(lo, hi + 1))
    return sorted(seeds)


def train_group(net: Network, out_dir: str | Path | None, seeds: list[int], *, resume: bool = False,
                no_sharing: bool = False, data_root: str | Path | None = None, quiet: bool = False,
                **options: Any) -> dict[int, dict]:
    """Train `net` once per seed into out_dir/seed-N; `options` go to `partc.train.train` (device, epochs, mode)."""
    from partc.data.load import load_all
    from partc.train.nosharing import SUFFIX
    from partc.train.runner import train

    out = Path(out_dir) if out_dir is not None else Path("runs") / (net.name + (SUFFIX if no_sharing else ""))
    about = {"network": net.name + (SUFFIX if no_sharing else ""), "source_network": net.name,
             "source_spec_hash": net.spec_hash, "no_sharing": no_sharing}
    data = load_all(net, data_root=data_root)  # once for all seeds: the splits do not depend on the seed

    def run_one(member: Path, seed: int) -> dict:
        return train(net, member, resume=resume and run_paths(member)["info"].is_file(), quiet=quiet,
                     no_sharing=no_sharing, data=data, seed=seed, **options)

    results = run_group(out, seeds, run_one, about, resume=resume, quiet=quiet)
    if not quiet:
        sys.stdout.write(group_table(about["network"], results))
    return results


def run_group(out_dir: str | Path, seeds: list[int], run_one: Callable[[Path, int], dict], about: dict[str, Any], *,
              resume: bool = False, quiet: bool = True) -> dict[int, dict]:
    """Call run_one(out/seed-N, N) for every seed, keeping group.json; {seed: its results}.

    `about` says what the group is (network, source_spec_hash, no_sharing, ...); a resumed group
    must be the same (its source spec hash), and gains any new seeds.
    """
    out = Path(out_dir)
    if not seeds:
        raise TrainError("a seed group needs at least one seed", hint="e.g. --seeds 1,2,3")
    if resume:
        if not out.is_dir():
            raise TrainError(f"seed group '{out}' does not exist", hint="start it without --resume")
        recorded = require_group(out)
        if recorded.get("source_spec_hash") != about.get("source_spec_hash"):
            raise TrainError(f"seed group '{out}' was trained from another spec (spec hash "
                             f"{recorded.get('source_spec_hash')}, this one {about.get('source_spec_hash')})",
                             hint="resume with the spec the group was started from")
        if bool(recorded.get("no_sharing")) != bool(about.get("no_sharing")):
            hint = "add --no-sharing" if recorded.get("no_sharing") else "drop --no-sharing"
            raise TrainError(f"seed group '{out}' {'is' if recorded.get('no_sharing') else 'is not'} a no-sharing baseline",
                             hint=hint)
        seeds = sorted(set(recorded["seeds"]) | set(seeds))
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainError(f"seed group '{out}' already exists and is not empty",
                         hint="pass --resume to continue it (and add seeds), or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_group(out, {**about, "seeds": seeds})  # before training: a killed group is still a group
    results = {}
    for i, seed in enumerate(seeds):
        if not quiet:
            print(f"== seed {seed} ({i + 1} of {len(seeds)}): {member_dir(out, seed)}", file=sys.stderr)
        results[seed] = run_one(member_dir(out, seed), seed)
    return results


def group_table(name: str, results: dict[int, dict]) -> str:
    """Markdown: each task's test top-1 per seed and mean +- std over seeds (printed after a group)."""
    seeds = sorted(results)
    tasks = list(next(iter(results.values()))["tasks"]) if results else []

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    def spread(values):
        mean, std = mean_std([v for v in values if v is not None])
        return f"{pct(mean)} +- {100 * std:.2f}" if std is not None else pct(mean)

    lines = [f"## {name}: test top-1 over {len(seeds)} seed(s)", "",
             "| task | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- std |",
             "|---|" + "---:|" * (len(seeds) + 1)]
    for t in tasks:
        values = [results[s]["tasks"][t]["top1"] for s in seeds]
        lines.append(f"| {t} | " + " | ".join(pct(v) for v in values) + f" | {spread(values)} |")
    means = [results[s]["mean_top1"] for s in seeds]
    lines.append("| **mean** | " + " | ".join(pct(v) for v in means) + f" | **{spread(means)}** |")
    return "\n".join(lines) + "\n"
