"""Train stage entry point: `train(net, out_dir)` -> a run directory and the final results.

The run directory follows docs/ARCHITECTURE.md (read and written through
`partc.run`). Order of writes per epoch: metrics rows first, then the
epoch checkpoint (atomic), then last.pt (an atomic hard link to it), then
pruning. A run killed at any point therefore resumes from its newest
complete checkpoint; rows of a later, unfinished epoch are dropped from
metrics.jsonl on resume.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from partc.devices import CpuThreads
from partc.errors import CheckpointError, TrainError
from partc.ir import Network
from partc.run import (
    Growth,
    append_metrics,
    epoch_checkpoint,
    keep_metrics_until,
    load_checkpoint,
    point_last,
    prune_checkpoints,
    read_info,
    read_metrics,
    remove_temp_files,
    require_info,
    run_paths,
    save_checkpoint,
    write_info,
    write_results,
    write_spec,
)
from partc.train.config import TrainConfig, resolve_config
from partc.train.device import Runtime
from partc.train.distributed import DEFAULT_TIMEOUT_S, World, code_fingerprint, joined
from partc.train.nosharing import run_dir
from partc.train.progress import Progress
from partc.train.results import best_mean_val_epoch, build_results, results_table
from partc.train.session import Trainer, check_data
from partc.version import __version__

KEEP_EPOCH_CHECKPOINTS = 3  # plus init.pt, last.pt and the epoch with the best mean val top-1


def train(net: Network, out_dir: str | Path | None = None, *, device: str = "auto", resume: bool = False,
          epochs: int | None = None, mode: str | None = None, data_root: str | Path | None = None,
          quiet: bool = False, no_sharing: bool = False, data: dict[str, Any] | None = None,
          growth: Growth | None = None, initial_state: dict[str, Any] | None = None, seed: int | None = None,
          world: World | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, cpu: CpuThreads | None = None) -> dict:
    """Train every task of `net` into `out_dir` (default `run_dir`); the final results.

    `no_sharing` trains the spec's no-sharing baseline instead (`partc.train.nosharing`).
    `data` ({task: TaskData}) skips loading, for tests, benchmarks and seed groups.
    `growth` and `initial_state` come from `partc.train.extend`: train only the new tasks, over the base
    run's weights, with the base tasks' modules frozen; a resumed extension finds them in run.json.
    `seed` replaces the train seed (initial weights, data order, augmentation); the
    network seed, and with it the paths and the data splits, stays the spec's.
    Under torchrun the processes train one run together (`partc.train.distributed`; `world`, when the
    caller joined it already); every rank returns the results.
    `cpu`: the CPU thread settings the command chose, for run.json (default: this process's as they are).
    """
    if world is None:
        with joined(device, timeout_s) as world:
            return train(net, out_dir, device=device, resume=resume, epochs=epochs, mode=mode, data_root=data_root,
                         quiet=quiet, no_sharing=no_sharing, data=data, growth=growth, initial_state=initial_state,
                         seed=seed, world=world, cpu=cpu)
    source = net
    out = run_dir(net, out_dir, no_sharing)
    if no_sharing:
        from partc.train.nosharing import unshare

        net = unshare(net)
    quiet = quiet or not world.main
    runtime = Runtime(world.device)

    # Rank 0 reads the run directory; every rank gets its checkpoint (no shared file system needed).
    opened = world.agreed(_read_run, out, net, no_sharing, resume, world,
                          fingerprint={**code_fingerprint(), "spec hash": net.spec_hash})
    state, recorded = world.broadcast(opened)
    asked = dict(epochs=epochs, mode=mode, seed=seed, data_root=data_root, data=data, growth=growth,
                 initial_state=initial_state)
    trainer, splits = world.agreed(_prepare, out, net, state, recorded, asked, runtime, world)
    world.agree(None, {"settings": trainer.cfg.to_dict(), "data": trainer.stats, "batches": trainer.batch_sizes,
                       "splits": splits})
    start = _open_run(out, net, source, trainer, state, recorded, splits, world, cpu)
    _train_epochs(out, net, trainer, start, quiet)
    results = _finish(out, net, trainer.cfg.epochs, no_sharing, quiet) if world.main else None
    return world.broadcast(results)


def _read_run(out: Path, net: Network, no_sharing: bool, resume: bool, world: World) -> tuple[dict | None, dict | None]:
    """On rank 0: (last.pt, run.json) to resume from, or (None, None) for a new run."""
    if not world.main:
        return None, None
    if not resume and _restarted_here(out, world):
        resume = True  # torchrun --max-restarts started the group again: carry on from the last checkpoint
    if not resume:
        _refuse_existing(out)
        return None, None
    state = _resume_checkpoint(out, net, no_sharing)
    return state, require_info(out)


def _prepare(out: Path, net: Network, state: dict | None, recorded: dict | None, asked: dict[str, Any],
             runtime: Runtime, world: World) -> tuple[Trainer, dict[str, Any]]:
    """Settings, data and the trainer (restored from `state` on resume), and the data's split record:
    everything before the first write. `asked`: train()'s epochs, mode, seed, data_root, data, growth
    and initial_state."""
    growth, initial_state = asked["growth"], asked["initial_state"]
    if state is not None:
        cfg = _resume_config(state, asked["epochs"], asked["mode"], asked["seed"], run_paths(out)["last"])
        growth, initial_state = (Growth.from_dict(recorded["extend"]) if recorded.get("extend") else None), None
    else:
        cfg = resolve_config(net, epochs=asked["epochs"], mode=asked["mode"], seed=asked["seed"])
    data = asked["data"]
    if data is None:
        from partc.data.load import load_all

        data = load_all(net, data_root=asked["data_root"])
    check_data(net, data)
    splits = _split_record(data)
    if state is not None:
        _check_same_splits(out, recorded.get("splits"), splits)
    runtime.setup()
    trainer = Trainer(net, cfg, runtime, data, growth=growth, initial_state=initial_state, world=world)
    if state is not None:
        trainer.load_state_dict(state, str(run_paths(out)["last"]))
    return trainer, splits


def _split_record(data: dict[str, Any]) -> dict[str, Any]:
    """Which samples each task's splits hold (run.json "splits"): runs with equal digests saw the same splits."""
    from partc.data.splits import SPLIT_RULE

    digests = {t: d.split_digest() for t, d in data.items() if callable(getattr(d, "split_digest", None))}
    return {"rule": SPLIT_RULE, "digests": {t: v for t, v in digests.items() if v is not None}}


def _restarted_here(out: Path, world: World) -> bool:
    """A group torchrun restarted (TORCHELASTIC_RESTART_COUNT > 0) over the run this launch started."""
    if world.restart < 1 or world.launch_id is None or not run_paths(out)["info"].is_file():
        return False
    info, problems = read_info(out)
    return not problems and info.get("launch_id") == world.launch_id


def _open_run(out: Path, net: Network, source: Network, trainer: Trainer, state: dict | None,
              recorded: dict | None, splits: dict[str, Any], world: World, cpu: CpuThreads | None) -> int:
    """Rank 0 starts the run directory (spec, init.pt) or tidies it for a resume; the epochs done."""
    paths, cfg, growth = run_paths(out), trainer.cfg, trainer.growth
    start = int(state["epoch"]) if state is not None else 0
    if not world.main:
        return start
    # How this session computes: a CPU run's sums depend on its thread count.
    launch = {"world_size": world.size, "launch_id": world.launch_id, "cpu": (cpu or CpuThreads.current()).to_dict()}
    if state is not None:
        keep_metrics_until(out, start)
        remove_temp_files(out)
        write_info(out, {**recorded, "epochs": cfg.epochs, "device": str(trainer.runtime.device), **launch})
        return start
    info = {
        "partc_version": _version(), "network": net.name, "spec_hash": net.spec_hash, "spec_file": str(source.file),
        "mode": cfg.mode, "device": str(trainer.runtime.device), "epochs": cfg.epochs, "batch": cfg.batch,
        "seed": cfg.seed, "no_sharing": source is not net, "config": cfg.to_dict(),
        "steps_per_epoch": trainer.steps, "task_batch": trainer.batch_sizes, "splits": splits, **launch,
    }
    if source is not net:
        info.update(source_network=source.name, source_spec_hash=source.spec_hash)
    if growth is not None:
        info["extend"] = growth.to_dict()
    out.mkdir(parents=True, exist_ok=True)
    write_spec(out, net.source)
    save_checkpoint(paths["init"], _checkpoint(net, trainer, 0))
    point_last(out, paths["init"])
    write_info(out, info)
    return start


def _train_epochs(out: Path, net: Network, trainer: Trainer, start: int, quiet: bool) -> None:
    """Epochs start+1..epochs: train, evaluate, metrics rows, checkpoint, last.pt, pruning."""
    epochs = trainer.cfg.epochs
    progress = Progress(max(0, epochs - start) * trainer.steps_per_epoch_total, quiet=quiet)

    def say(text: str) -> None:
        if not quiet:
            progress.message(text)

    if start >= epochs:
        say(f"{out}: already trained {start} of {epochs} epochs (pass --epochs to train longer)")
    try:
        for epoch in range(start + 1, epochs + 1):
            progress.label = f"epoch {epoch}/{epochs}"
            began = time.perf_counter()
            train_metrics = trainer.train_epoch(epoch - 1, progress.tick)
            train_time = time.perf_counter() - began
            rows = [{"epoch": epoch, "task": t, "split": "train", **m, "time_s": round(train_time, 4)}
                    for t, m in train_metrics.items()]
            for (t, split), m in _timed_eval(trainer).items():
                rows.append({"epoch": epoch, "task": t, "split": split, **m})
            if not trainer.world.main:
                continue  # rank 0 alone writes the run directory
            append_metrics(out, rows)
            save_checkpoint(epoch_checkpoint(out, epoch), _checkpoint(net, trainer, epoch))
            point_last(out, epoch_checkpoint(out, epoch))
            _prune(out, epoch)
            say(_epoch_line(epoch, epochs, rows, time.perf_counter() - began))
    finally:
        progress.close()


def _finish(out: Path, net: Network, epochs: int, no_sharing: bool, quiet: bool) -> dict:
    """results.json and results.md from metrics.jsonl; the table on stdout."""
    rows, _problems = read_metrics(out)
    results = build_results(net, rows, epochs, no_sharing=no_sharing)
    table = results_table(results)
    write_results(out, results, table)
    if not quiet:
        sys.stdout.write(table)
    return results


# ---- run directory ----

def _refuse_existing(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainError(f"run directory '{out}' already exists and is not empty",
                         hint="pass --resume to continue the run in it, or choose another --out (or delete it)")


def _resume_checkpoint(out: Path, net: Network, no_sharing: bool) -> dict:
    if not out.is_dir():
        raise CheckpointError(f"run directory '{out}' does not exist", hint="start a new run without --resume")
    info = require_info(out)
    if not net.matches_hash(info.get("spec_hash")):
        hint = "resume with the spec the run was started from"
        if info.get("no_sharing") and not no_sharing:
            hint = "this run is a no-sharing baseline: add --no-sharing"
        elif no_sharing and not info.get("no_sharing"):
            hint = "this run is not a no-sharing baseline: drop --no-sharing"
        raise CheckpointError(f"run '{out}' was trained from another spec (spec hash {info.get('spec_hash')}, "
                              f"this spec {net.spec_hash})", hint=hint)
    return load_checkpoint(run_paths(out)["last"], net)


def _check_same_splits(out: Path, recorded: Any, now: dict[str, Any]) -> None:
    """A resumed run must train and test on the samples it started with."""
    if not isinstance(recorded, dict):
        raise TrainError(f"run '{out}' was trained before partc split data by sample: resuming it would change "
                         "its train/val/test samples mid-run", hint="start a new run (its splits are by sample)")
    before = recorded.get("digests") or {}
    changed = sorted(t for t, d in now["digests"].items() if t in before and before[t] != d)
    if changed:
        raise TrainError(f"the data of task(s) {', '.join(changed)} split into other samples than when run '{out}' "
                         "started (the data changed)", hint="resume with the data the run started with, or start a new run")


def _resume_config(state: dict, epochs: int | None, mode: str | None, seed: int | None, where: Path) -> TrainConfig:
    cfg = TrainConfig.from_dict(state["config"])
    if mode is not None and mode != cfg.mode:
        raise TrainError(f"the run was trained in {cfg.mode} mode; it cannot resume in {mode} mode",
                         hint=f"drop --mode, or start a new run with --mode {mode}")
    if seed is not None and seed != cfg.seed:
        raise TrainError(f"the run was trained with seed {cfg.seed}; it cannot resume with seed {seed}",
                         hint=f"resume it with seed {cfg.seed}, or train seed {seed} into another --out")
    if epochs is not None:
        if epochs < int(state["epoch"]):
            raise TrainError(f"--epochs {epochs} is fewer than the {state['epoch']} epochs '{where}' already has")
        cfg = TrainConfig.from_dict({**cfg.to_dict(), "epochs": epochs})
    return cfg


def _checkpoint(net: Network, trainer: Trainer, epoch: int) -> dict:
    cfg = trainer.cfg
    scheduler = {"name": cfg.schedule, "epoch": epoch, "lr": cfg.lr * cfg.lr_factor(max(0, epoch - 1))}
    return {"spec_hash": net.spec_hash, "network": net.name, "epoch": epoch, "scheduler": scheduler,
            **trainer.state_dict()}


def _prune(out: Path, epoch: int) -> None:
    """Keep the newest epoch checkpoints and the one with the best mean validation top-1."""
    rows, _ = read_metrics(out)
    keep = set(range(epoch - KEEP_EPOCH_CHECKPOINTS + 1, epoch + 1))
    best = best_mean_val_epoch(rows)
    if best is not None:
        keep.add(best)
    prune_checkpoints(out, keep)


def _timed_eval(trainer: Trainer) -> dict:
    out = {}
    for key, (x, y) in trainer.eval_data.items():
        began = time.perf_counter()
        m = trainer.evaluate_one(key, x, y)
        out[key] = {**m, "time_s": round(time.perf_counter() - began, 4)}
    return out


def _epoch_line(epoch: int, epochs: int, rows: list[dict], seconds: float) -> str:
    def mean(split, key):
        values = [r[key] for r in rows if r["split"] == split and r[key] is not None]
        return sum(values) / len(values) if values else None

    parts = [f"epoch {epoch}/{epochs}", f"loss {mean('train', 'loss'):.4f}"]
    for split in ("train", "val", "test"):
        value = mean(split, "top1")
        if value is not None:
            parts.append(f"{split} {100 * value:.2f}%")
    return "  ".join(parts) + f"  ({seconds:.1f} s)"


def _version() -> str:
    return __version__
