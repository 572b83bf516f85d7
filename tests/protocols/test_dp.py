"""Differential privacy: mechanism calibration, noise, and the pure epsilon accountant."""

import math

import numpy as np
import pytest

from pcnode.errors import InvalidInput, QuotaExhausted
from protocols.dp import (
    DEFAULT_DELTA,
    DpSpec,
    EpsilonAccountant,
    Mechanism,
    NoiseSource,
    gaussian_sigma,
    laplace_scale,
)


def test_laplace_scale():
    assert laplace_scale(2.0, 0.5) == 4.0


def test_analytic_gaussian_is_tighter_than_the_classic_bound():
    for eps in (0.1, 0.5, 0.9):
        classic = math.sqrt(2 * math.log(1.25 / 1e-6)) / eps
        s = gaussian_sigma(1.0, eps, 1e-6)
        assert 0 < s < classic
    assert gaussian_sigma(3.0, 1.0, 1e-6) == pytest.approx(3 * gaussian_sigma(1.0, 1.0, 1e-6), rel=1e-9)
    assert gaussian_sigma(1.0, 5.0, 1e-6) > 0  # valid beyond epsilon = 1 too


def test_spec_validation_and_defaults():
    assert DpSpec.make(1.0, "gaussian").delta == DEFAULT_DELTA
    assert DpSpec.make(1.0).mechanism is Mechanism.LAPLACE
    with pytest.raises(InvalidInput, match="epsilon"):
        DpSpec.make(0)
    with pytest.raises(InvalidInput, match="epsilon"):
        DpSpec.make(100)
    with pytest.raises(InvalidInput, match="unknown DP mechanism"):
        DpSpec.make(1, "exponential")
    with pytest.raises(InvalidInput, match="delta"):
        DpSpec(1.0, Mechanism.LAPLACE, 0.1)
    assert DpSpec.make(1.0).split(4).epsilon == 0.25


def test_noise_has_the_calibrated_spread():
    src = NoiseSource(seed=7)
    lap = src.sample(DpSpec.make(1.0), 2.0, 20000)
    assert abs(lap.mean()) < 0.1 and np.mean(np.abs(lap)) == pytest.approx(2.0, rel=0.05)
    gau = src.sample(DpSpec.make(1.0, "gaussian", 1e-6), 1.0, 20000)
    assert gau.std() == pytest.approx(gaussian_sigma(1.0, 1.0, 1e-6), rel=0.05)


def test_accountant_denies_once_spent():
    acc = EpsilonAccountant(budget_epsilon=1.0)
    q = DpSpec.make(0.4)
    acc = acc.charge(q).charge(q)
    assert acc.spent_epsilon == pytest.approx(0.8)
    assert acc.can_spend(DpSpec.make(0.2))
    with pytest.raises(QuotaExhausted, match="privacy budget exhausted") as e:
        acc.charge(q)
    assert e.value.details["rule"] == "epsilon_budget"
    assert acc.spent_epsilon == pytest.approx(0.8)  # a refused charge spends nothing


def test_accountant_tracks_delta():
    acc = EpsilonAccountant(budget_epsilon=10, budget_delta=1e-6)
    with pytest.raises(QuotaExhausted, match="delta"):
        acc.charge(DpSpec.make(1.0, "gaussian", 1e-5))


def test_accountant_is_immutable():
    acc = EpsilonAccountant(1.0)
    acc.charge(DpSpec.make(0.5))
    assert acc.spent_epsilon == 0.0
    with pytest.raises(InvalidInput):
        EpsilonAccountant(-1.0)
