"""The run directory: what `partc train` writes and export/report read.

    RUN/spec.part         the spec text as trained (hash in run.json)
    RUN/run.json          partc version, network, spec hash, settings
    RUN/metrics.jsonl     one JSON object per task, split and epoch
    RUN/checkpoints/      init.pt (weights before training), epoch_NNNN.pt, last.pt
    RUN/results.json/.md  the final per-task test table

Checkpoints are written atomically (temp file in the same folder, fsync,
rename), so a killed process never leaves a half-written file behind.
Every read checks what it reads and raises `CheckpointError` with a clear
message: a missing run directory, a truncated or foreign file, a checkpoint
of another spec.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from partc.errors import CheckpointError

CHECKPOINT_FORMAT = "partc-checkpoint/1"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint dict (model, optimizer, ... plus spec_hash) atomically."""
    import io

    import torch

    state = {"format": CHECKPOINT_FORMAT, **state}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, spec_hash: str | None = None) -> dict[str, Any]:
    """Read and validate a checkpoint; `spec_hash`, when given, must match."""
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
            f"checkpoint '{path}' is corrupt or truncated ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
            hint="use an earlier checkpoint of the run, or train again",
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"'{path}' is not a partc checkpoint", hint=f"expected format {CHECKPOINT_FORMAT}")
    if spec_hash is not None and state.get("spec_hash") != spec_hash:
        raise CheckpointError(
            f"checkpoint '{path}' belongs to another spec (spec hash {state.get('spec_hash')}, expected {spec_hash})",
            hint="a checkpoint only loads into the network of the spec it was trained from",
        )
    return state


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


def load_run_network(run_dir: str | Path):
    """The checked network of a run, from the spec text saved in it."""
    from partc.spec import loads

    paths = run_paths(run_dir)
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory '{run_dir}' does not exist",
                              hint="pass the --out folder of a 'partc train' run")
    if not paths["spec"].is_file():
        raise CheckpointError(f"'{run_dir}' is not a partc run: spec.part is missing")
    return loads(paths["spec"].read_text(encoding="utf-8"), str(paths["spec"]))


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
    state = load_checkpoint(ckpt_path, net.spec_hash)
    model = compile_network(net)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint '{ckpt_path}' does not fit the network: {str(e).splitlines()[0]}") from None
    return net, model.eval(), state


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
