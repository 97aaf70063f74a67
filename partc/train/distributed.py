"""Train stage, several processes: one run across the processes torchrun starts (torch.distributed, DDP).

`partc train` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, ...). Without it, or with a
world of one process, it trains as a single process and nothing here runs but `World()`. With more:

- `joined` starts the process group: NCCL with one GPU per local rank (`cuda:LOCAL_RANK`), gloo on the
  CPU; a peer that does not show up within the timeout is a `TrainError` (exit 2).
- `World.agree` is the one place where the processes compare what they are about to do before the run
  directory is touched: every rank's error (one failing rank fails them all, each with a message),
  and a fingerprint (spec hash, partc version and code digest, torch version, the resolved settings,
  the data) that must equal rank 0's.
- Each task's `batch` stays the global batch: every rank draws the same index stream (the same
  generators, seeded from the spec) and takes its fixed slice of each batch (`World.share`);
  augmentation draws for the whole batch too, so N processes see exactly the images one would.
  The loss is each rank's mean over its equal slice and DDP averages the gradients, so the step is
  the single-process step of the global batch, up to floating-point reduction order.
- `replicate`: fused mode uses every parameter on a route every step, so it runs under plain
  DistributedDataParallel (static graph; parameters on no route are left out). Interleaved mode runs
  one task's route per step, the same on every rank; that task's optimizer averages the route's
  gradients in one all-reduce before it steps (a step pre-hook), so only the route crosses the network.
  That measured faster than one DDP with `find_unused_parameters` (which reduces every parameter every
  step) and than a DDP per route (bench/dist_speed.py, docs/BENCHMARKS.md).
- Evaluation is sharded by whole batches of the single-process evaluation and the per-batch sums are
  summed on every rank in batch order: the figures equal a single-process evaluation exactly.
- Rank 0 alone writes the run directory; on `--resume` it reads the checkpoint and broadcasts it, so
  every rank starts from the same state (the run directory need not be on a shared file system).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch

from partc.devices import pick_device
from partc.errors import PartError, TrainError

DEFAULT_TIMEOUT_S = 600  # joining the group and each collective (NCCL's own default)
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass
class World:
    """The processes of one run; a single process is a world of one (every method is then trivial)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # None: no process group
    restart: int = 0  # torchrun's TORCHELASTIC_RESTART_COUNT: how often the group was started again
    launch_id: str | None = None  # torchrun's rendezvous id (TORCHELASTIC_RUN_ID)
    rank0_reports: bool = False  # this rank stopped on an error that rank 0 prints too (no need to repeat it)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run directory and prints."""
        return self.rank == 0

    def describe(self) -> str:
        return f"{self.size} processes ({self.backend})" if self.distributed else "1 process"

    # ---- agreement before anything is written ----
    def agree(self, error: PartError | None, fingerprint: dict[str, Any] | None = None) -> None:
        """Raise on every rank when any rank met an error or its fingerprint differs from rank 0's."""
        if not self.distributed:
            if error is not None:
                raise error
            return
        mine = {"error": error.render() if error is not None else None, "fingerprint": fingerprint}
        everyone: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(everyone, mine)
        if error is not None:
            self.rank0_reports = all(e["error"] == mine["error"] for e in everyone)
            raise error
        failed = [(r, e["error"]) for r, e in enumerate(everyone) if e["error"] is not None]
        if failed:
            rank, message = failed[0]
            self.rank0_reports = True
            raise TrainError(f"rank {rank} of {self.size} stopped: {message.splitlines()[0]}",
                             hint="see that rank's message; every rank stops before the run directory is touched")
        reference = everyone[0]["fingerprint"] or {}
        for rank, entry in enumerate(everyone[1:], 1):
            theirs = entry["fingerprint"] or {}
            for key in reference:
                if theirs.get(key) != reference[key]:
                    self.rank0_reports = True
                    raise TrainError(f"rank {rank} has another {key} than rank 0 ({_short(theirs.get(key))} "
                                     f"against {_short(reference[key])})",
                                     hint="every process must run the same partc code, spec, settings and data")

    def agreed(self, action, *args, fingerprint: dict[str, Any] | None = None):
        """`action(*args)` on this rank, then `agree` (with `fingerprint`): its result, or every rank raises."""
        try:
            result, error = action(*args), None
        except PartError as e:
            result, error = None, e
        self.agree(error, fingerprint)
        return result

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (any picklable object, tensors included)."""
        if not self.distributed:
            return value
        box = [value if self.main else None]
        torch.distributed.broadcast_object_list(box, src=0, device=self._object_device())
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order."""
        if not self.distributed:
            return [value]
        everyone: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(everyone, value)
        return everyone

    def _object_device(self) -> torch.device | None:
        return self.device if self.backend == "nccl" else None

    # ---- batches ----
    def check_batches(self, batches: dict[str, int], described: dict[str, str]) -> None:
        """Every task's global batch splits into equal slices, one per rank (else the gradient would weigh
        ranks unequally); a clear error naming the task and the world sizes that would do."""
        if not self.distributed:
            return
        bad = [t for t, b in batches.items() if b % self.size]
        if bad:
            task = bad[0]
            would = [n for n in range(2, max(batches.values()) + 1) if all(b % n == 0 for b in batches.values())]
            choices = ", ".join(map(str, would[:12])) if would else "none but 1"
            made = f" ({described[task]})" if described[task] != f"batch {batches[task]}" else ""
            raise TrainError(f"task '{task}' has a batch of {batches[task]}{made}, which {self.size} processes "
                             f"cannot share equally",
                             hint=f"process counts that divide every task's batch: {choices}; or change "
                                  f"the spec's batch (or the task's sampling)")

    def share(self, batch: int) -> slice:
        """This rank's rows of a global batch of `batch` rows (the batch divides: `check_batches`)."""
        part = batch // self.size
        return slice(self.rank * part, (self.rank + 1) * part)

    # ---- reductions ----
    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over the ranks, in place."""
        if self.distributed:
            torch.distributed.all_reduce(tensor)
        return tensor

    def sum_meters(self, meters: dict) -> None:
        """Add up the ranks' running train metrics (`Meter`s): one all-reduce for every task together."""
        if not self.distributed or not meters:
            return
        tasks = list(meters)
        table = torch.stack([torch.cat([meters[t].sums, meters[t].sums.new_tensor([meters[t].samples])]) for t in tasks])
        torch.distributed.all_reduce(table)
        for t, row in zip(tasks, table):
            meters[t].sums = row[:3].clone()
            meters[t].samples = int(row[3].item())

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank, as DDP does before each forward:
        evaluation and the checkpoint then see one model."""
        if self.distributed:
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def seed_rank(self, seed: int, epoch_index: int) -> None:
        """Reseed the global torch generators (dropout) per rank and epoch, so ranks draw different masks
        and a restarted group draws what an uninterrupted one would (a single process keeps its stream)."""
        if self.distributed:
            from partc.seeds import derived_seed

            torch.manual_seed(derived_seed(seed, "rank", self.rank, "epoch", epoch_index))

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---- joining ---------------------------------------------------------------------------------------

def _environment_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise TrainError(f"the launcher set {name}={value!r}, not a whole number",
                         hint="start partc under torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK") from None


def launched_world() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from torchrun's environment, or None outside torchrun."""
    if "WORLD_SIZE" not in os.environ:
        return None
    size = _environment_int("WORLD_SIZE")
    rank = _environment_int("RANK") if "RANK" in os.environ else 0
    local = _environment_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    if not (size >= 1 and 0 <= rank < size and 0 <= local):
        raise TrainError(f"the launcher set RANK={rank} WORLD_SIZE={size} LOCAL_RANK={local}, which do not fit")
    return rank, size, local


@contextlib.contextmanager
def joined(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[World]:
    """The world this process trains in: under torchrun with more than one process, the process group
    (started here and ended on exit); else a single process on `device`."""
    launched = launched_world()
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    launch_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if launched is None or launched[1] == 1:
        yield World(device=pick_device(device), restart=restart, launch_id=launch_id)
        return
    rank, size, local = launched
    picked = pick_device(device)
    if picked.type == "cuda":
        if local >= torch.cuda.device_count():
            raise TrainError(f"local rank {local} has no GPU of its own: this machine has {torch.cuda.device_count()}",
                             hint="start at most one process per GPU (--nproc-per-node), or use --device cpu")
        picked = torch.device("cuda", local)
        torch.cuda.set_device(picked)
    backend = "nccl" if picked.type == "cuda" else "gloo"
    world = World(rank, size, local, picked, backend, restart, launch_id)
    if torch.distributed.is_initialized():  # a caller (Python) started the group itself: use it, leave it
        yield world
        return
    host, port = os.environ.get("MASTER_ADDR", "127.0.0.1"), _environment_int("MASTER_PORT")
    where, timeout = f"{host}:{port}", timedelta(seconds=timeout_s)
    try:
        # torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE) and keeps it across restarts of the
        # group: keys of each start get their own prefix, or a restarted rank could read a dead peer's
        # address and fail to connect ("Connection refused"). Without torchrun, rank 0 hosts it.
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        store = torch.distributed.TCPStore(host, port, size, is_master=not agent_store and rank == 0,
                                           timeout=timeout, multi_tenant=not agent_store)
        store = torch.distributed.PrefixStore(f"partc/start{restart}", store)
        torch.distributed.init_process_group(backend, store=store, rank=rank, world_size=size, timeout=timeout,
                                             device_id=picked if backend == "nccl" else None)
    except (RuntimeError, ValueError, TimeoutError, OSError) as e:
        raise TrainError(f"rank {rank} of {size} could not join the others at {where} within {timeout_s:g} s: "
                         f"{(str(e).splitlines() or [''])[0][:200]}",
                         hint="check that every node can reach the rendezvous endpoint and that all "
                              f"{size} processes were started (--dist-timeout sets the wait)") from None
    try:
        yield world
        # No rank tears its end of the group down while another still uses it (without this, gloo's
        # threads sometimes aborted a finished worker: "terminate called without an active exception").
        torch.distributed.barrier()
    finally:
        gc.collect()  # DDP reducers of the finished run still hold the group: free them while it exists
        torch.distributed.destroy_process_group()


def exit_now(code: int) -> None:
    """End a worker at once, output flushed: torchrun stops the other workers as soon as one exits, and
    a rank still tearing down the interpreter would then die by its signal instead of `code`."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def code_fingerprint() -> dict[str, str]:
    """What the ranks must share besides the spec: partc's version and source, torch's version."""
    from partc.version import __version__, code_digest

    return {"partc version": __version__, "partc code": code_digest(), "torch version": torch.__version__}


# ---- the replicated model --------------------------------------------------------------------------

class _Entry(torch.nn.Module):
    """The fused step as a module's forward, for DDP to wrap."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batches: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.forward_all(batches)


class FusedReplica:
    """A PartModel's fused step under DDP, called as the training loop calls the model (`forward_all`,
    `train()`); DDP averages the gradients over the ranks during backward."""

    def __init__(self, model, world: World, tasks: list[str]):
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.model = model
        entry = _Entry(model)
        on_route = {id(p) for t in tasks for p in model.task_parameters(t)}
        off_route = [name for name, p in model.named_parameters() if id(p) not in on_route]
        owners = {_owner(name) for name in off_route}
        off_route += [name for name, _ in model.named_buffers() if _owner(name) in owners]
        # Parameters on no trained task's route never get a gradient: DDP must not wait for them.
        DDP._set_params_and_buffers_to_ignore_for_model(entry, [f"model.{name}" for name in off_route])
        self.ddp = DDP(entry, device_ids=[world.local_rank] if world.backend == "nccl" else None, static_graph=True)

    def forward_all(self, batches: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.ddp(batches)

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self


def _owner(name: str) -> str:
    """The module path of a parameter or buffer name."""
    return name.rsplit(".", 1)[0]


def _averaging_hook(world: World):
    """An optimizer step pre-hook: its parameters' gradients averaged over the ranks, in one all-reduce."""

    def average(optimizer, _args, _kwargs) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= world.size
        for g, value in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(value.view_as(g))

    return average


def replicate(model, optimizers: dict, world: World, mode: str, tasks: list[str]):
    """The model the training loop steps: `model` itself in a single process; in several, fused mode
    steps it through DDP, and interleaved mode has each task's optimizer average its gradients first."""
    if not world.distributed:
        return model
    if mode == "fused":
        return FusedReplica(model, world, tasks)
    for optimizer in optimizers.values():
        optimizer.register_step_pre_hook(_averaging_hook(world))
    return model
