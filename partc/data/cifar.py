"""Data stage, reader: CIFAR-10 / CIFAR-100 in the official "python version".

    cifar-10-batches-py/   data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/      train, test, meta

Each file is a pickle of a dict: `data` (uint8, N x 3072: the red, green,
then blue plane of a 32x32 image, row-major), `labels` (CIFAR-10) or
`fine_labels` (CIFAR-100), and in the meta file the class names
(`label_names` / `fine_label_names`). Keys are `bytes` or `str` depending
on the pickle's origin; both are accepted.

partc never downloads: a missing folder or file is a `DataError` saying
which files it expected where and how to get them. The pickles are read
with an unpickler that only builds dicts, lists, strings and numpy arrays,
so a spec pointing at a hostile file cannot run code.
"""

from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from partc.data.identity import index_identities
from partc.data.raw import RawData, missing_path_error, resolve_path
from partc.errors import DataError, Location

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class CifarLayout:
    title: str
    folder: str  # the folder the official archive unpacks to
    archive: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    labels_key: str
    names_key: str
    classes: int

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, *self.test, self.meta)


LAYOUTS = {
    "cifar10": CifarLayout(
        "CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta",
        "labels", "label_names", 10,
    ),
    "cifar100": CifarLayout(
        "CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
        ("train",), ("test",), "meta", "fine_labels", "fine_label_names", 100,
    ),
}


def how_to_get(layout: CifarLayout, where: str = "DIR") -> str:
    return (
        f"download the {layout.title} python version ({layout.archive}) from {CIFAR_URL} and unpack it "
        f"so that {where}/{layout.files[0]} exists; partc never downloads data"
    )


def read_cifar(source: str, root_arg: str, bases: list[Path], loc: Location | None) -> RawData:
    """The whole data set: train and official test split, class names from the meta file."""
    layout = LAYOUTS[source]
    root = find_root(layout, source, root_arg, bases, loc)
    train = [_read_batch(layout, root / name, loc) for name in layout.train]
    test = [_read_batch(layout, root / name, loc) for name in layout.test]
    names = _read_names(layout, root / layout.meta, loc)
    return RawData(
        x=np.concatenate([x for x, _ in train]),
        y=np.concatenate([y for _, y in train]),
        names=names,
        x_test=np.concatenate([x for x, _ in test]),
        y_test=np.concatenate([y for _, y in test]),
        scale=1 / 255,
        origin=str(root),
        # Known by position in the official files (wherever they are unpacked): the same data set, the same samples.
        ids=index_identities(f"{source}/train", sum(len(y) for _, y in train)),
        test_ids=index_identities(f"{source}/test", sum(len(y) for _, y in test)),
    )


def find_root(layout: CifarLayout, source: str, root_arg: str, bases: list[Path], loc: Location | None) -> Path:
    """The folder holding the files: `root` itself, or `root/<official folder name>`."""
    root, tried = resolve_path(root_arg, bases)
    if root is None:
        raise missing_path_error(f"{source} data folder", root_arg, tried, loc, how_to_get(layout, root_arg))
    if not root.is_dir():
        raise DataError(f"{source} data path '{root}' is a file, not a folder", loc, how_to_get(layout, root_arg))
    nested = root / layout.folder
    if not (root / layout.files[0]).exists() and nested.is_dir():
        root = nested  # cifar100("data") with data/cifar-100-python/ inside, as the archive unpacks
    missing = [name for name in layout.files if not (root / name).is_file()]
    if missing:
        archive = next((p for p in (root / layout.archive, root.parent / layout.archive) if p.is_file()), None)
        hint = (f"found {archive}: unpack it (cd {archive.parent} && tar xzf {archive.name}), "
                f"which creates {archive.parent / layout.folder}" if archive else how_to_get(layout, str(root)))
        if len(missing) == len(layout.files):
            problem = f"has none of the {layout.title} files {', '.join(layout.files)}"
        else:
            problem = f"is missing {', '.join(missing)} (expected {', '.join(layout.files)})"
        raise DataError(f"{layout.title} folder '{root}' {problem}", loc, hint)
    return root


_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array rebuilder, wherever this numpy keeps it
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles from Python 3 store bytes
}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a data file never needs") from None


def _load_pickle(layout: CifarLayout, path: Path, loc: Location | None) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = _DataUnpickler(f, encoding="latin1").load()
    except OSError as e:
        raise DataError(f"cannot read {layout.title} file '{path}': {e.strerror or e}", loc) from None
    except Exception as e:  # noqa: BLE001 - decoding untrusted bytes fails in many ways; all mean "corrupt"
        raise DataError(
            f"{layout.title} file '{path}' is corrupt or truncated ({type(e).__name__}: {e})", loc,
            f"unpack {layout.archive} again, or {how_to_get(layout)}") from None
    if not isinstance(obj, dict):
        raise _not_cifar(layout, path, loc, f"it holds a {type(obj).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _not_cifar(layout: CifarLayout, path: Path, loc: Location | None, why: str) -> DataError:
    return DataError(f"'{path}' is not a {layout.title} python-version file: {why}", loc, how_to_get(layout))


def _read_batch(layout: CifarLayout, path: Path, loc: Location | None) -> tuple[np.ndarray, np.ndarray]:
    batch = _load_pickle(layout, path, loc)
    for key in ("data", layout.labels_key):
        if key not in batch:
            raise _not_cifar(layout, path, loc, f"no '{key}' entry (it has {', '.join(map(str, batch)) or 'nothing'})")
    data, labels = batch["data"], batch[layout.labels_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise _not_cifar(layout, path, loc, f"'data' should be a uint8 array of shape (N, 3072), got {got}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise _not_cifar(layout, path, loc, f"'{layout.labels_key}' is not a list of integers") from None
    if y.shape != (len(data),):
        raise _not_cifar(layout, path, loc, f"{len(data)} images but {y.size} labels")
    if y.size and not (0 <= y.min() and y.max() < layout.classes):
        raise _not_cifar(layout, path, loc, f"labels should lie in 0..{layout.classes - 1}, found {y.min()}..{y.max()}")
    return data.reshape(-1, 3, 32, 32), y


def _read_names(layout: CifarLayout, path: Path, loc: Location | None) -> list[str]:
    meta = _load_pickle(layout, path, loc)
    names = meta.get(layout.names_key)
    if not isinstance(names, (list, tuple)) or len(names) != layout.classes:
        raise _not_cifar(layout, path, loc, f"'{layout.names_key}' should list {layout.classes} class names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
