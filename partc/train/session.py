"""Train stage, one training session: model, optimizers, data feeds and their state.

`Trainer` builds everything an epoch needs from the checked network, the
resolved settings and the loaded data, runs epochs and evaluations, and
gives (or takes back) its complete state for a checkpoint: weights,
optimizer moments, and every random generator it draws from (python,
numpy, torch CPU and CUDA, and its own data-order and augmentation
generators with their positions). Restoring that state makes the rest of
a run bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from partc.errors import CheckpointError, DataError, exception_text
from partc.ir import Network
from partc.run import state_dict_problem
from partc.train.config import TrainConfig, build_optimizer, set_lr
from partc.train.device import Runtime
from partc.train.distributed import World, replicate
from partc.train.loop import Meter, TaskFeed, evaluate_batches, fused_epoch, interleaved_epoch, summed
from partc.train.sampling import TaskStream, interleaved_schedule, make_generator, steps_per_epoch, task_batch_sizes

SPLITS = ("train", "val", "test")


def as_tensors(pair) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = pair
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)


def check_data(net: Network, datasets: dict[str, Any]) -> None:
    """Every task has training samples of its input's shape and labels within its classes."""
    for name, task in net.tasks.items():
        if name not in datasets:
            raise DataError(f"no data was loaded for task '{name}'", task.loc)
        shape = tuple(net.inputs[task.input].shape)
        for split in SPLITS:
            x, y = as_tensors(getattr(datasets[name], split))
            if split == "train" and x.shape[0] == 0:
                raise DataError(f"task '{name}' has no training samples", task.loc)
            if x.shape[0] and tuple(x.shape[1:]) != shape:
                raise DataError(f"task '{name}' {split} samples have shape {list(x.shape[1:])}, its input "
                                f"'{task.input}' is {list(shape)}", task.loc)
            if x.shape[0] != y.shape[0]:
                raise DataError(f"task '{name}' {split} split has {x.shape[0]} samples but {y.shape[0]} labels")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= task.classes):
                raise DataError(f"task '{name}' {split} labels run {int(y.min())}..{int(y.max())}, its head has "
                                f"{task.classes} classes", task.loc)


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Every per-parameter state tensor (Adam's moments, SGD's momentum) has its parameter's shape.

    torch's `load_state_dict` checks only the number of parameters; a wrong
    shape would otherwise fail at the first step, after the run directory
    had been rewritten.
    """
    for group in optimizer.param_groups:
        for index, param in enumerate(group["params"]):
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    raise ValueError(f"'{key}' of parameter {index} has shape {list(value.shape)}, "
                                     f"the parameter {list(param.shape)}")


def data_stats(datasets: dict[str, Any]) -> dict[str, dict]:
    """Normalisation and labels of each task: export and serve need them to preprocess inputs."""
    def floats(v):
        return [float(f) for f in torch.as_tensor(v, dtype=torch.float64).flatten().tolist()]

    return {t: {"mean": floats(d.mean), "std": floats(d.std), "labels": [str(label) for label in d.labels]}
            for t, d in datasets.items()}


def _load_over(model, state: dict[str, Any]) -> None:
    """Load `state` (a base run's weights) over a freshly initialised model that has every one of its keys."""
    own = model.state_dict()
    foreign = [k for k in state if k not in own or own[k].shape != state[k].shape]
    if foreign:  # the extension check keeps base segments, stems and heads unchanged: a bug if this happens
        raise CheckpointError(f"base weights do not fit the grown network ({foreign[0]})")
    model.load_state_dict({**own, **state})


def _batch_origin(batch: int, sampling: float, samples: int) -> str:
    """How a task's batch came about, for messages."""
    made = f"batch {batch}" if sampling == 1 else f"batch {batch} x sampling {sampling:g}"
    return made if round(batch * sampling) <= samples else f"{made}, capped at its {samples} training samples"


class Trainer:
    """One training session. With `growth` (partc extend) only the new tasks train and the base tasks'
    modules are frozen; every task is still evaluated. `initial_state` holds weights loaded over the
    seeded initialisation before training starts (the base run's, for an extension). In a `world` of
    several processes each takes its share of every batch and steps the model through DDP."""

    def __init__(self, net: Network, cfg: TrainConfig, runtime: Runtime, datasets: dict[str, Any],
                 growth=None, initial_state: dict[str, Any] | None = None, world: World | None = None):
        from partc.compiler import compile_network

        self.net, self.cfg, self.runtime = net, cfg, runtime
        self.world = world or World(device=runtime.device)
        self.growth = growth
        self.tasks = list(net.tasks)  # evaluated
        self.train_tasks = [t for t in self.tasks if growth is None or t in growth.new_tasks]  # trained
        self.classes = {t: net.tasks[t].classes for t in self.tasks}
        self.weights = {t: net.tasks[t].weight for t in self.train_tasks}
        torch.manual_seed(cfg.seed)  # initial weights: the same for the same spec and seed
        model = compile_network(net, batchnorm=cfg.batchnorm)
        if initial_state is not None:
            _load_over(model, initial_state)
        if growth is not None and growth.frozen_modules:
            model.freeze(growth.frozen_modules)
        self.model = runtime.prepare_model(model)
        options = runtime.optimizer_options()
        trainable = lambda params: [p for p in params if p.requires_grad]  # noqa: E731
        if cfg.mode == "fused":
            on_route = {id(p) for t in self.train_tasks for p in self.model.task_parameters(t)}
            # Only parameters on some task's route: an unused segment is never touched (not even weight decay).
            params = [p for p in self.model.parameters() if id(p) in on_route]
            self.optimizers = {"all": build_optimizer(cfg, trainable(params), options)}
        else:
            self.optimizers = {t: build_optimizer(cfg, trainable(self.model.task_parameters(t)), options)
                               for t in self.train_tasks}

        train = {t: as_tensors(datasets[t].train) for t in self.train_tasks}
        sizes = {t: int(train[t][1].shape[0]) for t in self.train_tasks}
        self.batch_sizes = task_batch_sizes(cfg.batch, {t: net.tasks[t].sampling for t in self.train_tasks}, sizes)
        self.world.check_batches(self.batch_sizes, {t: _batch_origin(cfg.batch, net.tasks[t].sampling, sizes[t])
                                                    for t in self.train_tasks})
        self.steps = steps_per_epoch(sizes, self.batch_sizes, cfg.epoch_policy)
        self.order_generator = make_generator(cfg.seed, "order")
        self.streams = {t: TaskStream(sizes[t], make_generator(cfg.seed, "shuffle", t)) for t in self.train_tasks}
        self.augment_generators = {t: make_generator(cfg.seed, "augment", t) for t in self.train_tasks}
        self.feeds = {}
        for t in self.train_tasks:
            augment = datasets[t].augment_batch if getattr(datasets[t], "augment", False) else None
            share = self.world.share(self.batch_sizes[t]) if self.world.distributed else None
            self.feeds[t] = TaskFeed(*train[t], self.batch_sizes[t], self.streams[t], augment,
                                     self.augment_generators[t], runtime, share)
        self.eval_data = {}
        for t in self.tasks:
            for split in ("val", "test"):
                x, y = as_tensors(getattr(datasets[t], split))
                if y.shape[0]:
                    self.eval_data[t, split] = tuple(runtime.place([x, y]))
        self.stats = data_stats({t: datasets[t] for t in self.tasks})
        self.stepped = replicate(self.model, self.optimizers, self.world, cfg.mode, self.train_tasks)  # what the loop steps

    @property
    def steps_per_epoch_total(self) -> int:
        """Optimizer steps in one epoch (all tasks together in fused mode, one per task batch otherwise)."""
        return self.steps if self.cfg.mode == "fused" else self.steps * len(self.train_tasks)

    def train_epoch(self, epoch_index: int, tick) -> dict[str, dict]:
        """Train one epoch (0-based index); the tasks' running train metrics."""
        set_lr(self.optimizers.values(), self.cfg, epoch_index)
        self.world.seed_rank(self.cfg.seed, epoch_index)
        meters = {t: Meter(self.classes[t], self.runtime.device) for t in self.train_tasks}
        if self.cfg.mode == "fused":
            fused_epoch(self.stepped, self.optimizers["all"], self.feeds, self.weights, self.steps, meters,
                        self.runtime, tick)
        else:
            schedule = interleaved_schedule(self.train_tasks, self.steps, self.cfg.steps_per_task, self.order_generator)
            interleaved_epoch(self.stepped, self.optimizers, self.feeds, self.weights, schedule, meters,
                              self.runtime, tick)
        self.world.sum_meters(meters)
        self.world.sync_buffers(self.model)
        return {t: m.result() for t, m in meters.items()}

    def evaluate_one(self, key: tuple[str, str], x, y) -> dict:
        """Loss/top1/top5/samples of one (task, split) of `eval_data`; several processes share its batches."""
        world, classes = self.world, self.classes[key[0]]
        found = evaluate_batches(self.model, key[0], x, y, classes, self.runtime, rank=world.rank, size=world.size)
        if world.distributed:
            found = [row for rows in world.gather([(n, sums.cpu(), k) for n, sums, k in found]) for row in rows]
        return summed(found, classes, self.runtime.device)

    # ---- checkpoint state ----
    def state_dict(self) -> dict[str, Any]:
        optimizer = (self.optimizers["all"].state_dict() if self.cfg.mode == "fused"
                     else {t: opt.state_dict() for t, opt in self.optimizers.items()})
        return {"model": self.model.state_dict(), "optimizer": optimizer, "rng": self.rng_state(),
                "config": self.cfg.to_dict(), "mode": self.cfg.mode, "data_stats": self.stats}

    def load_state_dict(self, state: dict[str, Any], where: str) -> None:
        """Take a checkpoint's state, checked whole first: a damaged one is a `CheckpointError`, nothing half set."""
        stats = state.get("data_stats")
        if not isinstance(stats, dict) or stats.keys() != self.stats.keys() or any(
                not isinstance(stats[t], dict) or stats[t].get("labels") != self.stats[t]["labels"] for t in self.tasks):
            raise CheckpointError(f"checkpoint '{where}' was trained on other data (tasks or class labels differ)",
                                  hint="resume with the data the run was trained on")
        try:
            self.model.load_state_dict(state["model"])
        except (KeyError, RuntimeError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint '{where}' does not fit this run: {state_dict_problem(e)}") from None
        optimizers = {"all": state["optimizer"]} if self.cfg.mode == "fused" else state["optimizer"]
        for name, opt in self.optimizers.items():
            try:
                opt.load_state_dict(optimizers[name])
                _check_optimizer_state(opt)
            except Exception as e:  # noqa: BLE001 - a damaged file can make torch raise anything here
                which = "optimizer state" if name == "all" else f"optimizer state of task '{name}'"
                raise CheckpointError(f"checkpoint '{where}': its {which} does not fit this run "
                                      f"({exception_text(e, 200)})") from None
        try:
            self.set_rng_state(state["rng"])
        except Exception as e:  # noqa: BLE001 - as above
            raise CheckpointError(f"checkpoint '{where}': its random generator state is damaged "
                                  f"({exception_text(e, 200)})") from None

    def rng_state(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)],
            "torch": torch.get_rng_state(),
            "cuda": self.runtime.rng_state() or [],
            "order": self.order_generator.get_state(),
            "streams": {t: s.state_dict() for t, s in self.streams.items()},
            "augment": {t: g.get_state() for t, g in self.augment_generators.items()},
        }

    def set_rng_state(self, rng: dict[str, Any]) -> None:
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(rng["torch"])
        self.runtime.set_rng_state(rng["cuda"])  # a CPU run resumed on a GPU has none: CUDA stays seeded
        self.order_generator.set_state(rng["order"])
        for t, s in self.streams.items():
            s.load_state_dict(rng["streams"][t])
        for t, g in self.augment_generators.items():
            g.set_state(rng["augment"][t])
