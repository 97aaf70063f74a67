"""Report, representation similarity: linear CKA (Kornblith et al., 2019).

Linear centered kernel alignment compares two representations of the same
n inputs, X (n x p) and Y (n x q), after centering each feature:

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F * ||Y^T Y||_F)

It is 1 for identical representations, invariant to orthogonal transforms
and isotropic scaling of either side, and lies in [0, 1]; NaN when a side
is constant over the samples (nothing left after centering). The same value
comes from the n x n Gram matrices K = X X^T, L = Y Y^T:
||Y^T X||_F^2 = <K, L>_F and ||X^T X||_F = ||K||_F. The feature formula
costs O(n p q), the Gram one O(n^2 (p + q)); `linear_cka` picks the cheaper,
and `cka_matrix` uses Grams so each representation is multiplied out once.
Computed in float64: feature maps of conv levels are wide and the Frobenius
norms are sums of many squares.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _centered(x: Tensor) -> Tensor:
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    return x - x.mean(dim=0, keepdim=True)


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA of two representations of the same n samples (any trailing shape)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same samples on both sides, got {x.shape[0]} and {y.shape[0]} rows")
    x, y = _centered(x), _centered(y)
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if p * q <= n * (p + q):
        cross = torch.linalg.matrix_norm(y.T @ x) ** 2
        norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    else:
        k, lg = x @ x.T, y @ y.T
        cross = (k * lg).sum()
        norms = torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(lg)
    return _ratio(cross, norms)


def centered_gram(x: Tensor) -> Tensor:
    """K = Xc Xc^T of a representation (n x n, float64): the input of `cka_from_grams`."""
    xc = _centered(x)
    return xc @ xc.T


def cka_from_grams(grams: list[Tensor]) -> list[list[float]]:
    """The CKA matrix of several representations of the same samples, from their centered Grams."""
    flat = torch.stack([g.reshape(-1) for g in grams])
    inner = flat @ flat.T
    norms = inner.diagonal().clamp_min(0).sqrt()
    return [[_ratio(inner[i, j], norms[i] * norms[j]) for j in range(len(grams))] for i in range(len(grams))]


def _ratio(cross: Tensor, norms: Tensor) -> float:
    # A constant representation (e.g. a dead ReLU level) has no variance left after
    # centering: CKA is undefined there, and NaN says so rather than inventing a value.
    if float(norms) <= 0.0:
        return float("nan")
    return float(cross / norms)
