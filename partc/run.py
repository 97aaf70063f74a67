"""The run directory: what `partc train` writes and export, report and serve read; nothing else touches it.

    RUN/spec.part         the spec text as trained (its hash in run.json)
    RUN/run.json          partc version, network, spec hash, settings (`read_info`, `write_info`)
    RUN/metrics.jsonl     one JSON object per task, split and epoch (`read_metrics`, `append_metrics`)
    RUN/checkpoints/      init.pt (weights before training), epoch_NNNN.pt, last.pt
    RUN/results.json/.md  the final per-task test table (`read_results`, `write_results`)

A seed group (`partc train --seeds`) is a folder of runs of one network,
one per train seed, and a marker file:

    GROUP/group.json      format, network, spec hashes, no_sharing, seeds, members (`write_group`, `read_group`)
    GROUP/seed-N/         a run directory as above, trained with seed N (`member_dir`)

Every write is atomic (temp file in the same folder, fsync, rename), so a
killed process never leaves a half-written file behind; appends to
metrics.jsonl end in fsync, and a line cut by a kill is skipped on read.
Every read checks what it reads: a missing run directory, a truncated or
foreign file, a checkpoint of another spec raise `CheckpointError`, or, for
the readers that must go on (the report), become entries of a `problems`
list.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from partc.errors import CheckpointError
from partc.ir import Network

CHECKPOINT_FORMAT = "partc-checkpoint/1"
GROUP_FORMAT = "partc-seed-group/1"
TEMP_SUFFIX = ".tmp"


# ---- files ----------------------------------------------------------------------------------------

def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any, *, sort_keys: bool = False) -> None:
    """JSON that any parser reads: NaN or infinity is a bug in partc, refused here rather than written."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n")


def run_paths(run_dir: str | Path) -> dict[str, Path]:
    run = Path(run_dir)
    return {
        "spec": run / "spec.part",
        "info": run / "run.json",
        "metrics": run / "metrics.jsonl",
        "checkpoints": run / "checkpoints",
        "init": run / "checkpoints" / "init.pt",
        "last": run / "checkpoints" / "last.pt",
        "results": run / "results.json",
        "results_md": run / "results.md",
    }


def epoch_checkpoint(run_dir: str | Path, epoch: int) -> Path:
    return run_paths(run_dir)["checkpoints"] / f"epoch_{epoch:04d}.pt"


def remove_temp_files(run_dir: str | Path) -> None:
    """Temp files a killed writer left behind (their names come from `atomic_write_bytes`)."""
    run = Path(run_dir)
    for folder in (run, run_paths(run)["checkpoints"]):
        if folder.is_dir():
            for f in folder.glob(f".*{TEMP_SUFFIX}"):
                f.unlink(missing_ok=True)


# ---- run.json and spec.part -----------------------------------------------------------------------

@dataclass(frozen=True)
class Growth:
    """run.json's "extend" record (`partc extend`): what the run trains and keeps, so that resume,
    report and a further extension need nothing but the run directory."""

    base_run: str
    base_network: str
    base_spec_hash: str
    base_tasks: tuple[str, ...]
    new_tasks: tuple[str, ...]
    frozen_modules: tuple[str, ...]  # module paths (see partc.layers.module_path) never trained
    freeze: bool = True  # False: naive fine-tuning of everything (forgets; for comparison only)
    base_segments: dict[str, int] = field(default_factory=dict)  # level -> segments the base run had
    base_results: dict[str, Any] = field(default_factory=dict)  # the base run's results.json "tasks", if it had one

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Growth:
        return cls(d["base_run"], d["base_network"], d["base_spec_hash"], tuple(d["base_tasks"]), tuple(d["new_tasks"]),
                   tuple(d["frozen_modules"]), bool(d.get("freeze", True)), dict(d.get("base_segments", {})),
                   dict(d.get("base_results", {})))

    def segment_status(self, level: str, index: int) -> str:
        """'new' (appended by the extension), 'inherited-frozen' (a base task uses it) or 'inherited-trained'."""
        if index >= self.base_segments.get(level, 0):
            return "new"
        container = f"levels.{level}.{index}"
        frozen = any(path == container or path.startswith(container + ".") for path in self.frozen_modules)
        return "inherited-frozen" if frozen else "inherited-trained"



def write_spec(run_dir: str | Path, text: str) -> None:
    atomic_write_text(run_paths(run_dir)["spec"], text)


def write_info(run_dir: str | Path, info: dict[str, Any]) -> None:
    atomic_write_json(run_paths(run_dir)["info"], info, sort_keys=True)


def read_info(run_dir: str | Path) -> tuple[dict[str, Any], list[str]]:
    """run.json as a dict, and the problems met reading it (for readers that go on without it)."""
    path = run_paths(run_dir)["info"]
    if not path.is_file():
        return {}, [f"{path} is missing"]
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return {}, [f"{path} is not valid JSON ({e})"]
    if not isinstance(info, dict):
        return {}, [f"{path} is not a JSON object"]
    return info, []


def require_info(run_dir: str | Path) -> dict[str, Any]:
    """run.json of a run that must be whole (resume, extend): a clear error when it is not."""
    run, paths = Path(run_dir), run_paths(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"run directory '{run}' does not exist", hint="pass the --out folder of a 'partc train' run")
    if not paths["info"].is_file() or not paths["spec"].is_file():
        raise CheckpointError(f"'{run}' is not a partc run (run.json or spec.part is missing)",
                              hint="pass the --out folder of an earlier 'partc train' run")
    info, problems = read_info(run)
    if problems:
        raise CheckpointError(problems[0], hint="restore it, or start a new run")
    return info


def load_run_network(run_dir: str | Path) -> Network:
    """The checked network of a run, from the spec text saved in it."""
    from partc.spec import loads

    paths = run_paths(run_dir)
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory '{run_dir}' does not exist",
                              hint="pass the --out folder of a 'partc train' run")
    if not paths["spec"].is_file():
        raise CheckpointError(f"'{run_dir}' is not a partc run: spec.part is missing")
    return loads(paths["spec"].read_text(encoding="utf-8"), str(paths["spec"]))


# ---- metrics and results --------------------------------------------------------------------------

def append_metrics(run_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    with open(run_paths(run_dir)["metrics"], "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of metrics.jsonl and a list of problems (missing file, bad lines)."""
    path = run_paths(run_dir)["metrics"]
    if not path.is_file():
        return [], [f"{path} is missing"]
    rows, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{path}:{number}: not a JSON line")
            continue
        if not isinstance(row, dict) or not {"epoch", "task", "split"} <= set(row):
            problems.append(f"{path}:{number}: missing epoch/task/split")
            continue
        rows.append(row)
    return rows, problems


def keep_metrics_until(run_dir: str | Path, epoch: int) -> None:
    """Drop the rows of epochs after `epoch` (an unfinished epoch of a killed run) and any cut line."""
    path = run_paths(run_dir)["metrics"]
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row["epoch"] <= epoch:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def write_results(run_dir: str | Path, results: dict[str, Any], table: str) -> None:
    paths = run_paths(run_dir)
    atomic_write_json(paths["results"], results)
    atomic_write_text(paths["results_md"], table)


def read_results(run_dir: str | Path) -> tuple[dict[str, Any] | None, list[str]]:
    """results.json as a dict (None when missing or damaged), and the problems met."""
    path = run_paths(run_dir)["results"]
    if not path.is_file():
        return None, []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, [f"{path} is damaged ({type(e).__name__}); using metrics.jsonl"]
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        return None, [f"{path} is damaged (no 'tasks' table); using metrics.jsonl"]
    return data, []


# ---- checkpoints ----------------------------------------------------------------------------------

def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint dict (model, optimizer, ... plus spec_hash) atomically."""
    import io

    import torch

    state = {"format": CHECKPOINT_FORMAT, **state}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, net: Network | None = None) -> dict[str, Any]:
    """Read and validate a checkpoint; with `net`, it must be one of that network's."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt or truncated ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})",
            hint="use an earlier checkpoint of the run, or train again",
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"'{path}' is not a partc checkpoint", hint=f"expected format {CHECKPOINT_FORMAT}")
    if net is not None and not net.matches_hash(state.get("spec_hash")):
        raise CheckpointError(
            f"checkpoint '{path}' belongs to another spec (spec hash {state.get('spec_hash')}, expected {net.spec_hash})",
            hint="a checkpoint only loads into the network of the spec it was trained from",
        )
    return state


def point_last(run_dir: str | Path, target: Path) -> None:
    """Make last.pt the same file as `target`, atomically (hard link, or a copy where links fail)."""
    last = run_paths(run_dir)["last"]
    tmp = last.with_name(f".last.pt.link{TEMP_SUFFIX}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
        os.replace(tmp, last)
    except OSError:
        tmp.unlink(missing_ok=True)
        atomic_write_bytes(last, target.read_bytes())


def prune_checkpoints(run_dir: str | Path, keep: set[int]) -> None:
    """Delete epoch checkpoints whose epoch is not in `keep` (init.pt and last.pt stay)."""
    for f in run_paths(run_dir)["checkpoints"].glob("epoch_*.pt"):
        try:
            number = int(f.stem.split("_")[1])
        except (IndexError, ValueError):
            continue
        if number not in keep:
            f.unlink(missing_ok=True)


def load_trained_model(source: str | Path, *, checkpoint: str = "last"):
    """(net, model in eval mode, checkpoint state) from a run directory or a checkpoint file.

    A checkpoint file is looked up in its run directory (its grandparent) for the spec.
    """
    from partc.compiler import compile_network

    source = Path(source)
    if source.is_file():
        ckpt_path, run_dir = source, source.parent.parent
    else:
        run_dir = source
        ckpt_path = run_paths(run_dir)["last"] if checkpoint == "last" else Path(checkpoint)
    net = load_run_network(run_dir)
    state = load_checkpoint(ckpt_path, net)
    model = compile_network(net)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint '{ckpt_path}' does not fit the network: {str(e).splitlines()[0]}") from None
    return net, model.eval(), state


# ---- seed groups ----------------------------------------------------------------------------------

def group_file(group_dir: str | Path) -> Path:
    return Path(group_dir) / "group.json"


def member_dir(group_dir: str | Path, seed: int) -> Path:
    return Path(group_dir) / f"seed-{seed}"


def is_group(path: str | Path) -> bool:
    return group_file(path).is_file()


def write_group(group_dir: str | Path, info: dict[str, Any]) -> None:
    """group.json: what the group is (network, spec hashes, no_sharing) and its seeds, members by seed."""
    seeds = sorted(set(info["seeds"]))
    members = {str(seed): member_dir(".", seed).name for seed in seeds}
    atomic_write_json(group_file(group_dir), {**info, "format": GROUP_FORMAT, "seeds": seeds, "members": members},
                      sort_keys=True)


def read_group(group_dir: str | Path) -> tuple[dict[str, Any] | None, list[str]]:
    """group.json as a dict (None when there is none or it is damaged), and the problems met."""
    path = group_file(group_dir)
    if not path.is_file():
        return None, []
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, [f"{path} is not valid JSON ({e})"]
    if not isinstance(info, dict) or info.get("format") != GROUP_FORMAT or not isinstance(info.get("seeds"), list) \
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in info["seeds"]):
        return None, [f"{path} is not a partc seed group (expected format {GROUP_FORMAT} and a list of seeds)"]
    return info, []


def require_group(group_dir: str | Path) -> dict[str, Any]:
    """group.json of a group that must be whole (resume, extend): a clear error when it is not."""
    info, problems = read_group(group_dir)
    if problems:
        raise CheckpointError(problems[0], hint="restore it, or train the group into a new --out")
    if info is None:
        raise CheckpointError(f"'{group_dir}' is not a seed group (no group.json)",
                              hint="pass the --out folder of a 'partc train --seeds' run")
    return info


def run_members(path: str | Path) -> tuple[list[tuple[int | None, Path]], list[str]]:
    """The runs a path stands for, with their train seeds: a group's members, or the run itself; and problems.

    A member listed in group.json whose folder is missing is a problem, not a member.
    """
    path = Path(path)
    if not is_group(path):
        info, _ = read_info(path)
        seed = info.get("seed")
        return [(seed if isinstance(seed, int) and not isinstance(seed, bool) else None, path)], []
    info, problems = read_group(path)
    if info is None:
        return [], problems
    members = []
    for seed in info["seeds"]:
        member = member_dir(path, seed)
        if member.is_dir():
            members.append((seed, member))
        else:
            problems.append(f"seed group '{path}': member {member.name} is missing")
    return members, problems
