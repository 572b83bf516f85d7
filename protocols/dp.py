"""Differential-privacy noise for released aggregates, and a pure epsilon accountant.

Mechanisms
----------
* Laplace (pure epsilon-DP): noise ``Lap(Delta_1 / epsilon)``.
* Gaussian ((epsilon, delta)-DP): the *analytic* Gaussian mechanism of Balle &
  Wang (ICML 2018), which calibrates ``sigma`` exactly for any epsilon (the
  classic ``sqrt(2 ln(1.25/delta)) Delta_2 / epsilon`` is only valid for
  epsilon < 1 and is looser).

Sensitivities come from declared clipping bounds: with values clipped to
``[lo, hi]``, adding or removing one row changes a count by 1, a sum by at most
``max(|lo|, |hi|)``, and a sum of squares by ``max(lo^2, hi^2)``. Callers clip;
this module never sees the data.

Randomness is drawn from a numpy ``Generator`` seeded from ``secrets`` (the OS
CSPRNG). Known limitation: floating-point Laplace sampling leaks through the
low bits of doubles (Mironov, CCS 2012); :mod:`protocols.stats` rounds every
noisy release to its declared fixed-point grid, which removes those bits in
practice but is not a proof.

Accounting
----------
:class:`EpsilonAccountant` is an immutable value: ``charge`` returns a new
accountant or raises :class:`~pcnode.errors.QuotaExhausted`. Storing ``spent``
(and writing the spend to the ledger) is the node's job.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from pcnode.errors import InvalidInput, QuotaExhausted

#: Default delta for the Gaussian mechanism: far below 1/n for any dataset this
#: node serves (n < 10^8), as the usual "delta << 1/n" guidance asks.
DEFAULT_DELTA = 1e-9
#: Largest epsilon accepted for one query: beyond ~10 the guarantee is vacuous,
#: so a larger request is treated as a mistake rather than honoured.
MAX_EPSILON_PER_QUERY = 10.0
#: Slack when comparing floating-point budget sums.
_BUDGET_SLACK = 1e-12


class Mechanism(StrEnum):
    """Noise mechanism for a query."""

    LAPLACE = "laplace"
    GAUSSIAN = "gaussian"

    @classmethod
    def parse(cls, value: str | Mechanism) -> Mechanism:
        """Parse a name; InvalidInput listing the choices if unknown."""
        try:
            return cls(str(getattr(value, "value", value)).lower())
        except ValueError:
            raise InvalidInput(f"unknown DP mechanism {value!r}",
                               hint="use 'laplace' or 'gaussian'") from None


@dataclass(frozen=True)
class DpSpec:
    """What a query asks for: epsilon (and delta for Gaussian) and the mechanism."""

    epsilon: float
    mechanism: Mechanism = Mechanism.LAPLACE
    delta: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and 0 < self.epsilon <= MAX_EPSILON_PER_QUERY):
            raise InvalidInput(f"epsilon must be in (0, {MAX_EPSILON_PER_QUERY}]",
                               hint="typical values are 0.1 to 2")
        if self.mechanism is Mechanism.GAUSSIAN:
            if not 0 < self.delta < 1:
                raise InvalidInput("the Gaussian mechanism needs 0 < delta < 1")
        elif self.delta != 0:
            raise InvalidInput("delta applies to the Gaussian mechanism only")

    @classmethod
    def make(cls, epsilon: float, mechanism: str | Mechanism = Mechanism.LAPLACE,
             delta: float | None = None) -> DpSpec:
        """Build a spec, defaulting delta to :data:`DEFAULT_DELTA` for Gaussian."""
        mech = Mechanism.parse(mechanism)
        if delta is None:
            delta = DEFAULT_DELTA if mech is Mechanism.GAUSSIAN else 0.0
        return cls(float(epsilon), mech, float(delta))

    def split(self, parts: int) -> DpSpec:
        """Per-measurement spec when the budget is shared by ``parts`` releases (basic composition)."""
        if parts < 1:
            raise InvalidInput("a DP budget must be split into at least one part")
        return replace(self, epsilon=self.epsilon / parts, delta=self.delta / parts)

    def noise_scale(self, sensitivity: float) -> float:
        """Laplace ``b`` or Gaussian ``sigma`` for one release of the given sensitivity."""
        if self.mechanism is Mechanism.LAPLACE:
            return laplace_scale(sensitivity, self.epsilon)
        return gaussian_sigma(sensitivity, self.epsilon, self.delta)


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """Scale ``b = Delta_1 / epsilon`` of the Laplace mechanism."""
    _check(sensitivity, epsilon)
    return sensitivity / epsilon


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """Smallest ``sigma`` giving (epsilon, delta)-DP: analytic Gaussian mechanism (Balle & Wang 2018).

    Solves ``Phi(D/(2s) - e s/D) - exp(e) Phi(-D/(2s) - e s/D) <= delta`` by bisection.
    """
    _check(sensitivity, epsilon)
    if not 0 < delta < 1:
        raise InvalidInput("delta must be in (0, 1)")
    if sensitivity == 0:
        return 0.0

    def achieved(sigma: float) -> float:
        a = sensitivity / (2 * sigma)
        b = epsilon * sigma / sensitivity
        return _phi(a - b) - math.exp(epsilon) * _phi(-a - b)

    lo, hi = 1e-12 * sensitivity, sensitivity
    while achieved(hi) > delta:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if achieved(mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def _check(sensitivity: float, epsilon: float) -> None:
    if not (math.isfinite(sensitivity) and sensitivity >= 0):
        raise InvalidInput("sensitivity must be finite and non-negative")
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise InvalidInput("epsilon must be positive")


class NoiseSource:
    """Draws mechanism noise from a CSPRNG-seeded generator."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(secrets.randbits(128) if seed is None else seed)

    def sample(self, spec: DpSpec, sensitivity: float, size: int | None = None) -> np.ndarray:
        """Noise for ``size`` releases (each with ``spec``'s own epsilon) of ``sensitivity``."""
        scale = spec.noise_scale(sensitivity)
        if scale == 0:
            return np.zeros(() if size is None else size)
        if spec.mechanism is Mechanism.LAPLACE:
            return self._rng.laplace(0.0, scale, size)
        return self._rng.normal(0.0, scale, size)


@dataclass(frozen=True)
class EpsilonAccountant:
    """Privacy budget of one grant under basic composition. Immutable; the node persists it."""

    budget_epsilon: float
    spent_epsilon: float = 0.0
    budget_delta: float = 0.0
    spent_delta: float = 0.0

    def __post_init__(self) -> None:
        vals = (self.budget_epsilon, self.spent_epsilon, self.budget_delta, self.spent_delta)
        if any(not math.isfinite(v) or v < 0 for v in vals):
            raise InvalidInput("privacy budgets and spends must be finite and non-negative")

    @property
    def remaining_epsilon(self) -> float:
        """Epsilon still available."""
        return max(0.0, self.budget_epsilon - self.spent_epsilon)

    @property
    def remaining_delta(self) -> float:
        """Delta still available."""
        return max(0.0, self.budget_delta - self.spent_delta)

    def can_spend(self, spec: DpSpec) -> bool:
        """Whether ``spec`` fits in what remains."""
        return (self.spent_epsilon + spec.epsilon <= self.budget_epsilon + _BUDGET_SLACK
                and self.spent_delta + spec.delta <= self.budget_delta + _BUDGET_SLACK)

    def charge(self, spec: DpSpec) -> EpsilonAccountant:
        """The accountant after spending ``spec``.

        Raises QuotaExhausted (rule ``epsilon_budget``) if it does not fit.
        """
        if not self.can_spend(spec):
            raise QuotaExhausted(
                f"privacy budget exhausted: the query needs epsilon={spec.epsilon:g}"
                + (f", delta={spec.delta:g}" if spec.delta else "")
                + f" but {self.remaining_epsilon:g} epsilon"
                + (f" and {self.remaining_delta:g} delta" if spec.delta else "")
                + " remain",
                hint="ask the data provider for a new grant or a larger budget",
                rule="epsilon_budget", requested=spec.epsilon, remaining=self.remaining_epsilon,
            )
        return replace(self, spent_epsilon=self.spent_epsilon + spec.epsilon,
                       spent_delta=self.spent_delta + spec.delta)


__all__ = [
    "DEFAULT_DELTA",
    "MAX_EPSILON_PER_QUERY",
    "DpSpec",
    "EpsilonAccountant",
    "Mechanism",
    "NoiseSource",
    "gaussian_sigma",
    "laplace_scale",
]
