"""Data stage, normalisation: per-channel statistics of the training split, applied to every split.

Channel = axis 1 of a batch, so a flat input gets per-feature statistics;
a channel with std ~0 keeps std 1. The statistics go into every checkpoint
and exported model, which need them to preprocess raw inputs.
"""

from __future__ import annotations

import numpy as np


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
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


def normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
    view = (1, -1) + (1,) * (x.ndim - 2)
    x -= mean.astype(np.float32).reshape(view)
    x /= std.astype(np.float32).reshape(view)
