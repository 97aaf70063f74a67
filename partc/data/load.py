"""Data stage: a checked network's task -> train/val/test tensors (`TaskData`).

    load_task_data(net, task, data_root=None) -> TaskData
    load_all(net, data_root=None)             -> {task: TaskData}   (reads each source once)

Every source goes through the same steps after its reader (the registry in
`partc.data.sources`) has produced its samples:

1. classes (`partc.data.splits`): the task's labels (head order) are looked up in the source's
   class names (or taken as class ids); a lookup table maps source ids to
   0..k-1. (The PaRT reference remaps in place, one class at a time, which
   merges classes when an old id equals an already assigned new one.)
2. splits (`partc.data.splits`), by sample: every sample's role follows
   from the network seed and the sample's identity, planned together for
   all tasks on the same source: the source's own test split where it has
   one (CIFAR, npz with x_test), else round(`test` x n_c) (0.2) of each
   class c; then round(`val` x rest) (0.1) of each class; a sample some
   task holds out trains no task; then `limit` caps the training samples,
   keeping the class balance. `label_noise` then makes a share of the
   training labels wrong (`partc.data.noise`).
3. normalisation (`partc.data.normalise`; `normalize=true`, the default): per-channel mean and std
   of the *training* split (channel = axis 1 of the batch, so a flat input
   gets per-feature statistics), applied to every split and kept in
   `TaskData.mean/std` for exports. A channel with std ~0 keeps std 1.

Paths in a spec (`cifar100("data/...")`, `npz("x.npz")`, `folder("imgs")`)
are looked up relative to `data_root` (default: the current directory)
first, then relative to the spec file's folder; the error lists both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from partc.data.augment import PERSPECTIVE_P
from partc.data.augment import augment_batch as _augment_batch
from partc.data.augment import perspective_batch as _perspective_batch
from partc.data.catalog import OPTION_DEFAULTS, SOURCES, check_combination, check_option, check_size
from partc.data.noise import noisy_labels
from partc.data.normalise import channel_stats, normalise
from partc.data.raw import RawData
from partc.data.sources import SourceReader
from partc.data.splits import SplitPlan, TaskRequest, check_classes, class_ids, plan_splits, relabel, select_classes
from partc.errors import DataError
from partc.ir import DataSpec, Network, Task
from partc.language.printer import shape_text, value_text

Split = tuple[torch.Tensor, torch.Tensor]  # x float32 (n, *input_shape), y int64 (n,)



@dataclass
class TaskData:
    """One task's data, ready for training: y follows `labels` (the task's head order)."""

    task: str
    source: str
    train: Split
    val: Split
    test: Split
    labels: list[str]
    mean: list[float]  # per channel; already applied to x (identity 0/1 when normalize=false)
    std: list[float]
    augment: bool  # the spec asks for augment_batch on training batches
    input_shape: tuple[int, ...] = field(default=())
    perspective: float = 0.0  # distortion scale of augment_batch's random perspective (0: none)
    ids: dict[str, np.ndarray] | None = None  # {split: identity of each sample} (`partc.data.identity`)

    @property
    def classes(self) -> int:
        return len(self.labels)

    @property
    def pad_value(self) -> list[float]:
        """A black pixel after normalisation: what augmentation pads with."""
        return [(0.0 - m) / s for m, s in zip(self.mean, self.std, strict=True)]

    def split_digest(self) -> str | None:
        """16 hex digits naming which samples are in which split: runs with equal digests saw the same splits."""
        if self.ids is None:
            return None
        h = hashlib.sha256()
        for split in ("train", "val", "test"):
            h.update(split.encode() + np.sort(np.asarray(self.ids[split], dtype="<u8")).tobytes())
        return h.hexdigest()[:16]

    def augment_batch(self, x: torch.Tensor, generator: torch.Generator,
                      part: tuple[int, int] | None = None) -> torch.Tensor:
        """Random crop (padding 4), horizontal flip, then random perspective when asked; see `partc.data.augment`.

        The paper's order (torchvision's RandomCrop, RandomHorizontalFlip,
        RandomPerspective); every draw comes from `generator`. `part` (start, total): x is rows
        start.. of a batch of `total`, augmented as they would be in the whole batch (distributed training).
        """
        out = _augment_batch(x, generator, fill=self.pad_value, part=part)
        if self.perspective > 0:
            out = _perspective_batch(out, generator, self.perspective, p=PERSPECTIVE_P, fill=self.pad_value, part=part)
        return out


def load_task_data(net: Network, task: str, *, data_root: str | Path | None = None) -> TaskData:
    """The data of one task of a checked network."""
    return _Loader(net, data_root).load(task)


def load_all(net: Network, data_root: str | Path | None = None) -> dict[str, TaskData]:
    """Every task's data, in spec order; each source (file, folder, data set) is read once."""
    loader = _Loader(net, data_root)
    return {name: loader.load(name) for name in net.tasks}


def search_bases(net: Network, data_root: str | Path | None = None) -> list[Path]:
    """Where relative data paths are looked up, in order: data_root (or the current directory), the spec's folder."""
    bases = [Path(data_root if data_root is not None else Path.cwd()).expanduser().resolve()]
    if net.file and not net.file.startswith("<"):
        bases.append(Path(net.file).expanduser().resolve().parent)
    return bases


@dataclass
class _Prepared:
    """A task's options, its source's samples and its classes: everything its split needs."""

    task: Task
    spec: DataSpec
    shape: tuple[int, ...]
    opts: dict[str, Any]
    raw: RawData
    class_ids: list[int]
    labels: list[str]


class _Loader:
    """Loads tasks of one network: raw samples (`sources`), classes and splits (`splits`), normalisation."""

    def __init__(self, net: Network, data_root: str | Path | None):
        self.net = net
        self.reader = SourceReader(net, search_bases(net, data_root))
        self.prepared: dict[str, _Prepared] = {}
        self.plans: dict[str, SplitPlan] = {}

    def load(self, name: str) -> TaskData:
        if name not in self.net.tasks:
            raise KeyError(f"no task '{name}' in network '{self.net.name}' (tasks: {', '.join(self.net.tasks)})")
        p = self._prepare(name)
        plan = self._plan(name)
        raw, spec, shape, opts = p.raw, p.spec, p.shape, p.opts
        y = relabel(raw.y[plan.train], p.class_ids)
        why = "training samples left after the test/val/limit split"
        if plan.dropped:
            why += f" ({plan.dropped} held out by the val/test split of this or another task on {spec.source})"
        check_classes(y, p.labels, spec, raw, why)
        if opts["label_noise"]:
            y = noisy_labels(y, raw.ids[plan.train], len(p.labels), opts["label_noise"], self.net.seed, name)
        test_x, test_y, test_ids = ((raw.x_test, raw.y_test, raw.test_ids) if plan.test_from_own_split
                                    else (raw.x, raw.y, raw.ids))

        train_x = _gather(raw, raw.x, plan.train, shape)
        val_x = _gather(raw, raw.x, plan.val, shape)
        test_x = _gather(raw, test_x, plan.test, shape)
        channels = shape[0]
        if opts["normalize"]:
            mean, std = channel_stats(train_x)
            for x in (train_x, val_x, test_x):
                normalise(x, mean, std)
        else:
            mean, std = np.zeros(channels), np.ones(channels)

        def split(x: np.ndarray, labels_: np.ndarray) -> Split:
            return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(labels_, dtype=np.int64))

        return TaskData(
            task=name, source=spec.source,
            train=split(train_x, y), val=split(val_x, relabel(raw.y[plan.val], p.class_ids)),
            test=split(test_x, relabel(test_y[plan.test], p.class_ids)),
            labels=p.labels, mean=[float(m) for m in mean], std=[float(s) for s in std],
            augment=bool(opts["augment"]), input_shape=shape, perspective=float(opts["perspective"]),
            ids={"train": raw.ids[plan.train], "val": raw.ids[plan.val], "test": test_ids[plan.test]},
        )

    def _prepare(self, name: str) -> _Prepared:
        if name in self.prepared:
            return self.prepared[name]
        task = self.net.tasks[name]
        spec = task.data
        if spec is None:
            raise DataError(f"task '{name}' has no data", task.loc, "add e.g. 'data digits(classes=[0, 1])'")
        shape = tuple(self.net.inputs[task.input].shape)
        opts = _options(spec, shape, task.classes)
        raw = self.reader.read(task, spec, opts, shape)
        _check_shape(raw.x.shape[1:], shape, task, spec)
        ids, labels = class_ids(task, raw.names, spec)
        _, y = select_classes(raw.y, ids)
        check_classes(y, labels, spec, raw, "samples", before_split=True)
        if raw.x_test is not None and "test" in spec.args:  # an npz file with x_test (the check refuses CIFAR's)
            raise DataError(f"{spec.source} data has its own test split, so test= does not apply", spec.loc,
                            "drop test=...; val= takes the validation part from the training split")
        self.prepared[name] = _Prepared(task, spec, shape, opts, raw, ids, labels)
        return self.prepared[name]

    def _plan(self, name: str) -> SplitPlan:
        """The task's split, planned with every task on the same source, so none trains on what another holds out."""
        if name not in self.plans:
            source = self.net.tasks[name].data.source
            group = []
            for other, task in self.net.tasks.items():
                if task.data is None or task.data.source != source:
                    continue
                try:
                    group.append(self._prepare(other))
                except DataError:
                    if other == name:
                        raise
                    # A task whose data cannot be read holds nothing out; loading it reports why.
            requests = [TaskRequest(p.raw.y, p.raw.ids, p.class_ids, p.opts["test"], p.opts["val"], p.opts["limit"],
                                    p.raw.y_test, p.raw.test_ids) for p in group]
            for p, plan in zip(group, plan_splits(requests, self.net.seed), strict=True):
                self.plans[p.task.name] = plan
        return self.plans[name]


def _options(spec: DataSpec, shape: tuple[int, ...], classes: int) -> dict[str, Any]:
    """The task's data options with defaults, checked by the catalog's rules (networks not made by `partc check`)."""
    for key, value in spec.args.items():
        problem = check_option(key, value)
        if problem:
            raise DataError(f"data source '{spec.source}': {problem}, got {value_text(value)}", spec.loc)
    for rule in (check_combination(SOURCES[spec.source], spec.args, shape),
                 check_size(SOURCES[spec.source], spec.args, shape, classes)):
        if rule is not None:
            raise DataError(f"data source '{spec.source}': {rule[1]}", spec.loc, rule[2])
    return OPTION_DEFAULTS | spec.args


def _check_shape(got: tuple[int, ...], want: tuple[int, ...], task: Task, spec: DataSpec) -> None:
    """Samples fit an input of their own shape, a flat input of as many values, or (H, W) a grey [1, H, W]."""
    if got == want or (len(want) == 1 and int(np.prod(got)) == want[0]) or want == (1, *got):
        return
    raise DataError(
        f"{spec.source} samples have shape {shape_text(got)}, but task '{task.name}' reads input '{task.input}' "
        f"of shape {shape_text(want)}", spec.loc, _shape_hint(got))


def _shape_hint(got: tuple[int, ...]) -> str:
    """Inputs these samples fit that partc's layers take (ranks 1 to 3), and how to store the data otherwise."""
    flat = f"float[{int(np.prod(got))}]"
    if len(got) == 1:
        return f"declare the input as {flat}"
    if len(got) == 2:
        return f"declare the input as float[1, {got[0]}, {got[1]}] (grey images) or {flat} (flattened)"
    if len(got) == 3:
        hint = f"declare the input as float{shape_text(got)} or {flat} (flattened)"
        if got[-1] in (1, 3, 4) and got[0] not in (1, 3, 4):
            hint += (f"; these look like channels-last images: store them as (n, {got[2]}, {got[0]}, {got[1]}) "
                     "with x.transpose(0, 3, 1, 2) for an image input")
        return hint
    return f"declare the input as {flat} (flattened): partc's layers take inputs of rank 1 to 3, these are rank {len(got)}"


def _gather(raw: RawData, x: np.ndarray, pos: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = x[pos].astype(np.float32, copy=False)  # fancy indexing copies: the cache stays untouched
    if raw.scale != 1.0:
        out *= np.float32(raw.scale)
    return np.ascontiguousarray(out.reshape(len(pos), *shape))


