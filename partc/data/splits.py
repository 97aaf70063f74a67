"""Data stage, splitting: a task's classes and its train / validation / test samples, by sample.

- classes: the task's labels (head order) are looked up in the source's
  class names (or taken as class ids); a lookup table maps source ids to
  0..k-1. (The PaRT reference remaps in place, one class at a time, which
  merges classes when an old id equals an already assigned new one.)
- splits (`plan_splits`): every sample has an identity (`partc.data.identity`:
  source and index, or a hash of its bytes) and a key mixed from the
  network seed and that identity alone (`sample_keys`).
  Within each source class, samples in key order are test (the first
  round(test x n_c)), then val (round(val x the rest)), then training
  candidates; copies of one sample (equal identities) count once and go
  together. Two tasks that share a class therefore hold out the same
  samples of it, whatever else they contain or are called. A sample any
  task holds out (val or test) is then removed from every task's training
  split: this settles tasks that ask for other fractions, and samples whose
  identity occurs twice. `limit` keeps the first samples of each class in
  key order (so a smaller limit keeps a subset) and never moves one into
  val or test.

What is exact: per class, the held-out counts (rounded half up), and the
guarantee that no held-out sample trains any task of the network. What is
approximate: a task's total test and val counts (the sum of per-class
roundings, within half a sample per class of fraction x total), and the
class balance of `limit` (largest remainder over the task's classes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from partc.data.identity import sample_keys
from partc.data.raw import RawData
from partc.errors import DataError
from partc.ir import DataSpec, Task

SPLIT_RULE = "by-sample/1"  # run.json "splits": runs before it split each task on its own (test leakage)
_EPSILON = 1e-9  # 0.1 * 35 is 3.5000000000000004 in floating point: a half is a half


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


def relabel(y: np.ndarray, ids: list[int]) -> np.ndarray:
    """Source class ids -> the task's labels 0..k-1 (head order) via a lookup table; -1 for other classes."""
    table = np.full(max(ids) + 1, -1, dtype=np.int64)
    table[ids] = np.arange(len(ids))
    mapped = np.full(y.shape, -1, dtype=np.int64)
    inside = (y >= 0) & (y < len(table))
    mapped[inside] = table[y[inside]]
    return mapped


def select_classes(y: np.ndarray, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of samples of the chosen classes and their new labels."""
    mapped = relabel(y, ids)
    pos = np.flatnonzero(mapped >= 0)
    return pos, mapped[pos]


# ---- sample identities and keys -----------------------------------------------------------------

def held_out_count(fraction: float, n: int) -> int:
    """round(fraction x n), halves up."""
    return int(np.floor(fraction * n + 0.5 + _EPSILON))


def apportion(counts: np.ndarray, n: int) -> np.ndarray:
    """n split over classes in proportion to `counts`, by largest remainder (ties: lower class first); exact total."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    n = min(max(n, 0), total)
    if total == 0:
        return np.zeros_like(counts)
    quota = n * counts / total
    take = np.floor(quota).astype(np.int64)
    order = np.lexsort((np.arange(len(counts)), -(quota - take)))  # largest remainders first
    take[order[: n - int(take.sum())]] += 1
    return np.minimum(take, counts)


# ---- splits -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskRequest:
    """What one task asks of its source: its samples, classes and fractions."""

    y: np.ndarray  # source class id of each sample
    ids: np.ndarray  # identity of each sample (uint64)
    classes: list[int]  # source class ids, head order
    test: float  # fraction held out for test (ignored with y_test: the source's own test split)
    val: float  # fraction of the rest held out for validation
    limit: int | None = None  # at most this many training samples
    y_test: np.ndarray | None = None  # the source's own test split
    test_ids: np.ndarray | None = None


@dataclass
class SplitPlan:
    """Positions of one task's samples: train and val into the source's x, test into x (or x_test)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_from_own_split: bool = False
    dropped: int = 0  # training candidates removed because some task holds them out


def plan_splits(requests: list[TaskRequest], seed: int) -> list[SplitPlan]:
    """The splits of tasks on one source: consistent by class, and no held-out sample in any train split."""
    drafts = [_draft(r, seed) for r in requests]
    held = np.unique(np.concatenate(
        [r.ids[d.val] for r, d in zip(requests, drafts, strict=True)]
        + [(r.test_ids if d.test_from_own_split else r.ids)[d.test] for r, d in zip(requests, drafts, strict=True)]
        + [np.zeros(0, dtype=np.uint64)]))
    plans = []
    for request, draft in zip(requests, drafts, strict=True):
        keep = ~np.isin(request.ids[draft.train], held)
        train = draft.train[keep]  # still in key order within each class
        if request.limit is not None and request.limit < len(train):
            train = _limit(request.y[train], train, request.classes, request.limit)
        plans.append(SplitPlan(np.sort(train), np.sort(draft.val), np.sort(draft.test), draft.test_from_own_split,
                               int((~keep).sum())))
    return plans


def _draft(request: TaskRequest, seed: int) -> SplitPlan:
    """Held-out samples per class in key order; every other sample of the task's classes is a training candidate."""
    keys = sample_keys(seed, request.ids)
    order = np.lexsort((np.arange(len(keys)), keys))  # key order; position breaks ties (equal identities)
    y_in_order = request.y[order]
    own = request.y_test is not None
    train, val, test = [], [], []
    for c in request.classes:
        members = order[y_in_order == c]
        # Copies of one sample (equal identities, so equal keys) are adjacent here and go together: count samples.
        ids = request.ids[members]
        rank = np.cumsum(np.r_[True, ids[1:] != ids[:-1]]) - 1 if len(ids) else np.zeros(0, np.int64)
        distinct = int(rank[-1]) + 1 if len(ids) else 0
        t = 0 if own else held_out_count(request.test, distinct)
        v = held_out_count(request.val, distinct - t)
        test.append(members[rank < t])
        val.append(members[(rank >= t) & (rank < t + v)])
        train.append(members[rank >= t + v])
    if own:
        test = [np.flatnonzero(np.isin(request.y_test, request.classes))]
    empty = np.zeros(0, dtype=np.int64)
    return SplitPlan(np.concatenate(train + [empty]), np.concatenate(val + [empty]), np.concatenate(test + [empty]), own)


def _limit(y: np.ndarray, train: np.ndarray, classes: list[int], limit: int) -> np.ndarray:
    """The first samples of each class in key order, `limit` in all, classes in proportion."""
    counts = np.array([int((y == c).sum()) for c in classes])
    take = apportion(counts, limit)
    return np.concatenate([train[y == c][:k] for c, k in zip(classes, take, strict=True)] + [np.zeros(0, np.int64)])


def check_classes(y: np.ndarray, labels: list[str], spec: DataSpec, raw: RawData, what: str, *,
                  before_split: bool = False) -> None:
    """Every class of the task has samples; the message says which classes the data has."""
    present = np.bincount(y, minlength=len(labels)) > 0
    empty = [labels[i] for i in np.flatnonzero(~present)]
    if not empty:
        return
    message = f"{spec.source} data ({raw.origin}) has no {what} of class '{empty[0]}'"
    if before_split and len(raw.y) == 0:
        raise DataError(f"{spec.source} data ({raw.origin}) holds no samples at all", spec.loc,
                        "fill it with samples of every class the task asks for")
    if not before_split:
        raise DataError(message, spec.loc, "lower val=/test=, raise limit=, add samples of that class, or drop it")
    ids, counts = np.unique(raw.y, return_counts=True)
    found = [f"{raw.names[i] if raw.names is not None and 0 <= i < len(raw.names) else i} ({n})"
             for i, n in zip(ids.tolist(), counts.tolist(), strict=True)]
    shown = ", ".join(found[:20]) + (f" and {len(found) - 20} more" if len(found) > 20 else "") if found else "none"
    raise DataError(message, spec.loc, f"the classes it has, with their sample counts: {shown}; ask for those in "
                                       "classes=..., or add samples of the missing class")
