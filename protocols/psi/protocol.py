"""ECDH-PSI between a requester R and a holder S, in four output modes.

Both parties hash their normalised items onto Curve25519 (per-job salt, see
:mod:`protocols.psi.curve`) and blind them with a fresh secret X25519 scalar:
R holds ``a``, S holds ``b``. Each party deduplicates its blinded set and sends
it in canonical order (sorted by value, so order reveals nothing about rows).
Then, since ``X25519(b, X25519(a, H(x))) == X25519(a, X25519(b, H(x)))``:

1. R → S  hello: mode, salt, normalisation; S → R accepts or refuses.
2. R → S  ``H(x)^a`` for every distinct x (stream, sorted).
   S → R  ``H(y)^b`` for every distinct y (stream, sorted).
3. R computes ``H(y)^ba`` itself and keeps 16-byte keys of them in a table.
   S returns ``H(x)^ab``:
   * ``intersection`` / ``both``: in R's order, chunk by chunk, so R can map
     each back to its row;
   * ``cardinality`` / ``join``: all of them, sorted by value, so R cannot.
4. ``both`` only: R → S a bitmap over S's stream positions that matched.

What each side learns, mode by mode, is in ``docs/PSI.md``; in short: S
always learns |X|, R always learns |Y|; R learns X∩Y (``intersection``,
``both``) or only |X∩Y| (``cardinality``, ``join``); S learns X∩Y only in
``both``. ``join`` leaves a :class:`JoinHandle` for a following aggregate.

Duplicates are removed after normalisation (and counted) before anything is
sent, so the result equals Python's set intersection of the normalised items.
Memory: the own blinded points (32 B/row) during the first pass, then 16 B per
point of each set for matching; everything else streams.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any

import numpy as np

from pcnode.errors import (
    Cancelled,
    InternalError,
    InvalidInput,
    PeerUnavailable,
    ProtocolError,
)

from ..channel import Channel
from .blinding import (
    DEFAULT_TASK_ITEMS,
    ChunkMapper,
    blind_chunk,
    default_workers,
    hash_and_blind_chunk,
    make_pool,
)
from .curve import POINT_BYTES, SCALAR_BYTES, job_dst, new_scalar
from .normalize import Normalization
from .source import Item, ItemSource, as_source
from .stream import (
    MAX_CHUNK_POINTS,
    TAG_HELLO,
    TAG_HOLDER_BLINDED,
    TAG_HOLDER_MATCHES,
    TAG_REPLY,
    TAG_REQUESTER_BLINDED,
    TAG_REQUESTER_DOUBLE,
    StreamDigest,
    rechunk,
    recv_points,
    send_rows,
)
from .table import DIGEST_BYTES, KeyTable, dedupe, sort_points

log = logging.getLogger(__name__)

#: The output modes, in the order of how much they reveal.
MODES = ("cardinality", "join", "intersection", "both")
#: Modes in which the requester learns which of its items intersect.
REQUESTER_LEARNS_ITEMS = frozenset({"intersection", "both"})
PROTOCOL_NAME = "pcnode-psi"
PROTOCOL_VERSION = 1
#: A fresh per-job salt: 256 bits, so hashes from different jobs never relate.
SALT_BYTES = 32
#: Shortest salt accepted from a job or a peer (128 bits).
MIN_SALT_BYTES = 16
#: Longest salt accepted; keeps the RFC 9380 DST under its 255-byte cap.
MAX_SALT_BYTES = 64
#: Points per message: 2^16 x 32 B = 2 MiB, well under any transport limit.
DEFAULT_CHUNK_POINTS = 1 << 16
#: Seconds to wait for a message that follows the peer's heavy computation (its
#: whole first pass: ~250 s for 10M rows on 2 cores). A dead peer is reported
#: by the channel at once; this only bounds a live but stuck one.
DEFAULT_COMPUTE_TIMEOUT = 3600.0

Progress = Callable[[str, int, "int | None"], None]
"""``progress(stage, done, total)``; stages: hashed, blinded, sent, received."""


@dataclass(frozen=True)
class PsiParams:
    """What one party brings to a PSI job (both must agree on mode, salt and normalisation)."""

    #: ``intersection``, ``cardinality``, ``both`` or ``join``.
    mode: str = "intersection"
    #: Per-job salt. The requester draws a fresh one when None; a holder given
    #: one (by the job) refuses a hello with a different salt.
    salt: bytes | None = None
    #: Points per message sent.
    chunk_size: int = DEFAULT_CHUNK_POINTS
    normalization: Normalization = field(default_factory=Normalization)
    #: Worker processes when no pool is passed: None = every CPU, 0 = inline.
    workers: int | None = None
    #: Items per pool task.
    task_items: int = DEFAULT_TASK_ITEMS
    #: Also check that every peer point is on the curve, not its twist (+10%
    #: CPU). X25519 is twist-secure and clamping clears small factors, so this
    #: catches a faulty peer but protects no secret.
    check_peer_points: bool = False
    compute_timeout: float = DEFAULT_COMPUTE_TIMEOUT
    #: Build :attr:`PsiResult.intersection` (a list of the items). Turn off for
    #: huge outputs and fetch rows from :attr:`PsiResult.rows` while streaming.
    collect_items: bool = True

    def validate(self) -> None:
        """Raise InvalidInput naming the first bad field."""
        if self.mode not in MODES:
            raise InvalidInput(
                f"unknown PSI mode {self.mode!r}", hint=f"choose one of {', '.join(MODES)}"
            )
        if not 1 <= self.chunk_size <= MAX_CHUNK_POINTS:
            raise InvalidInput(f"PSI chunk size must be 1..{MAX_CHUNK_POINTS} points")
        if self.salt is not None and not MIN_SALT_BYTES <= len(self.salt) <= MAX_SALT_BYTES:
            raise InvalidInput(f"a PSI salt must be {MIN_SALT_BYTES}..{MAX_SALT_BYTES} bytes")
        if self.workers is not None and self.workers < 0:
            raise InvalidInput("PSI workers must be >= 0 (0 runs inline)")
        if self.task_items < 1:
            raise InvalidInput("PSI task_items must be >= 1")
        if not isinstance(self.normalization, Normalization):
            raise InvalidInput("PSI normalization must be a Normalization")


@dataclass
class JoinHandle:
    """The alignment a ``join`` job leaves for a following aggregate protocol.

    S's stream order (sorted by ``H(y)^b``) is the shared coordinate system.
    Both parties hold the same :attr:`alignment_digest` of that stream, so a
    later protocol can check it is using the same alignment.

    * The **requester** holds :attr:`holder_positions`: which positions of S's
      stream are in X∩Y. Positions are pseudo-random (S sorted its blinded
      values), so R cannot tell which of S's rows they are, and R's own rows
      never appear (S returned R's values shuffled). R learns |X∩Y|.
    * The **holder** holds :attr:`stream_rows`: its row behind each stream
      position, and :attr:`row_positions`, the inverse for every input row.
      S learns nothing about the intersection.

    An aggregate then has S send per-position encrypted values in stream order
    and R sum those at ``holder_positions``: Private Join and Compute.
    """

    role: str
    alignment_digest: str
    holder_positions: np.ndarray | None = None
    stream_rows: np.ndarray | None = None
    row_positions: np.ndarray | None = None

    def describe(self) -> dict[str, Any]:
        """Counts and digest only: safe to log or return over the API."""
        return {
            "role": self.role,
            "alignment_digest": self.alignment_digest,
            "holder_positions": None if self.holder_positions is None
            else int(self.holder_positions.size),
            "matched_positions": None if self.holder_positions is None
            else int(self.holder_positions.sum()),
            "stream_rows": None if self.stream_rows is None else int(self.stream_rows.size),
        }


@dataclass
class PsiResult:
    """What one party ends a PSI job with; :meth:`summary` is the loggable part."""

    mode: str
    role: str
    #: Own items in X∩Y (first occurrence of each key, input order), where revealed.
    intersection: list[Item] | None
    #: Row numbers of those items (0-based input positions), where revealed.
    rows: np.ndarray | None
    #: |X∩Y| where this party learns it, else None.
    size: int | None
    #: Distinct keys after normalisation.
    own_size: int
    #: Rows read from the input.
    own_rows: int
    #: Distinct keys of the peer (it learns ours likewise).
    peer_size: int
    #: Rows whose normalised key repeated an earlier row's.
    duplicates_dropped: int
    #: Rows skipped as invalid or empty after normalisation.
    skipped: int
    rows_in: int = 0
    rows_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    join: JoinHandle | None = None

    def summary(self) -> dict[str, Any]:
        """Counts only (no items, no row numbers): for ledgers, logs and ``--json``."""
        return {
            "mode": self.mode,
            "role": self.role,
            "size": self.size,
            "own_size": self.own_size,
            "own_rows": self.own_rows,
            "peer_size": self.peer_size,
            "duplicates_dropped": self.duplicates_dropped,
            "skipped": self.skipped,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "seconds": round(self.seconds, 3),
            "join": None if self.join is None else self.join.describe(),
        }


@dataclass
class _Own:
    points: np.ndarray | None
    rows: np.ndarray
    inverse: np.ndarray | None
    own_rows: int
    duplicates: int
    skipped: int


class _Run:
    """One party's run: pool, counters, progress and failure handling."""

    def __init__(
        self,
        role: str,
        channel: Channel,
        items: Any,
        params: PsiParams,
        pool: Executor | None,
        progress: Progress | None,
        key: bytes | None,
    ) -> None:
        params.validate()
        if key is not None and len(key) != SCALAR_BYTES:
            raise InvalidInput("a PSI key must be 32 bytes")
        self.role = role
        self.ch = channel
        self.params = params
        self.source: ItemSource = as_source(items)
        self.key = key if key is not None else new_scalar()
        self._progress = progress
        self._pool = pool
        self._own_pool: Executor | None = None
        self._counts = {"hashed": 0, "blinded": 0, "sent": 0, "received": 0}
        self._count_lock = threading.Lock()
        self._bytes0 = (channel.bytes_in, channel.bytes_out)
        self._t0 = time.perf_counter()
        self.timeout = max(channel.timeout, params.compute_timeout)
        self.mapper = ChunkMapper(None)

    def __enter__(self) -> _Run:
        pool = self._pool
        workers = self.params.workers
        if pool is None and workers != 0:
            workers = default_workers() if workers is None else workers
            pool = self._own_pool = make_pool(workers)
        n = getattr(pool, "_max_workers", workers or 1) if pool is not None else 1
        self.mapper = ChunkMapper(pool, n)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, (Cancelled, PeerUnavailable)):
            # Stop the peer promptly instead of letting it wait for a timeout.
            self.ch.cancel(f"PSI {self.role} stopped: {type(exc).__name__}")
        if self._own_pool is not None:
            self._own_pool.shutdown(wait=True, cancel_futures=True)

    # -- progress -------------------------------------------------------------------

    def tick(self, stage: str, n: int, total: int | None = None) -> None:
        """Count ``n`` more units of ``stage`` and report them (from any thread)."""
        with self._count_lock:
            self._counts[stage] += n
            if self._progress is not None:
                self._progress(stage, self._counts[stage], total)

    # -- the two passes -----------------------------------------------------------------

    def _map(self, fn: Callable[..., Any], args: Iterator[tuple[Any, ...]]) -> Iterator[Any]:
        try:
            yield from self.mapper.map(fn, args)
        except BrokenProcessPool:
            raise InternalError(
                "a PSI worker process died",
                hint="check the node's memory limit (the OOM killer) and its log",
            ) from None

    def first_pass(self, dst: bytes, retain: bool, with_inverse: bool = False) -> _Own:
        """Hash and blind every own item, then deduplicate (in canonical order)."""
        p = self.params
        total = self.source.total
        args = (
            (chunk, dst, p.normalization, self.key)
            for chunk in self.source.chunks(p.task_items, retain=retain)
        )
        prealloc = np.empty((total, POINT_BYTES), np.uint8) if total is not None else None
        parts: list[np.ndarray] = []
        skipped: list[int] = []
        n = 0
        for out, sk in self._map(hash_and_blind_chunk, args):
            arr = np.frombuffer(out, dtype=np.uint8).reshape(-1, POINT_BYTES)
            if prealloc is not None and n + len(arr) <= len(prealloc):
                prealloc[n : n + len(arr)] = arr
            else:
                if prealloc is not None:  # the source yielded more rows than it declared
                    parts.append(prealloc[:n].copy())
                    prealloc = None
                parts.append(arr)
            skipped.extend(n + s for s in sk)
            n += len(arr)
            self.tick("hashed", len(arr), total)
            self.tick("blinded", len(arr) - len(sk))
        if prealloc is not None:
            points = prealloc[:n]
        else:
            points = np.concatenate(parts) if parts else np.zeros((0, POINT_BYTES), np.uint8)
        del parts
        valid = np.ones(n, dtype=bool)
        valid[np.asarray(skipped, dtype=np.int64)] = False
        d = dedupe(points, valid, with_inverse=with_inverse)
        return _Own(points, d.rows, d.inverse, n, d.duplicates, len(skipped))

    def blind_peer(
        self, tag: str, *, ordered: bool, returned: bool, digest: StreamDigest | None = None
    ) -> Iterator[np.ndarray]:
        """Receive the peer's stream under ``tag`` and yield it blinded with our key.

        ``returned`` says the blinded values go back to the peer, which chose
        the points: they are then blinded on the audited X25519 path.
        """
        p = self.params
        step = p.task_items

        def tasks() -> Iterator[tuple[bytes, bytes, bool, bool]]:
            for arr in recv_points(
                self.ch, tag, self.timeout, ordered=ordered,
                on_received=lambda k: self.tick("received", k), digest=digest,
            ):
                for i in range(0, len(arr), step):
                    yield arr[i : i + step].tobytes(), self.key, p.check_peer_points, returned

        for out in self._map(blind_chunk, tasks()):
            arr = np.frombuffer(out, dtype=np.uint8).reshape(-1, POINT_BYTES)
            self.tick("blinded", len(arr))
            yield arr

    def send(self, tag: str, points: np.ndarray, rows: np.ndarray | None,
             digest: StreamDigest | None = None) -> int:
        """Stream ``points[rows]`` to the peer under ``tag``."""
        total = len(points) if rows is None else len(rows)
        return send_rows(self.ch, tag, points, rows, self.params.chunk_size,
                         on_sent=lambda k: self.tick("sent", k, total), digest=digest)

    def items(self, rows: np.ndarray) -> list[Item] | None:
        """The own items at ``rows``, if the job collects them."""
        return self.source.take(rows) if self.params.collect_items else None

    def result(self, **kw: Any) -> PsiResult:
        """Build the result with the traffic counters filled in, and log its summary."""
        res = PsiResult(
            mode=self.params.mode,
            role=self.role,
            rows_in=self._counts["received"],
            rows_out=self._counts["sent"],
            bytes_in=self.ch.bytes_in - self._bytes0[0],
            bytes_out=self.ch.bytes_out - self._bytes0[1],
            seconds=time.perf_counter() - self._t0,
            **kw,
        )
        log.info("psi %s done: %s", self.role, res.summary())
        return res


class _Beside:
    """Run one step of a party in a thread beside the caller's.

    Both parties stream their own points while the peer's arrive. Done one
    after the other, both would block on a full link once a stream outgrows
    the channel's buffers (at a few million points over gRPC), so each party
    sends, and reads what it will need later, concurrently with its main pass.
    A failure here cancels the link, so the caller never waits forever;
    :func:`_alongside` then re-raises this error instead of the cancellation.
    """

    def __init__(self, ch: Channel, name: str, fn: Callable[[], Any]) -> None:
        self._ch = ch
        self._value: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:
            self.error = exc
            self._ch.cancel(f"PSI step failed: {type(exc).__name__}")



def _alongside(main: Callable[[], Any], *steps: _Beside) -> tuple[Any, list[Any]]:
    """Run ``main`` while ``steps`` run; return its value and theirs.

    On failure, raise the error that started it, not the cancellation it caused
    in the other threads.
    """
    try:
        value = main()
    except Cancelled as exc:
        for step in steps:
            step._thread.join(timeout=5.0)
        raise next((s.error for s in steps
                    if s.error is not None and not isinstance(s.error, Cancelled)), exc) from None
    for step in steps:
        step._thread.join()
    errors = [s.error for s in steps if s.error is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
    return value, [s._value for s in steps]


def _digests(chunks: Iterator[np.ndarray], expected: int | None = None,
             peer: str = "peer") -> np.ndarray:
    """Keep only the 16-byte keys of a stream of points, as one (n, 16) array.

    With ``expected`` the array is allocated once (no concatenation peak) and a
    stream of any other length is a ProtocolError.
    """
    if expected is None:
        parts = [np.array(c[:, :DIGEST_BYTES]) for c in chunks]
        return np.concatenate(parts) if parts else np.zeros((0, DIGEST_BYTES), np.uint8)
    out = np.empty((expected, DIGEST_BYTES), np.uint8)
    n = 0
    for c in chunks:
        if n + len(c) > expected:
            raise ProtocolError(
                f"{peer} returned more double-blinded points than the {expected} we sent",
                hint="the holder's PSI implementation is faulty or incompatible",
            )
        out[n : n + len(c)] = c[:, :DIGEST_BYTES]
        n += len(c)
    if n != expected:
        raise ProtocolError(
            f"{peer} returned {n} double-blinded points for our {expected}",
            hint="the holder's PSI implementation is faulty or incompatible",
        )
    return out


def _hello(params: PsiParams, salt: bytes) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL_NAME,
        "version": PROTOCOL_VERSION,
        "mode": params.mode,
        "salt": salt.hex(),
        "normalization": params.normalization.to_dict(),
    }


def run_requester(
    channel: Channel,
    items: Any,
    params: PsiParams | None = None,
    *,
    pool: Executor | None = None,
    progress: Progress | None = None,
    key: bytes | None = None,
) -> PsiResult:
    """Run PSI as the requester R against the holder at the other end of ``channel``.

    ``items``: a sequence of ``str``/``bytes``, an :class:`ItemSource`, a chunk
    factory or an iterable (see :mod:`protocols.psi.source`). ``pool``: a
    process pool to reuse (see :func:`~protocols.psi.blinding.make_pool`);
    without one, ``params.workers`` processes are started for this job.
    ``key``: the secret scalar, for tests only; a fresh one is drawn when None.
    On any failure the channel is cancelled so the holder stops at once.
    """
    params = params or PsiParams()
    with _Run("requester", channel, items, params, pool, progress, key) as run:
        return _requester(run)


def _requester(run: _Run) -> PsiResult:
    ch, p = run.ch, run.params
    salt = p.salt if p.salt is not None else os.urandom(SALT_BYTES)
    ch.send_json(TAG_HELLO, _hello(p, salt))
    reply = ch.recv_json(TAG_REPLY, timeout=run.timeout)
    if not isinstance(reply, dict) or reply.get("ok") is not True:
        reason = reply.get("reason") if isinstance(reply, dict) else None
        raise ProtocolError(
            f"{ch.peer} refused the PSI job: {str(reason)[:300] if reason else 'no reason given'}",
            hint="agree on mode, salt and normalisation with the holder",
        )
    mode = p.mode
    own = run.first_pass(job_dst(salt), retain=mode in REQUESTER_LEARNS_ITEMS and p.collect_items)
    assert own.points is not None
    points, rows, own.points = own.points, own.rows, None  # sent, then freed: 32 B per row
    n_own = len(points) if rows is None else len(rows)
    shuffled = mode in ("cardinality", "join")
    sender = _Beside(ch, "psi-send", partial(run.send, TAG_REQUESTER_BLINDED, points, rows))
    del points
    doubles = _Beside(ch, "psi-recv-double", lambda: _digests(
        recv_points(ch, TAG_REQUESTER_DOUBLE, run.timeout, ordered=shuffled,
                    on_received=lambda k: run.tick("received", k)),
        expected=n_own, peer=ch.peer))
    holder_stream = StreamDigest()
    theirs, (_, mine) = _alongside(
        lambda: _digests(run.blind_peer(TAG_HOLDER_BLINDED, ordered=True, returned=False,
                                        digest=holder_stream)),
        sender, doubles)
    common = dict(own_size=n_own, own_rows=own.own_rows, peer_size=len(theirs),
                  duplicates_dropped=own.duplicates, skipped=own.skipped)
    if mode in REQUESTER_LEARNS_ITEMS:
        hit = KeyTable(theirs).contains(mine)
        rows = np.sort(own.rows[hit])
        if mode == "both":
            holder_hit = KeyTable(mine).contains(theirs)
            ch.send(TAG_HOLDER_MATCHES, np.packbits(holder_hit))
        return run.result(intersection=run.items(rows), rows=rows, size=int(rows.size),
                          **common)
    holder_hit = KeyTable(mine).contains(theirs)
    size = int(holder_hit.sum())
    handle = None
    if mode == "join":
        handle = JoinHandle("requester", holder_stream.hexdigest(), holder_positions=holder_hit)
    return run.result(intersection=None, rows=None, size=size, join=handle, **common)


def run_holder(
    channel: Channel,
    items: Any,
    params: PsiParams | None = None,
    *,
    pool: Executor | None = None,
    progress: Progress | None = None,
    key: bytes | None = None,
) -> PsiResult:
    """Run PSI as the holder S for the requester at the other end of ``channel``.

    ``params.mode`` is the mode this job allows (the node has checked the
    grant); a hello asking for another mode, another normalisation or (when
    ``params.salt`` is set) another salt is refused with a ProtocolError at
    both ends. Other arguments as for :func:`run_requester`.
    """
    params = params or PsiParams()
    with _Run("holder", channel, items, params, pool, progress, key) as run:
        return _holder(run)


def _check_hello(hello: Any, p: PsiParams, peer: str) -> tuple[bytes, list[str]]:
    """Parse the requester's hello; return its salt and what disagrees with ``p``."""
    if not isinstance(hello, dict) or hello.get("protocol") != PROTOCOL_NAME:
        raise ProtocolError(f"{peer} did not open a PSI job", hint="check the peer's version")
    if hello.get("version") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"{peer} speaks PSI version {hello.get('version')!r}, we speak {PROTOCOL_VERSION}",
            hint="upgrade the older node",
        )
    try:
        salt = bytes.fromhex(str(hello["salt"]))
        norm = Normalization.from_dict(hello["normalization"])
        mode = str(hello["mode"])
    except (KeyError, ValueError):
        raise ProtocolError(f"{peer} sent a malformed PSI hello") from None
    problems = []
    if mode != p.mode:
        problems.append(f"mode {mode!r} asked, this job allows {p.mode!r}")
    if not MIN_SALT_BYTES <= len(salt) <= MAX_SALT_BYTES:
        problems.append(f"salt must be {MIN_SALT_BYTES}..{MAX_SALT_BYTES} bytes")
    elif p.salt is not None and salt != p.salt:
        problems.append("salt differs from the job's salt")
    if norm != p.normalization:
        problems.append("normalisation differs from the job's")
    return salt, problems


def _answer_requester(run: _Run, mode: str) -> int:
    """Blind R's points and return them: in R's order, streaming, or sorted; their count."""
    ch, p = run.ch, run.params
    if mode in REQUESTER_LEARNS_ITEMS:
        # R must map each value back to its row: return them in R's order, streaming.
        n_peer = 0
        for part in rechunk(run.blind_peer(TAG_REQUESTER_BLINDED, ordered=True, returned=True),
                            p.chunk_size):
            ch.send(TAG_REQUESTER_DOUBLE, np.ascontiguousarray(part))
            n_peer += len(part)
            run.tick("sent", len(part))
        ch.send(TAG_REQUESTER_DOUBLE, np.zeros((0, POINT_BYTES), np.uint8))
        return n_peer
    # R must not map them back: collect, put in canonical order, then send.
    parts = list(run.blind_peer(TAG_REQUESTER_BLINDED, ordered=True, returned=True))
    double = sort_points(np.concatenate(parts)) if parts else np.zeros((0, POINT_BYTES), np.uint8)
    del parts
    return run.send(TAG_REQUESTER_DOUBLE, double, None)


def _holder(run: _Run) -> PsiResult:
    ch, p = run.ch, run.params
    salt, problems = _check_hello(ch.recv_json(TAG_HELLO, timeout=run.timeout), p, ch.peer)
    if problems:
        reason = "; ".join(problems)
        ch.send_json(TAG_REPLY, {"ok": False, "reason": reason})
        raise ProtocolError(f"refused the PSI job from {ch.peer}: {reason}",
                            hint="the requester must use the job's mode, salt and normalisation")
    ch.send_json(TAG_REPLY, {"ok": True})
    mode = p.mode
    own = run.first_pass(job_dst(salt), retain=mode == "both" and p.collect_items,
                         with_inverse=mode == "join")
    assert own.points is not None
    points, rows, own.points = own.points, own.rows, None
    n_own = len(points) if rows is None else len(rows)
    stream = StreamDigest()
    sender = _Beside(ch, "psi-send", partial(run.send, TAG_HOLDER_BLINDED, points, rows,
                                             digest=stream))
    del points
    n_peer, _ = _alongside(lambda: _answer_requester(run, mode), sender)
    common = dict(own_size=n_own, own_rows=own.own_rows, peer_size=n_peer,
                  duplicates_dropped=own.duplicates, skipped=own.skipped)
    if mode == "both":
        bits = ch.recv_array(TAG_HOLDER_MATCHES, np.uint8, ((n_own + 7) // 8,),
                             timeout=run.timeout)
        hit = np.unpackbits(bits, count=n_own).astype(bool) if n_own else np.zeros(0, bool)
        if n_own % 8 and np.unpackbits(bits[-1:])[n_own % 8:].any():
            raise ProtocolError(f"{ch.peer} sent a malformed match bitmap")
        rows = np.sort(own.rows[hit])
        return run.result(intersection=run.items(rows), rows=rows, size=int(rows.size),
                          **common)
    handle = None
    if mode == "join":
        handle = JoinHandle("holder", stream.hexdigest(), stream_rows=own.rows,
                            row_positions=own.inverse)
    return run.result(intersection=None, rows=None, size=None, join=handle, **common)


__all__ = [
    "DEFAULT_CHUNK_POINTS",
    "MODES",
    "SALT_BYTES",
    "JoinHandle",
    "Progress",
    "PsiParams",
    "PsiResult",
    "run_holder",
    "run_requester",
]
