"""The run directory: what `partc train` writes and export, report and serve read; nothing else touches it.

    RUN/spec.part         the spec text as trained (its hash in run.json)
    RUN/run.json          partc version, network, spec hash, settings (`read_info`, `write_info`)
    RUN/metrics.jsonl     one JSON object per task, split and epoch (`read_metrics`, `append_metrics`)
    RUN/checkpoints/      init.pt (weights before training), epoch_NNNN.pt, last.pt
    RUN/results.json/.md  the final per-task test table (`read_results`, `write_results`)
    RUN/.lock             held (fcntl.flock) by the one process writing the run (`lock_run`)

A seed group (`partc train --seeds`) is a folder of runs of one network,
one per train seed, and a marker file:

    GROUP/group.json      format, network, spec hashes, no_sharing, seeds, members (`write_group`, `read_group`)
    GROUP/seed-N/         a run directory as above, trained with seed N (`member_dir`)

Every write is atomic (temp file in the same folder, fsync, rename), so a
killed process never leaves a half-written file behind; appends to
metrics.jsonl end in fsync, and a line cut by a kill is skipped on read.
run.json is written last when a run starts: a directory without it holds a
start-up that was cut short (`run_state` says "unfinished"), which a new
`partc train` clears and starts again. Every file-system failure (a file in
the way, no permission, a full or read-only disk) is a `RunDirError` naming
the path and the cause. Every read checks what it reads: a missing run
directory, a truncated or foreign file, a checkpoint of another spec raise
`CheckpointError`, or, for the readers that must go on (the report), become
entries of a `problems` list; a number that is not finite reads as null.

For the kill tests, `PARTC_TEST_KILL_AT=N` makes this process SIGKILL
itself at its N-th write step (`write_step`), and `PARTC_TEST_WRITE_LOG=FILE`
appends each step's number and name to FILE.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from partc.errors import CheckpointError, RunDirError, exception_text
from partc.ir import Network

CHECKPOINT_FORMAT = "partc-checkpoint/1"
GROUP_FORMAT = "partc-seed-group/1"
TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".lock"


# ---- file-system errors and the kill hook ------------------------------------------------------------

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space, or write somewhere else (another --out or -o)",
    errno.EDQUOT: "the disk quota is used up: free some space, or write somewhere else (another --out or -o)",
    errno.EROFS: "the file system is read-only: write somewhere else (another --out or -o)",
    errno.EACCES: "no permission: write somewhere you may (another --out or -o), or fix the folder's permissions",
    errno.EPERM: "no permission: write somewhere you may (another --out or -o), or fix the folder's permissions",
    errno.ENOTDIR: "a file stands where a folder is needed on that path: choose another path, or move the file",
    errno.EEXIST: "a file stands where a folder is needed on that path: choose another path, or move the file",
    errno.EISDIR: "a folder stands where a file is needed: move it away",
    errno.ENAMETOOLONG: "use a shorter path",
}


def fs_error(action: str, path: Path | str | None, e: OSError) -> RunDirError:
    """A file-system failure as a user error: what was done, to which path, why, and what to do."""
    cause = e.strerror or exception_text(e)
    code = errno.errorcode.get(e.errno, "") if e.errno else ""
    where = f"cannot {action} '{path}'" if path is not None else f"cannot {action}"
    return RunDirError(f"{where}: {cause}" + (f" ({code})" if code else ""),
                       hint=_HINTS.get(e.errno, "check the path, the disk and the permissions"))


@contextlib.contextmanager
def file_system(action: str, path: Path | str):
    """Turn an OSError raised inside into `fs_error(action, path, ...)`."""
    try:
        yield
    except OSError as e:
        raise fs_error(action, path, e) from None


_steps = 0


def write_step(what: str) -> None:
    """Count one write step of this process; the kill tests' hooks act here (see the module docstring)."""
    global _steps
    _steps += 1
    log = os.environ.get("PARTC_TEST_WRITE_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{_steps} {what}\n")
    if os.environ.get("PARTC_TEST_KILL_AT") == str(_steps):
        os.kill(os.getpid(), signal.SIGKILL)


def make_folder(path: Path) -> None:
    with file_system("create the folder", path):
        path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        raise fs_error("create the folder", path, OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)))


# ---- files ----------------------------------------------------------------------------------------

def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: a temp file beside it, fsync, rename; errors name the path."""
    path = Path(path)
    make_folder(path.parent)
    with file_system("write", path):
        write_step(f"write {path.name}")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; a run's files read like any other
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            write_step(f"rename {path.name}")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def temp_files(run_dir: str | Path) -> list[Path]:
    """Temp files of writes a kill cut short, in the run directory and its checkpoints/."""
    run = Path(run_dir)
    found: list[Path] = []
    for folder in (run, run_paths(run)["checkpoints"]):
        if folder.is_dir():
            found += sorted(f for f in folder.iterdir() if f.name.startswith(".") and f.name.endswith(TEMP_SUFFIX))
    return found


def remove_temp_files(run_dir: str | Path) -> None:
    """Delete the temp files a killed writer left behind (their names come from `atomic_write_bytes`)."""
    for f in temp_files(run_dir):
        with file_system("remove the temp file", f):
            f.unlink(missing_ok=True)


# ---- the run's state and its lock -------------------------------------------------------------------

START_FILES = ("spec.part",)  # what a start-up writes before run.json, besides checkpoints/init.pt and last.pt
START_CHECKPOINTS = ("init.pt", "last.pt")


def run_state(run_dir: str | Path) -> str:
    """What is at `run_dir`: "absent", "empty", "run" (run.json is there), "unfinished" (a start-up cut
    short: nothing but the lock file, spec.part, checkpoints/init.pt, last.pt and temp files), "file" or
    "other"."""
    run = Path(run_dir)
    if not run.exists():
        return "absent"
    if not run.is_dir():
        return "file"
    with file_system("read the folder", run):
        names = {p.name for p in run.iterdir() if p.name != LOCK_NAME and p not in temp_files(run)}
        if not names:  # a lock file alone: a start-up killed before its first write
            return "unfinished" if (run / LOCK_NAME).exists() else "empty"
        if "run.json" in names:
            return "run"
        checkpoints = run_paths(run)["checkpoints"]
        if names <= {*START_FILES, "checkpoints"} and (not checkpoints.exists() or checkpoints.is_dir() and {
                p.name for p in checkpoints.iterdir() if p not in temp_files(run)} <= set(START_CHECKPOINTS)):
            return "unfinished"
    return "other"


def clear_unfinished_start(run_dir: str | Path) -> bool:
    """Remove what a cut-short start-up wrote (`run_state` "unfinished"), so the run can start again;
    whether there was anything (beside a lock file) to remove."""
    paths = run_paths(run_dir)
    start = [paths["checkpoints"] / name for name in START_CHECKPOINTS] + [Path(run_dir) / n for n in START_FILES]
    found = bool(temp_files(run_dir)) or paths["checkpoints"].is_dir() or any(p.exists() for p in start)
    remove_temp_files(run_dir)
    for path in start:
        with file_system("remove", path):
            path.unlink(missing_ok=True)
    if paths["checkpoints"].is_dir():
        with file_system("remove the folder", paths["checkpoints"]):
            paths["checkpoints"].rmdir()
    return found


class RunLock:
    """The exclusive lock on a run directory: `fcntl.flock` on RUN/.lock, which holds the holder's pid.

    One process writes a run directory at a time (a `--resume` while the run
    goes on, two runs started into one `--out`, or the ranks of a
    distributed run, where rank 0 alone takes it and writes). The kernel
    drops the lock when its process ends, however it ends; `release` also
    removes the file. Where fcntl is missing (Windows) nothing is locked.
    `created`: the folder did not exist before the lock made it.
    """

    def __init__(self, run_dir: Path, fd: int | None, created: bool = False):
        self.run_dir, self.path, self.fd, self.created = run_dir, run_dir / LOCK_NAME, fd, created

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still held: no process can take a lock on a file about to vanish
        os.close(self.fd)  # closing drops the flock
        self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_run(run_dir: str | Path) -> RunLock:
    """Take `run_dir`'s lock, creating the folder; a `RunDirError` naming the holder's pid when another has it."""
    run = Path(run_dir)
    created = not run.exists()
    make_folder(run)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return RunLock(run, None, created)
    path = run / LOCK_NAME
    for _ in range(10):  # the file can be removed between our open and our flock by a holder releasing it
        with file_system("create the lock file", path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"another partc process (pid {holder})" if holder else "another partc process"
            raise RunDirError(f"run directory '{run}' is in use by {who}",
                              hint="wait for it to finish or stop it; one process writes a run directory at a time") \
                from None
        except OSError as e:
            os.close(fd)
            raise fs_error("lock", path, e) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        with file_system("write the lock file", path):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        return RunLock(run, fd, created)
    raise RunDirError(f"cannot lock run directory '{run}': its lock file keeps changing",
                      hint="another process is starting and stopping runs there; try again")


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


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


def _finite_json(text: str) -> Any:
    """JSON where NaN or Infinity (which older partc wrote, and Python's json reads) becomes null."""
    return json.loads(text, parse_constant=lambda name: None)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
        info = _finite_json(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return {}, [f"{path} is not valid JSON ({exception_text(e, 120)})"]
    except OSError as e:
        return {}, [str(fs_error("read", path, e).message)]
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


def recorded_splits(info: dict[str, Any]) -> dict[str, Any] | None:
    """run.json's record of the run's data splits; None for a run from before splits by sample.

    A record that is there but not what partc writes (a hand edit, a damaged file) is a CheckpointError,
    not taken for an old run.
    """
    recorded = info.get("splits")
    if recorded is None:
        return None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("digests", {}), dict):
        raise CheckpointError(f"run.json has a damaged 'splits' entry ({json.dumps(recorded)[:80]}): partc "
                              "writes an object of split digests per task",
                              hint="restore run.json from a copy, or train again")
    return recorded


def load_run_network(run_dir: str | Path) -> Network:
    """The checked network of a run, from the spec text saved in it."""
    from partc.spec import loads

    paths = run_paths(run_dir)
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory '{run_dir}' does not exist",
                              hint="pass the --out folder of a 'partc train' run")
    if not paths["spec"].is_file():
        raise CheckpointError(f"'{run_dir}' is not a partc run: spec.part is missing")
    with file_system("read", paths["spec"]):
        data = paths["spec"].read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"'{paths['spec']}' is not UTF-8 text: the run's spec is damaged",
                              hint="restore it from the spec the run was trained with") from None
    return loads(text, str(paths["spec"]))


# ---- metrics and results --------------------------------------------------------------------------

def append_metrics(run_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to metrics.jsonl (fsync'd); NaN or infinity is refused, like every JSON partc writes."""
    path = run_paths(run_dir)["metrics"]
    lines = [json.dumps(row, allow_nan=False) + "\n" for row in rows]
    with file_system("append to", path), open(path, "a", encoding="utf-8") as f:
        write_step("append metrics.jsonl")
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of metrics.jsonl and a list of problems (missing file, bad lines)."""
    path = run_paths(run_dir)["metrics"]
    if not path.is_file():
        return [], [f"{path} is missing"]
    rows, problems = [], []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        return [], [fs_error("read", path, e).message]
    not_finite = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            problems.append(f"{path}:{number}: not a JSON line")
            continue
        if not isinstance(row, dict) or not {"epoch", "task", "split"} <= set(row):
            problems.append(f"{path}:{number}: missing epoch/task/split")
            continue
        finite = {k: _finite(v) for k, v in row.items()}
        not_finite += finite != row
        rows.append(finite)
    if not_finite:
        problems.append(f"{path}: {not_finite} row(s) hold NaN or infinite values, read as missing")
    return rows, problems


def keep_metrics_until(run_dir: str | Path, epoch: int) -> None:
    """Drop the rows of epochs after `epoch` (an unfinished epoch of a killed run) and any cut line."""
    path = run_paths(run_dir)["metrics"]
    if not path.is_file():
        return
    kept = []
    with file_system("read", path):
        text = path.read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
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
        data = _finite_json(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError, OSError) as e:
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
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: str | Path, net: Network | None = None, *, require: tuple[str, ...] = ("model",)
                    ) -> dict[str, Any]:
    """Read and validate a checkpoint: a partc checkpoint with the `require`d entries, and with `net`, one of
    that network's. Any file that is not one (empty, cut, foreign, damaged) is a `CheckpointError`."""
    import io

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    with file_system("read", path):
        data = path.read_bytes()  # read here, so that whatever torch raises below is about the content
    if not data:
        raise CheckpointError(f"checkpoint '{path}' is empty (0 bytes)", hint=_EARLIER)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes torch's unpickler raise
        raise CheckpointError(f"checkpoint '{path}' is corrupt or truncated ({exception_text(e, 120)})",
                              hint=_EARLIER) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"'{path}' is not a partc checkpoint", hint=f"expected format {CHECKPOINT_FORMAT}")
    if net is not None and not net.matches_hash(state.get("spec_hash")):
        raise CheckpointError(
            f"checkpoint '{path}' belongs to another spec (spec hash {state.get('spec_hash')}, expected {net.spec_hash})",
            hint="a checkpoint only loads into the network of the spec it was trained from",
        )
    missing = [key for key in require if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint '{path}' has no '{missing[0]}' entry (it has {', '.join(map(str, state))})",
                              hint=_EARLIER)
    kinds = {"model": dict, "optimizer": dict, "rng": dict, "config": dict, "data_stats": dict, "epoch": int}
    for key in require:
        kind = kinds.get(key)
        if kind is not None and (not isinstance(state[key], kind) or isinstance(state[key], bool)):
            raise CheckpointError(f"checkpoint '{path}': its '{key}' entry is a {type(state[key]).__name__}, "
                                  f"not a {kind.__name__}", hint=_EARLIER)
    if "epoch" in require and state["epoch"] < 0:
        raise CheckpointError(f"checkpoint '{path}': its epoch is {state['epoch']}", hint=_EARLIER)
    return state


_EARLIER = "use an earlier checkpoint of the run (copy a loadable epoch_NNNN.pt over last.pt), or train again"


def point_last(run_dir: str | Path, target: Path) -> None:
    """Make last.pt the same file as `target`, atomically (hard link, or a copy where links fail)."""
    last = run_paths(run_dir)["last"]
    tmp = last.with_name(f".last.pt.link{TEMP_SUFFIX}")
    with file_system("replace", last):
        write_step("link last.pt")
        tmp.unlink(missing_ok=True)
        try:
            os.link(target, tmp)
            os.replace(tmp, last)
            return
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if e.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
                raise
        data = target.read_bytes()
    atomic_write_bytes(last, data)


def prune_checkpoints(run_dir: str | Path, keep: set[int]) -> None:
    """Delete epoch checkpoints whose epoch is not in `keep` (init.pt and last.pt stay)."""
    with file_system("prune the checkpoints in", run_paths(run_dir)["checkpoints"]):
        write_step("prune checkpoints")
    for f in run_paths(run_dir)["checkpoints"].glob("epoch_*.pt"):
        try:
            number = int(f.stem.split("_")[1])
        except (IndexError, ValueError):
            continue
        if number not in keep:
            with file_system("remove", f):
                f.unlink(missing_ok=True)


def state_dict_problem(e: Exception, limit: int = 240) -> str:
    """torch's load_state_dict error reduced to its first problem, which names the key: "size mismatch for
    levels.l1.0.0.weight: copying a param with shape [8, 1, 3, 3] ..., (and 2 more)"."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if lines and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    if not lines:
        return exception_text(e, limit)
    text = lines[0] if len(lines[0]) <= limit else lines[0][: limit - 3] + "..."
    return text + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")


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
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint '{ckpt_path}' does not fit the network: {state_dict_problem(e)}",
                              hint=_EARLIER) from None
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
