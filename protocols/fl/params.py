"""Parameters of federated LR jobs, shared by every party of a job.

Every party is given the same parameters (the node takes them from the job
request); the parties check at the start that their digests agree, so a
mismatch fails fast instead of producing a wrong model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pcnode.errors import InvalidInput

#: Bound on each party's partial linear predictor |x·w| per row. The Taylor
#: expansion of the logistic loss is useless far beyond it, and it bounds the
#: fixed-point range of the encrypted residual. Exceeding it stops training.
MAX_PARTIAL_SCORE = 64.0

#: A batch must have more rows than any party has features, otherwise a host
#: could solve Xᵀd = g for the residual d (and so the labels) of that batch.
MIN_ROWS_PER_FEATURE = 2

EpochCallback = Callable[[int, "float | None", int, int], None]
"""``on_epoch(epoch, loss, rows, bytes)``: loss is None at parties that do not learn it."""


@dataclass
class VerticalParams:
    """Parameters of a vertical (guest/host/arbiter) LR job.

    Roles: ``guest`` holds labels, ``hosts`` hold features only, ``arbiter``
    holds the HE key. ``l2`` is the coefficient of ``l2/2 * ||w||^2`` added to
    the mean loss (sklearn's ``C`` corresponds to ``l2 = 1 / (C * n_rows)``).
    Early stopping: training stops when the epoch loss has improved by less
    than ``tol`` for ``patience`` consecutive epochs.
    """

    guest: str
    hosts: list[str]
    arbiter: str
    backend: str = "ckks"
    epochs: int = 10
    batch_size: int = 8192
    learning_rate: float = 0.15
    decay: float = 0.0
    l2: float = 0.0
    tol: float = 1e-4
    patience: int = 2
    seed: int | None = None
    job_id: str = ""

    def validate(self) -> None:
        """Raise InvalidInput naming the first bad parameter."""
        if not self.hosts:
            raise InvalidInput("a vertical job needs at least one host")
        names = [self.guest, *self.hosts, self.arbiter]
        if len(set(names)) != len(names):
            raise InvalidInput("guest, hosts and arbiter must be distinct parties")
        if self.backend not in ("ckks", "paillier"):
            raise InvalidInput(f"unknown backend {self.backend!r}", hint="use ckks or paillier")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise InvalidInput("epochs, batch_size and patience must be positive")
        if not (self.learning_rate > 0 and self.l2 >= 0 and self.tol >= 0 and self.decay >= 0):
            raise InvalidInput("learning_rate must be > 0; l2, tol and decay >= 0")

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of these parameters."""
        return _digest(asdict(self))


@dataclass
class HorizontalParams:
    """Parameters of a horizontal LR job: ``parties`` train locally, ``arbiter`` decrypts sums.

    ``aggregator`` (default: the first party) adds the parties' encrypted
    updates and hands only the sum to the arbiter. Each round runs
    ``local_epochs`` of mini-batch gradient descent at every party.
    """

    parties: list[str]
    arbiter: str
    aggregator: str = ""
    rounds: int = 10
    local_epochs: int = 1
    batch_size: int = 256
    learning_rate: float = 0.1
    l2: float = 0.0
    tol: float = 1e-4
    patience: int = 2
    job_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise InvalidInput naming the first bad parameter."""
        if len(self.parties) < 2:
            raise InvalidInput("a horizontal job needs at least two parties")
        if len(set([*self.parties, self.arbiter])) != len(self.parties) + 1:
            raise InvalidInput("parties and arbiter must be distinct")
        if self.aggregator and self.aggregator not in self.parties:
            raise InvalidInput("the aggregator must be one of the parties")
        if self.rounds < 1 or self.local_epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise InvalidInput("rounds, local_epochs, batch_size and patience must be positive")
        if not (self.learning_rate > 0 and self.l2 >= 0 and self.tol >= 0):
            raise InvalidInput("learning_rate must be > 0; l2 and tol >= 0")

    @property
    def aggregator_name(self) -> str:
        """The party that sums the encrypted updates."""
        return self.aggregator or self.parties[0]

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of these parameters."""
        return _digest(asdict(self))


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


__all__ = ["MAX_PARTIAL_SCORE", "MIN_ROWS_PER_FEATURE", "EpochCallback", "HorizontalParams",
           "VerticalParams"]
