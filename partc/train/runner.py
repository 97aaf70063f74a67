"""Train stage entry point: `train(net, out_dir)` -> a run directory and the final results.

The run directory follows docs/ARCHITECTURE.md (read and written through
`partc.run`), under the directory's lock for the whole run; under torchrun, rank 0
alone takes the lock and writes (`partc.train.distributed`). A fresh run
writes spec.part, init.pt, last.pt, then run.json last: a start-up killed
before run.json leaves an "unfinished" directory, which the next `partc
train` (with or without --resume) clears and starts again. Order of writes
per epoch: metrics rows first, then the epoch checkpoint (atomic), then
last.pt (an atomic hard link to it), then pruning. A run killed at any
point therefore resumes from its newest complete checkpoint; rows of a
later, unfinished epoch are dropped from metrics.jsonl on resume.

An epoch whose loss is NaN or infinite writes nothing: training stops with
a `TrainError`, run.json records where (`stopped`), and the run keeps its
last finite checkpoint and the results up to it.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any

from partc.errors import CheckpointError, TrainError
from partc.ir import Network
from partc.run import (
    Growth,
    RunLock,
    append_metrics,
    clear_unfinished_start,
    epoch_checkpoint,
    keep_metrics_until,
    load_checkpoint,
    lock_run,
    point_last,
    prune_checkpoints,
    read_info,
    read_metrics,
    recorded_splits,
    remove_temp_files,
    require_info,
    run_paths,
    run_state,
    save_checkpoint,
    write_info,
    write_results,
    write_spec,
)
from partc.train.config import TrainConfig, resolve_config
from partc.train.device import Runtime
from partc.train.distributed import DEFAULT_TIMEOUT_S, World, code_fingerprint, joined
from partc.train.memory import allocation_errors, check_memory
from partc.train.progress import Progress
from partc.train.results import best_mean_val_epoch, build_results, results_table
from partc.train.session import Trainer, check_data
from partc.version import __version__

KEEP_EPOCH_CHECKPOINTS = 3  # plus init.pt, last.pt and the epoch with the best mean val top-1
RESUME_KEYS = ("model", "optimizer", "rng", "config", "data_stats", "epoch")


def train(net: Network, out_dir: str | Path | None = None, *, device: str = "auto", resume: bool = False,
          epochs: int | None = None, mode: str | None = None, data_root: str | Path | None = None,
          quiet: bool = False, no_sharing: bool = False, data: dict[str, Any] | None = None,
          growth: Growth | None = None, initial_state: dict[str, Any] | None = None, seed: int | None = None,
          threads: int | None = None, world: World | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """Train every task of `net` into `out_dir` (default runs/<network>); the final results.

    `no_sharing` trains the spec's no-sharing baseline instead (`partc.train.nosharing`).
    `data` ({task: TaskData}) skips loading, for tests, benchmarks and seed groups.
    `growth` and `initial_state` come from `partc.train.extend`: train only the new tasks, over the base
    run's weights, with the base tasks' modules frozen; a resumed extension finds them in run.json.
    `seed` replaces the train seed (initial weights, data order, augmentation); the
    network seed, and with it the paths and the data splits, stays the spec's. `threads`
    sets torch's CPU threads; a resumed run takes the count it was trained with
    unless told otherwise (CPU results depend on it), and says so when they differ.
    Under torchrun the processes train one run together (`partc.train.distributed`; `world`, when the
    caller joined it already); every rank returns the results.
    """
    if world is None:
        with joined(device, timeout_s) as world:
            return train(net, out_dir, device=device, resume=resume, epochs=epochs, mode=mode, data_root=data_root,
                         quiet=quiet, no_sharing=no_sharing, data=data, growth=growth, initial_state=initial_state,
                         seed=seed, threads=threads, world=world)
    source = net
    if no_sharing:
        from partc.train.nosharing import unshare

        net = unshare(net)
    out = Path(out_dir) if out_dir is not None else Path("runs") / net.name
    quiet = quiet or not world.main
    runtime = Runtime(world.device)
    if world.main and not resume and _restarted_here(out, world):
        resume = True  # torchrun --max-restarts started the group again: carry on from the last checkpoint
    world.agree(None, {**code_fingerprint(), "spec hash": net.spec_hash})
    with contextlib.ExitStack() as held:
        lock = world.agreed(_lock_on_main, out, resume, world, held)
        started = False
        try:
            # Rank 0 reads the run directory; every rank gets its checkpoint (no shared file system needed).
            opened = world.agreed(_read_run, out, net, no_sharing, resume, quiet, world)
            state, recorded = world.broadcast(opened)
            started = state is not None  # a resume: whatever fails, the run directory stays as it was
            if state is not None:
                _resume_threads(recorded, threads, str(runtime.device), quiet=not world.main)  # -q too
            else:
                _set_threads(threads)
            asked = dict(epochs=epochs, mode=mode, seed=seed, data_root=data_root, data=data, growth=growth,
                         initial_state=initial_state)
            trainer, splits, data = world.agreed(_prepare, out, net, state, recorded, asked, runtime, world)
            world.agree(None, {"settings": trainer.cfg.to_dict(), "data": trainer.stats,
                               "batches": trainer.batch_sizes, "splits": splits})
            start = _open_run(out, net, source, trainer, state, recorded, splits, world)
            started = True
        finally:
            if lock is not None and not started:  # a fresh start that failed: leave nothing behind
                _abandon_start(out, lock)
        with allocation_errors(net, trainer.cfg, runtime, data):
            _train_epochs(out, net, trainer, start, quiet)
        results = _finish(out, net, trainer.cfg.epochs, no_sharing, quiet) if world.main else None
    return world.broadcast(results)


def _lock_on_main(out: Path, resume: bool, world: World, held: contextlib.ExitStack) -> RunLock | None:
    """On rank 0: refuse what needs no lock (so a refused command creates nothing, not even the lock
    file), then take the run directory's lock until `held` closes."""
    if not world.main:
        return None
    _refuse_at_a_glance(out, resume)
    return held.enter_context(lock_run(out))


def _read_run(out: Path, net: Network, no_sharing: bool, resume: bool, quiet: bool,
              world: World) -> tuple[dict | None, dict | None]:
    """On rank 0, under the lock: (last.pt, run.json) to resume from, or (None, None) for a new run."""
    if not world.main:
        return None, None
    state = run_state(out)  # again, now that no other process can change it
    if resume and state == "run":
        return _resume_checkpoint(out, net, no_sharing), require_info(out)
    _refuse_existing(out, state, resume, quiet)
    return None, None


def _prepare(out: Path, net: Network, state: dict | None, recorded: dict | None, asked: dict[str, Any],
             runtime: Runtime, world: World) -> tuple[Trainer, dict[str, Any], dict[str, Any]]:
    """Settings, data and the trainer (restored from `state` on resume), the data's split record, and
    the data: everything before the first write. `asked`: train()'s epochs, mode, seed, data_root,
    data, growth and initial_state."""
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
        _check_same_splits(out, recorded_splits(recorded), splits)
    runtime.setup()
    check_memory(net, cfg, runtime, data)
    with allocation_errors(net, cfg, runtime, data):
        trainer = Trainer(net, cfg, runtime, data, growth=growth, initial_state=initial_state, world=world)
    if state is not None:
        trainer.load_state_dict(state, str(run_paths(out)["last"]))  # checked whole: nothing is written before this
    return trainer, splits, data


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
              recorded: dict | None, splits: dict[str, Any], world: World) -> int:
    """Rank 0 starts the run directory (spec, init.pt, last.pt, then run.json) or tidies it for a resume;
    the epochs done."""
    paths, growth = run_paths(out), trainer.growth
    start = int(state["epoch"]) if state is not None else 0
    if not world.main:
        return start
    launch = {"world_size": world.size, "launch_id": world.launch_id}
    if state is not None:
        info = {**recorded, **_settings_info(trainer), **launch}
        info.pop("stopped", None)  # a run stopped by a non-finite loss, trained on: it is going again
        keep_metrics_until(out, start)
        remove_temp_files(out)
        write_info(out, info)
        return start
    info = {
        "partc_version": _version(), "network": net.name, "spec_hash": net.spec_hash, "spec_file": str(source.file),
        "no_sharing": source is not net, "steps_per_epoch": trainer.steps, "task_batch": trainer.batch_sizes,
        "splits": splits, **_settings_info(trainer), **launch,
    }
    if source is not net:
        info.update(source_network=source.name, source_spec_hash=source.spec_hash)
    if growth is not None:
        info["extend"] = growth.to_dict()
    write_spec(out, net.source)
    save_checkpoint(paths["init"], _checkpoint(net, trainer, 0))
    point_last(out, paths["init"])
    write_info(out, info)  # the commit: from here on the run resumes
    return start


def _settings_info(trainer: Trainer) -> dict[str, Any]:
    """What run.json says about how the run trains: written from the one TrainConfig, so it agrees with itself."""
    import torch

    cfg = trainer.cfg
    return {"mode": cfg.mode, "device": str(trainer.runtime.device), "epochs": cfg.epochs, "batch": cfg.batch,
            "seed": cfg.seed, "config": cfg.to_dict(), "threads": torch.get_num_threads()}


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
            _stop_if_not_finite(out, net, trainer, epoch, rows)
            if not trainer.world.main:
                continue  # rank 0 alone writes the run directory
            append_metrics(out, rows)
            save_checkpoint(epoch_checkpoint(out, epoch), _checkpoint(net, trainer, epoch))
            point_last(out, epoch_checkpoint(out, epoch))
            _prune(out, epoch)
            say(_epoch_line(epoch, epochs, rows, time.perf_counter() - began))
    finally:
        progress.close()


def _stop_if_not_finite(out: Path, net: Network, trainer: Trainer, epoch: int, rows: list[dict]) -> None:
    """A NaN or infinite loss: keep the run at its last finite epoch, record why, and stop with a TrainError."""
    bad = next((r for r in rows if r["loss"] is not None and not math.isfinite(r["loss"])), None)
    if bad is None:
        return
    kept = epoch - 1
    what = "NaN" if math.isnan(bad["loss"]) else "infinite"
    reason = f"the {bad['split']} loss of task '{bad['task']}' was {what} in epoch {epoch}"
    world = trainer.world  # every rank sees the same summed rows and stops; rank 0 writes, and prints
    try:
        if world.main:
            info = require_info(out)
            write_info(out, {**info, "stopped": {"epoch": epoch, "kept_epoch": kept, "reason": reason}})
            rows_kept, _ = read_metrics(out)
            results = build_results(net, rows_kept, kept)
            write_results(out, {**results, "stopped": reason}, results_table(results))
        else:
            world.rank0_reports = True
    finally:
        world.barrier()  # the others stop only after rank 0's writes: torchrun ends the group at the first exit
    lr = trainer.cfg.lr
    raise TrainError(
        f"training stopped: {reason}", hint=(
            f"the run keeps epoch {kept}, its last finite checkpoint ({run_paths(out)['last']}), and its results; "
            f"lower the learning rate (now {lr:g}), a task's weight, or check the data for extreme values, "
            "then train again"))


def _refuse_at_a_glance(out: Path, resume: bool) -> None:
    """The refusals that need no lock, so a refused command creates nothing (not even the lock file)."""
    state = run_state(out)
    if state == "file":
        raise TrainError(f"--out '{out}' is a file, not a folder", hint="choose another --out")
    if resume and state == "absent":
        raise CheckpointError(f"run directory '{out}' does not exist", hint="start a new run without --resume")
    if not resume and state in ("run", "other"):
        _refuse_existing(out, state, resume, quiet=True)


def _refuse_existing(out: Path, state: str, resume: bool, quiet: bool) -> None:
    """A fresh start needs an absent or empty folder, or one whose start-up was cut short (cleared here)."""
    if state == "unfinished":
        if clear_unfinished_start(out) and not quiet:  # a lone lock file (ours, or a killed one's) needs no word
            print(f"{out}: its start-up was cut short before the first checkpoint; starting the run again",
                  file=sys.stderr)
        return
    if resume and state in ("empty", "other"):
        raise CheckpointError(f"'{out}' is not a partc run (run.json is missing)",
                              hint="pass the --out folder of an earlier 'partc train' run, or start a new run "
                                   "without --resume")
    if state in ("run", "other"):
        hint = ("pass --resume to continue the run in it, or choose another --out (or delete it)" if state == "run"
                else "choose another --out, or empty the folder")
        raise TrainError(f"run directory '{out}' already exists and is not empty", hint=hint)


def _abandon_start(out: Path, lock: RunLock) -> None:
    """After a failed fresh start, still under `lock`: remove what it wrote, and the folder when the
    lock created it."""
    try:
        if run_state(out) == "unfinished":
            clear_unfinished_start(out)
        lock.release()
        if lock.created:
            out.rmdir()  # only when empty
    except OSError:
        pass  # best effort: a restart clears whatever is left


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _resume_threads(info: dict[str, Any], threads: int | None, device: str, quiet: bool) -> None:
    """Resume with the thread count the run trained with (CPU results depend on it); warn when they differ."""
    import torch

    recorded = info.get("threads")
    if threads is None and isinstance(recorded, int) and recorded > 0:
        threads = recorded
    _set_threads(threads)
    notes = []
    if isinstance(recorded, int) and torch.get_num_threads() != recorded and device == "cpu":
        notes.append(f"it trained with {recorded} CPU thread(s), this resume uses {torch.get_num_threads()}")
    if isinstance(info.get("device"), str) and info["device"] != device:
        notes.append(f"it trained on {info['device']}, this resume runs on {device}")
    if notes and not quiet:
        print(f"warning: the resumed run will not be bit-identical to an uninterrupted one: {'; '.join(notes)} "
              "(floating-point sums are ordered differently)", file=sys.stderr)


def _finish(out: Path, net: Network, epochs: int, no_sharing: bool, quiet: bool) -> dict:
    """results.json and results.md from metrics.jsonl; the table on stdout."""
    rows, _problems = read_metrics(out)
    results = build_results(net, rows, epochs, no_sharing=no_sharing)
    table = results_table(results)
    write_results(out, results, table)
    remove_temp_files(out)  # what earlier kills left, now that the run is whole
    if not quiet:
        sys.stdout.write(table)
    return results


# ---- resume ----

def _resume_checkpoint(out: Path, net: Network, no_sharing: bool) -> dict:
    info = require_info(out)
    if not net.matches_hash(info.get("spec_hash")):
        hint = "resume with the spec the run was started from"
        if info.get("no_sharing") and not no_sharing:
            hint = "this run is a no-sharing baseline: add --no-sharing"
        elif no_sharing and not info.get("no_sharing"):
            hint = "this run is not a no-sharing baseline: drop --no-sharing"
        raise CheckpointError(f"run '{out}' was trained from another spec (spec hash {info.get('spec_hash')}, "
                              f"this spec {net.spec_hash})", hint=hint)
    return load_checkpoint(run_paths(out)["last"], net, require=RESUME_KEYS)


def _check_same_splits(out: Path, recorded: Any, now: dict[str, Any]) -> None:
    """A resumed run must train and test on the samples it started with."""
    if recorded is None:
        raise TrainError(f"run '{out}' was trained before partc split data by sample: resuming it would change "
                         "its train/val/test samples mid-run", hint="start a new run (its splits are by sample)")
    before = recorded.get("digests") or {}
    changed = sorted(t for t, d in now["digests"].items() if t in before and before[t] != d)
    if changed:
        raise TrainError(f"the data of task(s) {', '.join(changed)} split into other samples than when run '{out}' "
                         "started (the data changed)", hint="resume with the data the run started with, or start a new run")


def _resume_config(state: dict, epochs: int | None, mode: str | None, seed: int | None, where: Path) -> TrainConfig:
    try:
        cfg = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint '{where}': its training settings are damaged ({e})",
                              hint="use an earlier checkpoint of the run, or train again") from None
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
