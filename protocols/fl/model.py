"""The split model: one small part per party, serialised as JSON (never pickle).

A vertical model is a :class:`GuestModel` (weights of the guest's features,
the bias, the guest's standardisation) plus one :class:`HostModel` per host
(that host's weights and standardisation). All parts of one training carry
the same ``model_id``; each party stores only its own part.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pcnode.errors import InvalidInput

from .data import Standardizer

FORMAT = "pcnode.fl.lr/1"


def _arr(v: Any, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.ndim != 1 or not np.isfinite(a).all():
        raise InvalidInput(f"model field {name!r} must be a finite 1-D list of numbers")
    return a


@dataclass
class _Part:
    model_id: str
    party: str
    weights: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    version: int = 1
    meta: dict[str, Any] = field(default_factory=dict)

    KIND = ""

    def standardizer(self) -> Standardizer:
        """The stored standardisation."""
        return Standardizer(self.mean, self.std)

    def partial_score(self, x: np.ndarray) -> np.ndarray:
        """``standardise(x) · w`` for this party's columns."""
        return self.standardizer().apply(x) @ self.weights

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes."""
        d = asdict(self)
        for k in ("weights", "mean", "std"):
            d[k] = [float(v) for v in getattr(self, k)]
        d["format"] = FORMAT
        d["kind"] = self.KIND
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def _fields_from(cls, data: bytes) -> dict[str, Any]:
        try:
            d = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"model bytes are not JSON: {exc}") from None
        if not isinstance(d, dict) or d.pop("format", None) != FORMAT \
                or d.pop("kind", None) != cls.KIND:
            raise InvalidInput(f"not a {cls.KIND} model part of format {FORMAT}")
        for k in ("weights", "mean", "std"):
            d[k] = _arr(d.get(k), k)
        if not len(d["weights"]) == len(d["mean"]) == len(d["std"]):
            raise InvalidInput("model weights and standardisation differ in length")
        return d


@dataclass
class HostModel(_Part):
    """A host's part of a vertical model."""

    KIND = "host"

    @classmethod
    def from_bytes(cls, data: bytes) -> HostModel:
        """Parse bytes written by :meth:`to_bytes`."""
        try:
            return cls(**cls._fields_from(data))
        except TypeError as exc:
            raise InvalidInput(f"malformed host model: {exc}") from None


@dataclass
class GuestModel(_Part):
    """The guest's part of a vertical model: its weights, the bias and the host list."""

    bias: float = 0.0
    hosts: list[str] = field(default_factory=list)
    KIND = "guest"

    def partial_score(self, x: np.ndarray) -> np.ndarray:
        """``standardise(x) · w + bias``."""
        return super().partial_score(x) + self.bias

    @classmethod
    def from_bytes(cls, data: bytes) -> GuestModel:
        """Parse bytes written by :meth:`to_bytes`."""
        try:
            return cls(**cls._fields_from(data))
        except TypeError as exc:
            raise InvalidInput(f"malformed guest model: {exc}") from None


@dataclass
class HorizontalModel(_Part):
    """The shared model of a horizontal job (every party holds the same one)."""

    bias: float = 0.0
    KIND = "horizontal"

    def partial_score(self, x: np.ndarray) -> np.ndarray:
        """The full linear predictor ``standardise(x) · w + bias``."""
        return super().partial_score(x) + self.bias

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class."""
        return sigmoid(self.partial_score(x))

    @classmethod
    def from_bytes(cls, data: bytes) -> HorizontalModel:
        """Parse bytes written by :meth:`to_bytes`."""
        try:
            return cls(**cls._fields_from(data))
        except TypeError as exc:
            raise InvalidInput(f"malformed horizontal model: {exc}") from None


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


@dataclass
class TrainReport:
    """What the guest (or a horizontal party) learns about the training run."""

    epochs: int
    losses: list[float]
    converged: bool
    rows: int
    bytes_sent: int
    bytes_received: int
    seconds: float
    epoch_seconds: list[float] = field(default_factory=list)


@dataclass
class ArbiterReport:
    """The arbiter's view: how much it decrypted (all of it masked) and moved."""

    epochs: int
    decryptions: int
    bytes_sent: int
    bytes_received: int
    seconds: float


__all__ = ["ArbiterReport", "GuestModel", "HorizontalModel", "HostModel", "TrainReport",
           "sigmoid"]
