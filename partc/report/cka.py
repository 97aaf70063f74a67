"""Report, representation similarity: linear CKA (Kornblith et al., 2019).

Linear centered kernel alignment compares two representations of the same
n inputs, X (n x p) and Y (n x q), after centering each feature:

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F * ||Y^T Y||_F)

It is 1 for identical representations, invariant to orthogonal transforms
and isotropic scaling of either side, and lies in [0, 1]; NaN when a side
is constant over the samples (nothing left after centering).
The same value comes from the n x n Gram matrices K = X X^T, L = Y Y^T:
||Y^T X||_F^2 = <K, L>_F and ||X^T X||_F = ||K||_F. The feature formula
costs O(n p q), the Gram one O(n^2 (p + q)); `linear_cka` picks the cheaper,
and `cka_from_grams` uses Grams so each representation is multiplied out once.
`cka_noise_floor` is the reference for "unrelated": the same pairs with one
side's samples permuted, so only the correspondence between samples is lost.

numpy in float64: feature maps of conv levels are wide and the Frobenius
norms sum many squares; and numpy's small matrix products stay fast on a
busy CPU where torch's threaded ones stall. Accepts torch tensors too.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _centered(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x - x.mean(axis=0, keepdims=True)


def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA of two representations of the same n samples (any trailing shape)."""
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same samples on both sides, got {len(x)} and {len(y)} rows")
    x, y = _centered(x), _centered(y)
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if p * q <= n * (p + q):
        cross = np.linalg.norm(y.T @ x) ** 2
        norms = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    else:
        k, gram_y = x @ x.T, y @ y.T
        cross = float((k * gram_y).sum())
        norms = np.linalg.norm(k) * np.linalg.norm(gram_y)
    return _ratio(cross, norms)


def centered_gram(x: Any) -> np.ndarray:
    """K = Xc Xc^T of a representation (n x n, float64): the input of `cka_from_grams`."""
    xc = _centered(x)
    return xc @ xc.T


def cka_from_grams(grams: list[np.ndarray]) -> list[list[float]]:
    """The CKA matrix of several representations of the same samples, from their centered Grams."""
    flat = np.stack([g.reshape(-1) for g in grams])
    inner = flat @ flat.T
    norms = np.sqrt(np.clip(np.diagonal(inner), 0, None))
    return [[_ratio(inner[i, j], norms[i] * norms[j]) for j in range(len(grams))] for i in range(len(grams))]


def cka_noise_floor(grams: list[np.ndarray], permutations: list[np.ndarray]) -> list[list[float]]:
    """CKA of every pair with the second side's samples permuted, averaged over the permutations.

    Permuting rows and columns of a centered Gram keeps it centered and keeps its norm: only the
    correspondence between samples is lost, which is what CKA is meant to measure.
    """
    flat = np.stack([g.reshape(-1) for g in grams])
    norms = np.sqrt(np.clip(np.einsum("ij,ij->i", flat, flat), 0, None))
    total = np.zeros((len(grams), len(grams)))
    for order in permutations:
        shuffled = np.stack([g[np.ix_(order, order)].reshape(-1) for g in grams])
        total += flat @ shuffled.T
    mean = total / len(permutations)
    return [[_ratio(mean[i, j], norms[i] * norms[j]) for j in range(len(grams))] for i in range(len(grams))]


def _ratio(cross: float, norms: float) -> float:
    # A constant representation (e.g. a dead ReLU level) has no variance left after
    # centering: CKA is undefined there, and NaN says so rather than inventing a value.
    if norms <= 0.0:
        return float("nan")
    return float(cross / norms)
