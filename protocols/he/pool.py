"""Worker processes for the CPU-heavy parts of HE and joint statistics.

gRPC is not fork-safe, and a node runs gRPC, so every pool here uses the
``spawn`` start method: a worker starts as a fresh interpreter and imports only
what its task needs. Work is sent as small, picklable, module-level functions
with plain arguments (ints, bytes, numpy arrays); nothing here pickles a
``Channel`` or a tenseal object.

:func:`map_chunks` is the one place that decides whether work runs in the pool
or inline, so protocol code is the same with and without workers (tests run
inline; benchmarks and nodes pass a pool).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

#: Start method for every pool: ``fork`` would copy gRPC's threads and locks
#: into the child in an undefined state, so it is never used.
START_METHOD = "spawn"


def default_workers() -> int:
    """Number of CPUs this process may use (respects affinity masks and cgroups' cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


#: Modules a node's workers import as they start, so that the first task of a
#: job does not pay for importing tenseal, SEAL and the X25519 libraries
#: (about 0.4 s of CPU per worker).
PROTOCOL_MODULES = (
    "protocols.psi.blinding",
    "protocols.stats.ckks_backend",
    "protocols.stats.paillier_backend",
    "protocols.stats.ecdh",
)


def _preload(modules: tuple[str, ...]) -> None:
    import importlib

    for name in modules:
        importlib.import_module(name)


def spawn_pool(workers: int | None = None, preload: tuple[str, ...] = ()) -> ProcessPoolExecutor:
    """A process pool whose workers start with ``spawn`` (never ``fork``).

    ``preload`` names modules every worker imports as it starts (for example
    :data:`PROTOCOL_MODULES`); combine with :func:`warm_up` to start them now.
    """
    return ProcessPoolExecutor(
        max_workers=workers or default_workers(),
        mp_context=multiprocessing.get_context(START_METHOD),
        initializer=_preload if preload else None,
        initargs=(preload,) if preload else (),
    )


def warm_up(pool: Executor | None) -> None:
    """Start every worker of ``pool`` now, so the first job does not pay the start-up."""
    if pool is None:
        return
    n = getattr(pool, "_max_workers", 1)
    list(pool.map(_noop, range(4 * n)))


def _noop(x: int) -> int:
    return x


def imap_chunks(fn: Callable[..., T], chunks: Iterable[tuple[Any, ...]],
                pool: Executor | None, window: int | None = None) -> Iterator[T]:
    """Yield ``fn(*args)`` for every argument tuple, in order, computed in ``pool`` or inline.

    At most ``window`` tasks are in flight (default: twice the workers), so memory
    stays bounded and the caller can send one result while later ones compute.
    """
    if pool is None:
        for args in chunks:
            yield fn(*args)
        return
    limit = window or 2 * getattr(pool, "_max_workers", 1)
    pending: deque[Future[T]] = deque()
    for args in chunks:
        pending.append(pool.submit(fn, *args))
        if len(pending) >= limit:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def map_chunks(fn: Callable[..., T], chunks: Iterable[tuple[Any, ...]],
               pool: Executor | None) -> list[T]:
    """Apply ``fn(*args)`` to every argument tuple, in order, in ``pool`` or inline."""
    return list(imap_chunks(fn, chunks, pool))


__all__ = ["PROTOCOL_MODULES", "START_METHOD", "default_workers", "imap_chunks", "map_chunks", "spawn_pool",
           "warm_up"]
