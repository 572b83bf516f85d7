"""Local data handling: standardisation and the shared batch plan.

Standardisation is local: each party computes the mean and standard deviation
of its *own* feature columns over its training rows, applies them, and keeps
them in its part of the model to apply again at scoring. Nothing about a
party's features leaves it for this.

Batches: the guest draws a seed and sends it to the hosts. The partition of
rows into batches is drawn once from it and stays fixed for the whole training
(each party can then encode its batch matrices once); the *order* of batches is
reshuffled every epoch from the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcnode.errors import InvalidInput


@dataclass
class Standardizer:
    """Per-column mean and standard deviation (constant columns get std 1)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        """Compute the statistics of ``x`` (rows x features)."""
        x = check_matrix(x)
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Standardise ``x`` with the stored statistics."""
        x = check_matrix(x)
        if x.shape[1] != len(self.mean):
            raise InvalidInput(f"expected {len(self.mean)} feature columns, got {x.shape[1]}")
        return (x - self.mean) / self.std


def check_matrix(x: np.ndarray) -> np.ndarray:
    """A finite float64 2-D matrix, or InvalidInput."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InvalidInput("features must be a non-empty 2-D array (rows x columns)")
    if not np.isfinite(x).all():
        raise InvalidInput("features contain NaN or infinite values",
                           hint="impute or drop missing values before training")
    return x


def labels_pm1(y: np.ndarray) -> np.ndarray:
    """Labels as ±1 from {0,1} or {-1,1}; anything else is InvalidInput."""
    y = np.asarray(y).ravel()
    values = set(np.unique(y).tolist())
    if values <= {0, 1}:
        return np.where(y == 1, 1.0, -1.0)
    if values <= {-1, 1}:
        return y.astype(np.float64)
    raise InvalidInput("labels must be {0,1} or {-1,1}",
                       hint="encode the positive class as 1 and the other as 0")


def batch_plan(n_rows: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Fixed partition of ``range(n_rows)`` into batches (last one may be larger)."""
    rng = np.random.default_rng([seed, 0])
    perm = rng.permutation(n_rows)
    n_batches = max(1, n_rows // batch_size)
    return [np.sort(part) for part in np.array_split(perm, n_batches)]


def epoch_order(n_batches: int, seed: int, epoch: int) -> list[int]:
    """The order batches are visited in ``epoch`` (0-based)."""
    return np.random.default_rng([seed, 1, epoch]).permutation(n_batches).tolist()


__all__ = ["Standardizer", "batch_plan", "check_matrix", "epoch_order", "labels_pm1"]
