"""Data stage, the source registry: each data source's samples (`RawData`), read once per source.

`READERS` maps a source name (the catalog's, `partc.data.catalog.SOURCES`)
to the function that produces its samples for one task; `SourceReader`
caches what several tasks share (a data set, a folder, an npz file), so ten
CIFAR-100 tasks read the data set once. Adding a source means a catalog
row and a reader here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from partc.data.catalog import SYNTHETIC_SAMPLES_PER_CLASS
from partc.data.cifar import read_cifar
from partc.data.raw import RawData, folder_classes, make_synthetic, read_digits, read_image_folder, read_npz
from partc.data.splits import class_ids
from partc.errors import DataError
from partc.ir import DataSpec, Network, Task
from partc.language.printer import shape_text
from partc.seeds import derived_seed

SYNTHETIC_NOISE = 1.0


class SourceReader:
    """Reads the raw samples of a network's tasks, caching each source across tasks."""

    def __init__(self, net: Network, bases: list[Path]):
        self.net = net
        self.bases = bases
        self.cache: dict[tuple, Any] = {}

    def cached(self, key: tuple, read: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = read()
        return self.cache[key]

    def read(self, task: Task, spec: DataSpec, opts: dict[str, Any], shape: tuple[int, ...]) -> RawData:
        reader = READERS.get(spec.source)
        if reader is None:
            raise DataError(f"unknown data source '{spec.source}'", spec.loc)
        return reader(self, task, spec, opts, shape)


def _digits(reader: SourceReader, task: Task, spec: DataSpec, opts: dict[str, Any], shape: tuple[int, ...]) -> RawData:
    return reader.cached(("digits",), read_digits)


def _cifar(reader: SourceReader, task: Task, spec: DataSpec, opts: dict[str, Any], shape: tuple[int, ...]) -> RawData:
    root = spec.args["root"]
    return reader.cached((spec.source, root), lambda: read_cifar(spec.source, root, reader.bases, spec.loc))


def _npz(reader: SourceReader, task: Task, spec: DataSpec, opts: dict[str, Any], shape: tuple[int, ...]) -> RawData:
    file = spec.args["file"]
    return reader.cached(("npz", file), lambda: read_npz(file, reader.bases, spec.loc))


def _synthetic(reader: SourceReader, task: Task, spec: DataSpec, opts: dict[str, Any],
               shape: tuple[int, ...]) -> RawData:
    k = len(task.labels)
    samples = opts.get("samples", SYNTHETIC_SAMPLES_PER_CLASS * k)
    seed = opts.get("seed", derived_seed(reader.net.seed, task.name, "synthetic"))
    noise = float(opts.get("noise", SYNTHETIC_NOISE))
    raw = reader.cached(("synthetic", k, shape, samples, seed, noise), lambda: make_synthetic(k, shape, samples, seed, noise))
    return RawData(raw.x, raw.y, list(task.labels), scale=raw.scale, origin=raw.origin, ids=raw.ids)


def _folder(reader: SourceReader, task: Task, spec: DataSpec, opts: dict[str, Any], shape: tuple[int, ...]) -> RawData:
    root, names = reader.cached(("folder", spec.args["root"]),
                                lambda: folder_classes(spec.args["root"], reader.bases, spec.loc))
    size = opts.get("size")
    hw = None if size is None else (size, size) if isinstance(size, int) else tuple(size)
    if len(shape) == 3:
        channels, height, width = shape
        if hw is not None and hw != (height, width):
            raise DataError(f"size={size} disagrees with input '{task.input}' of shape {shape_text(shape)}", spec.loc,
                            "drop size=...: images are resized to the input's height and width")
    elif len(shape) == 1 and hw is not None and shape[0] % (hw[0] * hw[1]) == 0:
        channels, (height, width) = shape[0] // (hw[0] * hw[1]), hw
    else:
        raise DataError(f"folder images cannot fill input '{task.input}' of shape {shape_text(shape)}", spec.loc,
                        "declare the input as float[C, H, W] (C = 1 or 3), or give a flat input "
                        "float[C*H*W] with size=[H, W]")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise DataError(f"folder images have 1 (grey), 3 (RGB) or 4 (RGBA) channels, not {channels}", spec.loc)
    ids, _ = class_ids(task, names, spec)
    parts = [reader.cached(("folder-class", str(root / names[i]), height, width, mode),
                           lambda i=i: read_image_folder(root / names[i], height, width, mode, spec.loc))
             for i in ids]
    y = np.concatenate([np.full(len(x), i, dtype=np.int64) for (x, _), i in zip(parts, ids, strict=True)])
    identities = np.concatenate([identities for _, identities in parts])
    images = [x for x, _ in parts]
    if all(x.dtype == np.uint8 for x in images):
        return RawData(np.concatenate(images), y, names, scale=1 / 255, origin=str(root), ids=identities)
    # some class holds 16-bit images, read as floats in [0, 1]: the rest joins them there
    images = [x.astype(np.float32) / 255 if x.dtype == np.uint8 else x for x in images]
    return RawData(np.concatenate(images), y, names, scale=1.0, origin=str(root), ids=identities)


READERS: dict[str, Callable[[SourceReader, Task, DataSpec, dict[str, Any], tuple[int, ...]], RawData]] = {
    "digits": _digits, "cifar10": _cifar, "cifar100": _cifar, "npz": _npz, "folder": _folder, "synthetic": _synthetic,
}
