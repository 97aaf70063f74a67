"""Linear CKA: the properties Kornblith et al. (2019) state, and hand-computed values."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from partc.report.cka import centered_gram, cka_from_grams, linear_cka


def _random(seed: int, n: int, p: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, p))


def _orthogonal(seed: int, p: int) -> np.ndarray:
    q, r = np.linalg.qr(_random(seed, p, p))
    return q * np.sign(np.diagonal(r))  # a uniformly random orthogonal matrix


# Both code paths: the feature formula when features are few (p*q <= n*(p+q)), Gram matrices when many.
SHAPES = [(50, 3, 4), (6, 40, 30)]


@pytest.mark.parametrize("n,p,q", SHAPES)
def test_identical_representations_have_cka_one(n, p, q):
    x = _random(0, n, p)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_one_dimensional_case_by_hand():
    # X = (1, 2, 3), Y = (1, 0, 2). Centered: X = (-1, 0, 1), Y = (0, -1, 1) (mean 1).
    # Y^T X = 0*(-1) + (-1)*0 + 1*1 = 1, so ||Y^T X||_F^2 = 1.
    # X^T X = 1 + 0 + 1 = 2, Y^T Y = 0 + 1 + 1 = 2.  CKA = 1 / (2 * 2) = 0.25
    # (for one feature each, CKA is the squared Pearson correlation: 0.5^2).
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [0.0], [2.0]])
    assert linear_cka(x, y) == pytest.approx(0.25, abs=1e-12)


def test_two_dimensional_case_by_hand():
    # X rows (1,0), (0,1), (-1,0), (0,-1): already centered. X^T X = diag(2, 2), ||X^T X||_F = sqrt(8).
    # Y = the first column of X: (1, 0, -1, 0). Y^T X = (2, 0): ||Y^T X||_F^2 = 4; Y^T Y = 2.
    # CKA = 4 / (sqrt(8) * 2) = 1 / sqrt(2).
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y = x[:, :1]
    assert linear_cka(x, y) == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    # Feature maps are flattened: the same numbers shaped (n, 1, 1, 2) give the same CKA.
    assert linear_cka(x.view(4, 1, 1, 2), y) == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    assert linear_cka(x.numpy(), y.numpy()) == pytest.approx(1 / math.sqrt(2), abs=1e-12)  # tensors or arrays


@pytest.mark.parametrize("n,p,q", SHAPES)
def test_feature_and_gram_formulas_agree(n, p, q):
    x, y = _random(1, n, p), _random(2, n, q)
    from_grams = cka_from_grams([centered_gram(x), centered_gram(y)])
    assert linear_cka(x, y) == pytest.approx(from_grams[0][1], rel=1e-10)
    assert from_grams[0][0] == pytest.approx(1.0) and from_grams[1][1] == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), shape=st.sampled_from(SHAPES),
       scale_x=st.floats(1e-3, 1e3), scale_y=st.floats(1e-3, 1e3))
def test_invariant_to_orthogonal_transforms_and_isotropic_scaling(seed, shape, scale_x, scale_y):
    n, p, q = shape
    x = _random(seed, n, p)
    y = x[:, :1] @ _random(seed + 1, 1, q) + 0.5 * _random(seed + 2, n, q)  # related to x, not equal
    reference = linear_cka(x, y)
    moved_x = scale_x * x @ _orthogonal(seed + 3, p)
    moved_y = scale_y * y @ _orthogonal(seed + 4, q)
    assert linear_cka(moved_x, y) == pytest.approx(reference, abs=1e-9)
    assert linear_cka(x, moved_y) == pytest.approx(reference, abs=1e-9)
    assert linear_cka(moved_x, moved_y) == pytest.approx(reference, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 30), p=st.integers(1, 40), q=st.integers(1, 40))
def test_symmetric_and_between_zero_and_one(seed, n, p, q):
    x, y = _random(seed, n, p), _random(seed + 1, n, q)
    value = linear_cka(x, y)
    assert -1e-12 <= value <= 1 + 1e-12
    assert linear_cka(y, x) == pytest.approx(value, abs=1e-12)


def test_not_invariant_to_anisotropic_scaling():
    # Stretching one feature (not a rotation, not a uniform scale) changes CKA: the invariances are specific.
    x = _random(5, 40, 3)
    stretched = x * np.array([1.0, 1.0, 20.0])
    assert linear_cka(x, stretched) < 0.9


def test_translation_of_features_does_not_matter():
    x = _random(6, 20, 5)
    assert linear_cka(x + 7.0, x) == pytest.approx(1.0, abs=1e-12)  # centering removes it


def test_constant_representation_is_undefined_not_a_number_made_up():
    x = _random(7, 10, 3)
    assert math.isnan(linear_cka(np.ones((10, 4)), x))
    assert math.isnan(cka_from_grams([centered_gram(np.zeros((10, 2))), centered_gram(x)])[0][1])


def test_different_sample_counts_are_refused():
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(torch.zeros(5, 2), torch.zeros(6, 2))
