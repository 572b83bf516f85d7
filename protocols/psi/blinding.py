"""Chunk-level hashing and blinding, run inline or over a process pool.

The hot loops live here as module-level functions so that a ``spawn``-context
process pool can import them by name. Each task takes one chunk and returns
packed bytes (n x 32), so what crosses the process boundary is flat bytes, not
lists of Python objects:

* :func:`hash_and_blind_chunk` is the fused first pass: normalise, hash to the
  field (RFC 9380 ``hash_to_field``), Elligator 2 to a u-coordinate, X25519
  with the party's scalar. Its input is the raw chunk of items (a flat list of
  ``str``/``bytes``, which pickle moves as fast as packed bytes).
* :func:`blind_chunk` blinds a peer's packed points.

:class:`ChunkMapper` maps a task over an iterator of chunks in order, keeping a
bounded number of tasks in flight so memory stays bounded whatever the input.
gRPC is not fork-safe, so :func:`make_pool` always uses the ``spawn`` start
method.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, TypeVar

import gmpy2
import numpy as np

from pcnode.errors import InternalError

from .curve import FIELD_HASH_BYTES, POINT_BYTES, A, P, blind_points
from .normalize import Normalization, encode_item
from .x25519 import scalar_mult_many

T = TypeVar("T")

#: Items per pool task. Small enough that the last tasks of a pass finish close
#: together on every core (a task of 2^14 items takes ~0.7 s); large enough
#: that per-task pickling and scheduling cost (~1 ms) is noise.
DEFAULT_TASK_ITEMS = 1 << 14

_PM = gmpy2.mpz(P)
_AM = gmpy2.mpz(A)
_MINUS_A = gmpy2.mpz(P - A)
_from_bytes = getattr(gmpy2.mpz, "from_bytes", None)


def _to_mpz(b: bytes) -> Any:
    if _from_bytes is not None:
        return _from_bytes(b, "big")
    return gmpy2.mpz(int.from_bytes(b, "big"))  # gmpy2 < 2.2


def hash_and_blind_chunk(
    items: list[str | bytes], dst: bytes, norm: Normalization, key: bytes
) -> tuple[bytes, list[int]]:
    """Normalise, hash to the curve and blind every item of a chunk.

    Returns the packed blinded points (32 zero bytes in place of a skipped
    item) and the positions of skipped items (invalid or empty after
    normalisation). The hashing is :class:`~protocols.psi.curve.FieldHasher`
    and :func:`~protocols.psi.curve.elligator2_u`, inlined for speed; the tests
    check the two agree.
    """
    dst_prime = dst + bytes([len(dst)])
    head = hashlib.sha512(bytes(128))
    tail0 = FIELD_HASH_BYTES.to_bytes(2, "big") + b"\x00" + dst_prime
    tail1 = b"\x01" + dst_prime
    sha512 = hashlib.sha512
    invert, legendre = gmpy2.invert, gmpy2.legendre
    pm, am, minus_a = _PM, _AM, _MINUS_A
    skipped: list[int] = []
    # Pass 1: hash to the field and form the denominators 1 + 2 r^2, keeping
    # running products so that one inversion serves the whole chunk
    # (Montgomery's trick: 3 multiplications per item instead of an inversion).
    rs: list[Any] = []
    prefix: list[Any] = []
    acc = gmpy2.mpz(1)
    for pos, item in enumerate(items):
        msg = encode_item(item, norm)
        if msg is None:
            skipped.append(pos)
            continue
        h = head.copy()
        h.update(msg)
        h.update(tail0)
        r = _to_mpz(sha512(h.digest() + tail1).digest()[:FIELD_HASH_BYTES]) % pm
        rs.append(r)
        prefix.append(acc)
        acc = acc * (2 * r * r + 1) % pm
    # Pass 2, backwards: each inverse from the running inverse, then Elligator 2.
    inv = invert(acc, pm) if rs else acc
    xs: list[int] = [0] * len(rs)
    for i in range(len(rs) - 1, -1, -1):
        r = rs[i]
        d = 2 * r * r + 1
        x = minus_a * (inv * prefix[i]) % pm
        inv = inv * d % pm
        if legendre(x * (x * (x + am) + 1) % pm, pm) < 0:
            x = (minus_a - x) % pm
        xs[i] = int(x)
    us = [x.to_bytes(POINT_BYTES, "little") for x in xs]
    blinded = scalar_mult_many(b"".join(us), key)
    if blinded and not np.frombuffer(blinded, dtype=np.uint8).reshape(-1, POINT_BYTES).any(axis=1).all():
        # pragma: no cover - needs a SHA-512 preimage of a small-order point
        raise InternalError("an item hashed to a small-order point")
    if not skipped:
        return blinded, skipped
    out = np.zeros((len(items), POINT_BYTES), dtype=np.uint8)
    keep = np.ones(len(items), dtype=bool)
    keep[skipped] = False
    out[keep] = np.frombuffer(blinded, dtype=np.uint8).reshape(-1, POINT_BYTES)
    return out.tobytes(), skipped


def blind_chunk(points: bytes, key: bytes, check_curve: bool = False,
                returned_to_sender: bool = False) -> bytes:
    """Blind a peer's packed points; ProtocolError on a small-order (or off-curve) point.

    ``returned_to_sender``: the results go back to the peer that sent the points.
    """
    return blind_points(points, key, check_curve=check_curve,
                        returned_to_sender=returned_to_sender)


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def make_pool(workers: int | None = None) -> ProcessPoolExecutor:
    """A process pool for PSI chunks, using the fork-safe ``spawn`` start method.

    Create one per job (or per node) and pass it to the protocol; shut it down
    when done. Workers take ~0.3 s to start (they import numpy, gmpy2 and
    cryptography), so do not create one per chunk.
    """
    n = default_workers() if workers is None else workers
    if n < 1:
        raise InternalError("a process pool needs at least one worker")
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))


class ChunkMapper:
    """Ordered, bounded map of a chunk function over a pool, or inline without one."""

    def __init__(self, pool: Executor | None, workers: int = 1) -> None:
        self.pool = pool
        #: Tasks in flight: two per worker keeps every worker busy while the
        #: parent collects results, and bounds memory to a few chunks.
        self.max_in_flight = max(2, 2 * workers)

    def map(self, fn: Callable[..., T], args: Iterable[tuple[Any, ...]]) -> Iterator[T]:
        """Yield ``fn(*a)`` for each ``a`` in ``args``, in order."""
        if self.pool is None:
            for a in args:
                yield fn(*a)
            return
        pending: deque[Future[T]] = deque()
        try:
            for a in args:
                pending.append(self.pool.submit(fn, *a))
                if len(pending) >= self.max_in_flight:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


__all__ = [
    "DEFAULT_TASK_ITEMS",
    "ChunkMapper",
    "blind_chunk",
    "default_workers",
    "hash_and_blind_chunk",
    "make_pool",
]
