"""Streams of 32-byte points over a :class:`~protocols.channel.Channel`.

A stream is a run of messages under one tag, each an ``(k, 32)`` uint8 array
with ``1 <= k <=`` :data:`MAX_CHUNK_POINTS`, closed by an empty ``(0, 32)``
array. Every chunk is its own message, so neither side ever holds a whole
stream in one buffer and no size meets a transport's message limit.

The receiver checks each chunk's dtype and shape (``recv_array``), its size,
that every value is a canonical u-coordinate (``u < p``, top bit clear) and,
for streams that must be in canonical order, that keys strictly increase.
Anything else is a :class:`~pcnode.errors.ProtocolError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import numpy as np

from pcnode.errors import ProtocolError

from ..channel import Channel
from .curve import POINT_BYTES, canonical_mask
from .table import OrderChecker, empty_points

#: Message tags of the PSI protocol.
TAG_HELLO = "psi/hello"
TAG_REPLY = "psi/hello-reply"
TAG_REQUESTER_BLINDED = "psi/requester-blinded"
TAG_HOLDER_BLINDED = "psi/holder-blinded"
TAG_REQUESTER_DOUBLE = "psi/requester-double-blinded"
TAG_HOLDER_MATCHES = "psi/holder-matches"

#: Largest chunk accepted from a peer: 2^18 points = 8 MiB. Bigger messages
#: would defeat streaming (and meet gRPC limits), so they are refused.
MAX_CHUNK_POINTS = 1 << 18

_FIX = "the peer runs an incompatible or faulty PSI implementation; check its version and log"

OnCount = Callable[[int], None]


class StreamDigest:
    """SHA-256 over the points of a stream, in order: both ends compute the same value."""

    def __init__(self) -> None:
        self._h = hashlib.sha256(b"pcnode/psi/v1/stream\x00")
        self.count = 0

    def update(self, points: np.ndarray) -> None:
        """Absorb one chunk."""
        self._h.update(np.ascontiguousarray(points).tobytes())
        self.count += len(points)

    def hexdigest(self) -> str:
        """The digest so far, as hex."""
        return self._h.hexdigest()


def send_rows(
    ch: Channel,
    tag: str,
    points: np.ndarray,
    rows: np.ndarray | None,
    chunk: int,
    on_sent: OnCount | None = None,
    digest: StreamDigest | None = None,
) -> int:
    """Send ``points[rows]`` (or all of ``points``) as a stream; return the count sent."""
    n = len(points) if rows is None else len(rows)
    for start in range(0, n, chunk):
        if rows is None:
            part = points[start : start + chunk]
        else:
            part = points[rows[start : start + chunk]]
        ch.send(tag, np.ascontiguousarray(part))
        if digest is not None:
            digest.update(part)
        if on_sent is not None:
            on_sent(len(part))
    ch.send(tag, empty_points())
    return n


def recv_points(
    ch: Channel,
    tag: str,
    timeout: float,
    *,
    ordered: bool,
    on_received: OnCount | None = None,
    digest: StreamDigest | None = None,
) -> Iterator[np.ndarray]:
    """Yield the validated chunks of the stream under ``tag`` until its end marker."""
    checker = OrderChecker() if ordered else None
    while True:
        arr = ch.recv_array(tag, np.uint8, (None, POINT_BYTES), timeout=timeout)
        if len(arr) == 0:
            return
        if len(arr) > MAX_CHUNK_POINTS:
            raise ProtocolError(
                f"{ch.peer} sent a chunk of {len(arr)} points under {tag!r}",
                hint=f"chunks are limited to {MAX_CHUNK_POINTS} points; " + _FIX,
            )
        if not bool(np.all(canonical_mask(arr))):
            raise ProtocolError(
                f"{ch.peer} sent a value under {tag!r} that is not a canonical "
                "Curve25519 u-coordinate",
                hint=_FIX,
            )
        if checker is not None and not checker.ok(arr):
            raise ProtocolError(
                f"{ch.peer} sent points under {tag!r} out of canonical order or duplicated",
                hint=_FIX,
            )
        if digest is not None:
            digest.update(arr)
        if on_received is not None:
            on_received(len(arr))
        yield arr


def rechunk(chunks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup a stream of (k, 32) arrays into arrays of ``size`` rows (the last shorter)."""
    buf: list[np.ndarray] = []
    held = 0
    for arr in chunks:
        buf.append(arr)
        held += len(arr)
        while held >= size:
            whole = np.concatenate(buf) if len(buf) > 1 else buf[0]
            yield whole[:size]
            rest = whole[size:]
            buf, held = ([rest], len(rest)) if len(rest) else ([], 0)
    if held:
        yield np.concatenate(buf) if len(buf) > 1 else buf[0]


__all__ = [
    "MAX_CHUNK_POINTS",
    "TAG_HELLO",
    "TAG_HOLDER_BLINDED",
    "TAG_HOLDER_MATCHES",
    "TAG_REPLY",
    "TAG_REQUESTER_BLINDED",
    "TAG_REQUESTER_DOUBLE",
    "StreamDigest",
    "rechunk",
    "recv_points",
    "send_rows",
]
