"""Data stage, label noise (`label_noise=p`): a fixed share of a task's training labels made wrong.

For studies of what sharing does when a task's labels are unreliable. In each
class, round(p x n_c) training samples (halves up), the first in an order
drawn from the network seed, the task's name and the samples' identities,
get another class of the task instead, chosen uniformly from the seed and
identity too. The same spec therefore always makes the same labels wrong,
in every seed of a group. Validation and test labels stay true, so they
measure what the task learnt, not how well it fits the noise. A task with one
class has no other label to give: its labels stay as they are.
"""

from __future__ import annotations

import numpy as np

from partc.data.identity import sample_keys
from partc.data.splits import held_out_count


def noisy_labels(y: np.ndarray, ids: np.ndarray, classes: int, fraction: float, seed: int, task: str) -> np.ndarray:
    """y (labels 0..classes-1 of the training samples) with `fraction` of each class replaced by another class."""
    true = np.asarray(y, dtype=np.int64)
    y = true.copy()
    if fraction <= 0 or classes < 2 or len(y) == 0:
        return y
    order_keys = sample_keys(seed, ids, f"label_noise/{task}/order")
    choice = sample_keys(seed, ids, f"label_noise/{task}/label")
    order = np.lexsort((np.arange(len(y)), order_keys))
    true_in_order = true[order]
    for c in range(classes):
        members = order[true_in_order == c]
        wrong = members[: held_out_count(fraction, len(members))]
        shift = 1 + (choice[wrong] % np.uint64(classes - 1)).astype(np.int64)  # 1..classes-1: never the true class
        y[wrong] = (c + shift) % classes
    return y
