"""Statistics over seeds (partc.stats) and the CKA noise floor, against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partc.report.cka import centered_gram, cka_noise_floor, linear_cka
from partc.stats import direction, mean_std, paired, summary, t_quantile, undetected


def test_t_interval_by_hand():
    assert t_quantile(2) == pytest.approx(4.302652729911275)
    s = summary([1.0, 2.0, 3.0])
    assert (s["n"], s["mean"], s["std"]) == (3, 2.0, 1.0)
    half = 4.302652729911275 / math.sqrt(3)
    assert s["ci"] == pytest.approx([2 - half, 2 + half])
    assert summary([5.0])["ci"] is None and mean_std([5.0]) == (5.0, None) and mean_std([]) == (None, None)


def test_paired_uses_seeds_on_both_sides_only():
    result = paired({"1": 0.9, "2": 0.8, "3": 0.95, "4": None}, {"1": 0.85, "2": 0.7, "3": 0.9, "5": 0.1})
    assert result["pairs"] == ["1", "2", "3"] and result["values"] == pytest.approx([0.05, 0.1, 0.05])
    assert result["direction"] == direction(result["ci"])
    assert paired({"1": 0.5}, {"2": 0.5})["pairs"] == []


def test_a_verdict_only_when_the_interval_excludes_zero():
    assert direction([0.01, 0.2]) == "above" and direction([-0.3, -0.1]) == "below"
    assert direction([-0.1, 0.2]) == "unclear" and direction(None) is None
    assert undetected(3) == "no detectable difference at n=3" and "no verdict" in undetected(1)
    # The case: a difference that flips sign between seeds is not a verdict.
    assert paired({"1": 0.99, "2": 0.98, "3": 1.0}, {"1": 0.98, "2": 0.99, "3": 1.0})["direction"] == "unclear"


def test_noise_floor_is_cka_with_one_side_permuted():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6))
    rotation, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    y = x @ rotation + 0.1 * rng.standard_normal((40, 6))  # the same representation, rotated, plus a little noise
    order = rng.permutation(40)
    floor = cka_noise_floor([centered_gram(x), centered_gram(y)], [order])
    assert floor[0][1] == pytest.approx(linear_cka(x, y[order]), abs=1e-12)
    assert floor[0][0] == pytest.approx(linear_cka(x, x[order]), abs=1e-12)
    assert linear_cka(x, y) > 0.9 > 0.5 > floor[0][1]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), n=st.integers(8, 60), p=st.integers(1, 12))
def test_noise_floor_lies_in_zero_one(seed, n, p):
    rng = np.random.default_rng(seed)
    grams = [centered_gram(rng.standard_normal((n, p))) for _ in range(3)]
    floor = np.array(cka_noise_floor(grams, [rng.permutation(n) for _ in range(3)]))
    assert np.all((floor >= -1e-12) & (floor <= 1 + 1e-12))
