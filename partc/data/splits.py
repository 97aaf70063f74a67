"""Data stage, splitting: a task's classes and its train / validation / test samples.

- classes: the task's labels (head order) are looked up in the source's
  class names (or taken as class ids); a lookup table maps source ids to
  0..k-1. (The PaRT reference remaps in place, one class at a time, which
  merges classes when an old id equals an already assigned new one.)
- splits: stratified, each class in proportion, counts apportioned by
  largest remainder so totals are exact (`stratified_split`).
"""

from __future__ import annotations

import re

import numpy as np

from partc.data.raw import RawData
from partc.errors import DataError
from partc.ir import DataSpec, Task


def class_ids(task: Task, names: list[str] | None, spec: DataSpec) -> tuple[list[int], list[str]]:
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


def select_classes(y: np.ndarray, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of samples of the chosen classes and their new labels, via a lookup table."""
    table = np.full(max(ids) + 1, -1, dtype=np.int64)
    table[ids] = np.arange(len(ids))
    mapped = np.full(y.shape, -1, dtype=np.int64)
    inside = (y >= 0) & (y < len(table))
    mapped[inside] = table[y[inside]]
    pos = np.flatnonzero(mapped >= 0)
    return pos, mapped[pos]


def stratified_split(y: np.ndarray, n_out: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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


def check_classes(y: np.ndarray, labels: list[str], spec: DataSpec, raw: RawData, what: str) -> None:
    present = np.bincount(y, minlength=len(labels)) > 0
    empty = [labels[i] for i in np.flatnonzero(~present)]
    if empty:
        raise DataError(f"{spec.source} data ({raw.origin}) has no {what} of class '{empty[0]}'",
                        spec.loc, "add samples of that class, lower val=/test=, raise limit=, or drop the class")
