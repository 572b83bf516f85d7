"""Compact tables of blinded points: deduplication, canonical order, membership.

Everything here works on numpy arrays of 32-byte points (shape ``(n, 32)``,
dtype uint8) and never on Python objects, so a 10M-row set costs 16 bytes per
row in a matching table instead of ~100 bytes per Python ``bytes``.

**Keys.** A point's *key* is its first :data:`DIGEST_BYTES` bytes, read as two
big-endian uint64 words ``(hi, lo)``, i.e. byte-wise order. Blinded points are
X25519 outputs of distinct items: pseudo-random 255-bit values, so equal keys
mean equal points except with probability about ``n_a * n_b / 2**129`` for two
sets of sizes ``n_a``, ``n_b`` (about 3e-25 for 10M x 10M). That false-match
probability is the only error in the protocol's output.

**Canonical order.** Each party sends its blinded set sorted by key. The order
then depends only on the set and the secret scalar, never on row order, and the
receiver checks it (strictly increasing keys), which also proves the peer sent
no duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .curve import POINT_BYTES

#: Bytes of a point kept for matching: 128 bits makes a false match
#: negligible (see the module docstring) and halves memory against 32.
DIGEST_BYTES = 16
#: Query rows matched per vectorised step (bounds temporary memory to ~40 MiB).
QUERY_BLOCK = 1 << 20


def split_keys(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (hi, lo) uint64 key words of an (n, >=16) uint8 array, in byte-wise order.

    A C-contiguous (n, 16) or (n, 32) array is read through a strided view, so
    the only copies made are the two native uint64 columns (16 B per row).
    """
    if points.flags.c_contiguous and points.shape[1] % 8 == 0:
        words = points.view(">u8")
    else:
        words = np.ascontiguousarray(points[:, :DIGEST_BYTES]).view(">u8")
    return words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)


@dataclass
class Dedup:
    """The unique points of a pass, in canonical (sorted-by-key) order."""

    #: Row number of the first occurrence of each unique point, in key order.
    rows: np.ndarray
    #: Rows dropped because an earlier row has the same normalised key.
    duplicates: int
    #: For every input row, the index into ``rows`` of its point (-1 if skipped);
    #: None unless asked for.
    inverse: np.ndarray | None


def dedupe(points: np.ndarray, valid: np.ndarray, *, with_inverse: bool = True) -> Dedup:
    """Sort the valid rows of ``points`` by key and keep each key's first row."""
    # When every row is valid (the usual case) work on ``points`` in place: a
    # fancy-indexed copy would cost another 32 B per row at the peak.
    idx = None if bool(np.all(valid)) else np.flatnonzero(valid)
    count = len(points) if idx is None else int(idx.size)
    inverse = np.full(len(points), -1, dtype=np.int64) if with_inverse else None
    if count == 0:
        return Dedup(rows=np.zeros(0, dtype=np.int64), duplicates=0, inverse=inverse)
    hi, lo = split_keys(points if idx is None else points[idx])
    order = np.lexsort((lo, hi))  # stable: equal keys keep ascending row order
    hi = hi[order]
    lo = lo[order]
    new = np.ones(count, dtype=bool)
    new[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    del hi, lo
    if inverse is not None:
        where = order if idx is None else idx[order]
        inverse[where] = np.cumsum(new) - 1
    rows = order[new] if idx is None else idx[order[new]]
    return Dedup(rows=rows.astype(np.int64), duplicates=count - int(rows.size), inverse=inverse)


def sort_points(points: np.ndarray) -> np.ndarray:
    """``points`` reordered by key (a canonical order that depends only on the values)."""
    if len(points) == 0:
        return points
    hi, lo = split_keys(points)
    return points[np.lexsort((lo, hi))]


class OrderChecker:
    """Checks that successive chunks of a stream have strictly increasing keys."""

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None

    def ok(self, points: np.ndarray) -> bool:
        """Absorb one chunk; False if it breaks strict order (within or across chunks)."""
        if len(points) == 0:
            return True
        hi, lo = split_keys(points)
        if len(points) > 1:
            inc = (hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1]))
            if not bool(np.all(inc)):
                return False
        first = (int(hi[0]), int(lo[0]))
        if self._last is not None and not first > self._last:
            return False
        self._last = (int(hi[-1]), int(lo[-1]))
        return True


class KeyTable:
    """A sorted table of point keys answering vectorised membership queries."""

    def __init__(self, digests: np.ndarray) -> None:
        hi, lo = split_keys(digests) if len(digests) else (np.zeros(0, np.uint64),) * 2
        order = np.lexsort((lo, hi))
        self.hi = hi[order]
        self.lo = lo[order]

    def __len__(self) -> int:
        return int(self.hi.size)

    def contains(self, digests: np.ndarray) -> np.ndarray:
        """Boolean mask: which rows of ``digests`` (n, >=16) have a key in the table."""
        n = len(digests)
        if n == 0 or self.hi.size == 0:
            return np.zeros(n, dtype=bool)
        # Blocks bound the temporaries (~40 B per query row) whatever n is.
        return np.concatenate([self._contains(digests[i : i + QUERY_BLOCK])
                               for i in range(0, n, QUERY_BLOCK)])

    def _contains(self, digests: np.ndarray) -> np.ndarray:
        n = len(digests)
        qhi, qlo = split_keys(digests)
        left = np.searchsorted(self.hi, qhi, side="left")
        right = np.searchsorted(self.hi, qhi, side="right")
        count = right - left
        mask = np.zeros(n, dtype=bool)
        one = np.flatnonzero(count == 1)
        mask[one] = self.lo[left[one]] == qlo[one]
        # Several table keys share a hi word: rare (~n^2 / 2^65), resolved one by one.
        for i in np.flatnonzero(count > 1).tolist():
            seg = self.lo[left[i] : right[i]]
            j = np.searchsorted(seg, qlo[i])
            mask[i] = j < seg.size and seg[j] == qlo[i]
        return mask


def empty_points() -> np.ndarray:
    """A (0, 32) uint8 array: the end-of-stream marker."""
    return np.zeros((0, POINT_BYTES), dtype=np.uint8)


__all__ = [
    "DIGEST_BYTES",
    "Dedup",
    "KeyTable",
    "OrderChecker",
    "dedupe",
    "empty_points",
    "sort_points",
    "split_keys",
]
