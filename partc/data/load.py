"""Data stage: a checked network's task -> train/val/test tensors (`TaskData`).

    load_task_data(net, task, data_root=None) -> TaskData
    load_all(net, data_root=None)             -> {task: TaskData}   (reads each source once)

Every source goes through the same steps after its reader (`partc.data.raw`,
`partc.data.cifar`) has produced its samples:

1. classes: the task's labels (head order) are looked up in the source's
   class names (or taken as class ids); a lookup table maps source ids to
   0..k-1. (The PaRT reference remaps in place, one class at a time, which
   merges classes when an old id equals an already assigned new one.)
2. splits, seeded by SHA-256(net.seed / task / "split"): the source's own
   test split where it has one (CIFAR, npz with x_test), else `test` (0.2)
   of each class held out; then `val` (0.1) of each class of the rest;
   then `limit` caps the training samples, keeping the class balance.
   Stratified counts are apportioned by largest remainder, so totals are
   exact.
3. normalisation (`normalize=true`, the default): per-channel mean and std
   of the *training* split (channel = axis 1 of the batch, so a flat input
   gets per-feature statistics), applied to every split and kept in
   `TaskData.mean/std` for exports. A channel with std ~0 keeps std 1.

Paths in a spec (`cifar100("data/...")`, `npz("x.npz")`, `folder("imgs")`)
are looked up relative to `data_root` (default: the current directory)
first, then relative to the spec file's folder; the error lists both.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from partc.data.augment import PERSPECTIVE_P
from partc.data.augment import augment_batch as _augment_batch
from partc.data.augment import perspective_batch as _perspective_batch
from partc.data.catalog import OPTION_DEFAULTS, SOURCES, check_combination, check_option
from partc.data.cifar import read_cifar
from partc.data.raw import RawData, folder_classes, make_synthetic, read_digits, read_image_folder, read_npz
from partc.errors import DataError
from partc.ir import DataSpec, Network, Task
from partc.language.printer import value_text

Split = tuple[torch.Tensor, torch.Tensor]  # x float32 (n, *input_shape), y int64 (n,)

SYNTHETIC_SAMPLES_PER_CLASS = 200
SYNTHETIC_NOISE = 1.0


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

    @property
    def classes(self) -> int:
        return len(self.labels)

    @property
    def pad_value(self) -> list[float]:
        """A black pixel after normalisation: what augmentation pads with."""
        return [(0.0 - m) / s for m, s in zip(self.mean, self.std, strict=True)]

    def augment_batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop (padding 4), horizontal flip, then random perspective when asked; see `partc.data.augment`.

        The paper's order (torchvision's RandomCrop, RandomHorizontalFlip,
        RandomPerspective); every draw comes from `generator`.
        """
        out = _augment_batch(x, generator, fill=self.pad_value)
        if self.perspective > 0:
            out = _perspective_batch(out, generator, self.perspective, p=PERSPECTIVE_P, fill=self.pad_value)
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


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from SHA-256 of the parts: the same on every machine and Python version."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class _Loader:
    """Loads tasks of one network, caching each source's samples across tasks."""

    def __init__(self, net: Network, data_root: str | Path | None):
        self.net = net
        self.bases = search_bases(net, data_root)
        self.cache: dict[tuple, Any] = {}

    def cached(self, key: tuple, read):
        if key not in self.cache:
            self.cache[key] = read()
        return self.cache[key]

    def load(self, name: str) -> TaskData:
        if name not in self.net.tasks:
            raise KeyError(f"no task '{name}' in network '{self.net.name}' (tasks: {', '.join(self.net.tasks)})")
        task = self.net.tasks[name]
        spec = task.data
        if spec is None:
            raise DataError(f"task '{name}' has no data", task.loc, "add e.g. 'data digits(classes=[0, 1])'")
        shape = tuple(self.net.inputs[task.input].shape)
        opts = _options(spec, shape)
        raw = self.raw(task, spec, opts, shape)
        _check_shape(raw.x.shape[1:], shape, task, spec)
        ids, labels = _class_ids(task, raw.names, spec)

        rng = np.random.default_rng(derived_seed(self.net.seed, name, "split"))
        pos, y = _select(raw.y, ids)
        _check_classes(y, labels, spec, raw, "samples")
        if raw.x_test is not None:
            if "test" in spec.args:  # an npz file with x_test (a source with its own split is refused by the check)
                raise DataError(f"{spec.source} data has its own test split, so test= does not apply", spec.loc,
                                "drop test=...; val= takes the validation part from the training split")
            test_pos, test_y = _select(raw.y_test, ids)
            test_x = raw.x_test
        else:
            keep, out = _stratified_split(y, round(opts["test"] * len(y)), rng)
            test_x, test_pos, test_y = raw.x, pos[out], y[out]
            pos, y = pos[keep], y[keep]
        keep, out = _stratified_split(y, round(opts["val"] * len(y)), rng)
        val_pos, val_y = pos[out], y[out]
        pos, y = pos[keep], y[keep]
        if opts["limit"] is not None and opts["limit"] < len(y):
            keep, _ = _stratified_split(y, len(y) - opts["limit"], rng)
            pos, y = pos[keep], y[keep]
        _check_classes(y, labels, spec, raw, "training samples left after the test/val/limit split")

        train_x = _gather(raw, raw.x, pos, shape)
        val_x = _gather(raw, raw.x, val_pos, shape)
        test_x = _gather(raw, test_x, test_pos, shape)
        channels = shape[0]
        if opts["normalize"]:
            mean, std = _channel_stats(train_x)
            for x in (train_x, val_x, test_x):
                _normalise(x, mean, std)
        else:
            mean, std = np.zeros(channels), np.ones(channels)

        def split(x: np.ndarray, labels_: np.ndarray) -> Split:
            return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(labels_, dtype=np.int64))

        return TaskData(
            task=name, source=spec.source,
            train=split(train_x, y), val=split(val_x, val_y), test=split(test_x, test_y),
            labels=labels, mean=[float(m) for m in mean], std=[float(s) for s in std],
            augment=bool(opts["augment"]), input_shape=shape, perspective=float(opts["perspective"]),
        )

    def raw(self, task: Task, spec: DataSpec, opts: dict[str, Any], shape: tuple[int, ...]) -> RawData:
        source, args = spec.source, spec.args
        if source == "digits":
            return self.cached(("digits",), read_digits)
        if source in ("cifar10", "cifar100"):
            return self.cached((source, args["root"]), lambda: read_cifar(source, args["root"], self.bases, spec.loc))
        if source == "npz":
            return self.cached(("npz", args["file"]), lambda: read_npz(args["file"], self.bases, spec.loc))
        if source == "folder":
            return self.folder(task, spec, opts, shape)
        if source == "synthetic":
            k = len(task.labels)
            samples = opts.get("samples", SYNTHETIC_SAMPLES_PER_CLASS * k)
            seed = opts.get("seed", derived_seed(self.net.seed, task.name, "synthetic"))
            noise = float(opts.get("noise", SYNTHETIC_NOISE))
            if samples < k:
                raise DataError(f"synthetic data needs at least one sample per class: samples={samples} < {k} classes",
                                spec.loc, f"use samples={SYNTHETIC_SAMPLES_PER_CLASS * k}")
            key = ("synthetic", k, shape, samples, seed, noise)
            raw = self.cached(key, lambda: make_synthetic(k, shape, samples, seed, noise))
            return RawData(raw.x, raw.y, list(task.labels), scale=raw.scale, origin=raw.origin)
        raise DataError(f"unknown data source '{source}'", spec.loc)

    def folder(self, task: Task, spec: DataSpec, opts: dict[str, Any], shape: tuple[int, ...]) -> RawData:
        root, names = self.cached(("folder", spec.args["root"]),
                                  lambda: folder_classes(spec.args["root"], self.bases, spec.loc))
        size = opts.get("size")
        hw = None if size is None else (size, size) if isinstance(size, int) else tuple(size)
        if len(shape) == 3:
            channels, height, width = shape
            if hw is not None and hw != (height, width):
                raise DataError(f"size={size} disagrees with input '{task.input}' of shape {_fmt(shape)}", spec.loc,
                                "drop size=...: images are resized to the input's height and width")
        elif len(shape) == 1 and hw is not None and shape[0] % (hw[0] * hw[1]) == 0:
            channels, (height, width) = shape[0] // (hw[0] * hw[1]), hw
        else:
            raise DataError(f"folder images cannot fill input '{task.input}' of shape {_fmt(shape)}", spec.loc,
                            "declare the input as float[C, H, W] (C = 1 or 3), or give a flat input "
                            "float[C*H*W] with size=[H, W]")
        mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
        if mode is None:
            raise DataError(f"folder images have 1 (grey), 3 (RGB) or 4 (RGBA) channels, not {channels}", spec.loc)
        ids, _ = _class_ids(task, names, spec)
        parts = [self.cached(("folder-class", str(root / names[i]), height, width, mode),
                             lambda i=i: read_image_folder(root / names[i], height, width, mode, spec.loc))
                 for i in ids]
        y = np.concatenate([np.full(len(p), i, dtype=np.int64) for p, i in zip(parts, ids, strict=True)])
        return RawData(np.concatenate(parts), y, names, scale=1 / 255, origin=str(root))


def _options(spec: DataSpec, shape: tuple[int, ...]) -> dict[str, Any]:
    """The task's data options with defaults, checked by the catalog's rules (networks not made by `partc check`)."""
    for key, value in spec.args.items():
        problem = check_option(key, value)
        if problem:
            raise DataError(f"data source '{spec.source}': {problem}, got {value_text(value)}", spec.loc)
    combination = check_combination(SOURCES[spec.source], spec.args, shape)
    if combination is not None:
        raise DataError(f"data source '{spec.source}': {combination[1]}", spec.loc, combination[2])
    return OPTION_DEFAULTS | spec.args


def _class_ids(task: Task, names: list[str] | None, spec: DataSpec) -> tuple[list[int], list[str]]:
    """Source class ids of the task's labels, in head order, and their display names."""
    ids: list[int] = []
    asked = spec.args.get("classes")
    by_name = isinstance(asked, list) and all(isinstance(v, str) for v in asked)  # classes=["cat", ...]: names only
    for label in task.labels:
        if names is not None and label in names:
            ids.append(names.index(label))
        elif not by_name and re.fullmatch(r"[0-9]+", label) and (names is None or int(label) < len(names)):
            ids.append(int(label))
        else:
            shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "") if names else "integer ids only"
            raise DataError(f"{spec.source} data has no class '{label}' (task '{task.name}')", spec.loc,
                            f"classes there: {shown}")
    if len(set(ids)) != len(ids):
        raise DataError(f"task '{task.name}' names one {spec.source} class twice (ids {ids})", spec.loc)
    return ids, [names[i] if names is not None else label for i, label in zip(ids, task.labels, strict=True)]


def _select(y: np.ndarray, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of samples of the chosen classes and their new labels, via a lookup table."""
    table = np.full(max(ids) + 1, -1, dtype=np.int64)
    table[ids] = np.arange(len(ids))
    mapped = np.full(y.shape, -1, dtype=np.int64)
    inside = (y >= 0) & (y < len(table))
    mapped[inside] = table[y[inside]]
    pos = np.flatnonzero(mapped >= 0)
    return pos, mapped[pos]


def _stratified_split(y: np.ndarray, n_out: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions (kept, held out): n_out held out, each class in proportion (largest remainder)."""
    n_out = min(max(n_out, 0), len(y))
    classes, counts = np.unique(y, return_counts=True)
    if n_out == 0 or len(y) == 0:
        return np.arange(len(y)), np.arange(0)
    quota = n_out * counts / len(y)
    take = np.floor(quota).astype(np.int64)
    order = np.lexsort((classes, -(quota - take)))  # largest remainders first, ties by class id
    take[order[: n_out - int(take.sum())]] += 1
    out = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take, strict=True)])
    held = np.zeros(len(y), dtype=bool)
    held[out] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def _check_classes(y: np.ndarray, labels: list[str], spec: DataSpec, raw: RawData, what: str) -> None:
    present = np.bincount(y, minlength=len(labels)) > 0
    empty = [labels[i] for i in np.flatnonzero(~present)]
    if empty:
        raise DataError(f"{spec.source} data ({raw.origin}) has no {what} of class '{empty[0]}'",
                        spec.loc, "add samples of that class, lower val=/test=, raise limit=, or drop the class")


def _check_shape(got: tuple[int, ...], want: tuple[int, ...], task: Task, spec: DataSpec) -> None:
    if got == want or (len(want) == 1 and int(np.prod(got)) == want[0]):
        return
    raise DataError(
        f"{spec.source} samples have shape {_fmt(got)}, but task '{task.name}' reads input '{task.input}' "
        f"of shape {_fmt(want)}", spec.loc,
        f"declare the input as float{_fmt(got)} (or float[{int(np.prod(got))}] to flatten), or give the data that shape")


def _gather(raw: RawData, x: np.ndarray, pos: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = x[pos].astype(np.float32, copy=False)  # fancy indexing copies: the cache stays untouched
    if raw.scale != 1.0:
        out *= np.float32(raw.scale)
    return np.ascontiguousarray(out.reshape(len(pos), *shape))


def _channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (axis 1) mean and std in float64, summed in chunks to bound memory."""
    axes = (0, *range(2, x.ndim))
    total = np.zeros(x.shape[1])
    squares = np.zeros(x.shape[1])
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].astype(np.float64)
        total += part.sum(axis=axes)
        squares += np.square(part).sum(axis=axes)
    count = max(x.size // x.shape[1], 1)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std[std < 1e-6] = 1.0  # a constant channel (e.g. a blank border pixel): leave it unscaled
    return mean, std


def _normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
    view = (1, -1) + (1,) * (x.ndim - 2)
    x -= mean.astype(np.float32).reshape(view)
    x /= std.astype(np.float32).reshape(view)


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"
