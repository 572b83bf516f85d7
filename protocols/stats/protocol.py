"""Intersection-aggregate (after Google's Private Join and Compute), requester learns only aggregates.

Roles: requester R (keys, learns aggregates), holder S (keys + value columns,
owns the HE key, learns only counts, which it checks against k).

Message flow (tags under ``stats/``)::

    R -> S  hello    query, |X|, R's salt half
    S -> R  setup    backend, S's salt half, |Y|, group labels, encodings/layout, k  (or an error)
    S -> R  key      Paillier public key | CKKS public context (no secret key)
    R -> S  a        H(x)^a                         chunks of (n, 32) uint8
    S -> R  ab       H(x)^ab, shuffled*             chunks of (n, 32) uint8
    S -> R  b, enc   H(y)^b with Enc_S(row y), in S's shuffled order, chunk by chunk
    R -> S  agg      masked sums per accumulator
    S -> R  release  counts, k-suppression, masked (noisy) sums of released groups

    * not shuffled when the query groups by a requester column, which needs
      the grant's permission (``allow_requester_grouping``): R then links each
      match to its own row and sums per its own group.

R hashes ``H(y)^ba`` and matches it against ``{H(x)^ab}``; because S shuffled
the latter, R learns *which S positions* matched but not which of its own rows
they are. What each party learns is listed exactly in docs/STATS.md.

The job salt is ``SHA-256(domain | R's half | S's half)``, so neither side
chooses it alone. All heavy loops (hashing, blinding, encryption, selection)
run through :func:`protocols.he.pool.imap_chunks`, in a spawn pool if given.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pcnode import errors as errs
from pcnode.errors import InvalidInput, PcnodeError, PermissionDenied, ProtocolError

from ..channel import Channel
from ..dp import EpsilonAccountant, NoiseSource
from ..he.paillier import DEFAULT_PAILLIER_BITS, PaillierSecretKey
from ..he.pool import imap_chunks
from . import ecdh
from .ckks_backend import CkksHolder, CkksRequester
from .fields import SUM, SUMSQ, Field, field_plan, group_index, hist_bins, prepare_columns
from .paillier_backend import PaillierHolder, PaillierRequester
from .query import REQUESTER, StatsQuery
from .result import StatsResult, finalize

PROTOCOL_VERSION = 1
BACKENDS = ("paillier", "ckks")
#: Blinded points per ECDH message: 4096 x 32 B = 128 KiB.
KEY_CHUNK = 4096
#: Holder-side groups (one-hot cost grows linearly with them).
MAX_GROUPS = 1000
#: Requester-side groups (one accumulator each).
MAX_REQUESTER_GROUPS = 1000
#: Largest set either side may announce; beyond it a count is treated as malformed.
MAX_SET_SIZE = 100_000_000
_SALT_DOMAIN = b"pcnode/stats/job-salt/v1\x00"

T_HELLO, T_SETUP, T_KEY = "stats/hello", "stats/setup", "stats/key"
T_A, T_AB, T_B, T_ENC = "stats/a", "stats/ab", "stats/b", "stats/enc"
T_AGG_META, T_AGG, T_RELEASE = "stats/agg", "stats/agg/data", "stats/release"


@dataclass
class HolderReport:
    """What the holder learned and did: counts only (no values), for its ledger entry."""

    backend: str
    rows: int
    requester_rows: int
    intersection_size: int
    group_counts: list[int]
    suppressed: int
    accountant: EpsilonAccountant | None
    metrics: dict[str, Any] = field(default_factory=dict)


def _job_salt(r_half: bytes, s_half: bytes) -> bytes:
    return hashlib.sha256(_SALT_DOMAIN + r_half + s_half).digest()


def _as_bytes(keys: Sequence[bytes | str]) -> list[bytes]:
    out = []
    for k in keys:
        if isinstance(k, bytes):
            out.append(k)
        elif isinstance(k, str):
            out.append(k.encode("utf-8"))
        else:
            raise InvalidInput("keys must be bytes or str (normalise them first)")
    return out


def _submit(pool: Executor | None, fn: Any, *args: Any) -> Future[Any]:
    if pool is not None:
        return pool.submit(fn, *args)
    f: Future[Any] = Future()
    try:
        f.set_result(fn(*args))
    except BaseException as exc:  # surfaced by .result()
        f.set_exception(exc)
    return f


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _send_error(ch: Channel, tag: str, exc: PcnodeError) -> None:
    try:
        ch.send_json(tag, {"error": exc.to_dict()})
    except PcnodeError:
        pass


def _check_peer_error(msg: Any, peer: str) -> None:
    if not isinstance(msg, dict):
        raise ProtocolError(f"{peer} sent a malformed message")
    err = msg.get("error")
    if err is None:
        return
    cls = getattr(errs, str(err.get("error", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, PcnodeError)):
        cls = ProtocolError
    details = err.get("details") if isinstance(err.get("details"), dict) else {}
    details = {str(k): v for k, v in details.items() if k not in ("message", "hint")}
    raise cls(f"{peer} refused: {err.get('message', 'no reason given')}",
              hint=str(err.get("hint", "")), **details)


def _dp_parts(fields: Sequence[Field], query: StatsQuery) -> int:
    """Releases sharing the query's epsilon: count, each sum, each sum of squares, each histogram."""
    return 1 + sum(f.kind in (SUM, SUMSQ) for f in fields) + len(query.histograms)


# ======================================================================================
# holder
# ======================================================================================


def run_holder(channel: Channel, keys: Sequence[bytes | str], columns: Mapping[str, np.ndarray],
               group: np.ndarray | None, query: StatsQuery | None, k: int, backend: str, *,
               allow_requester_grouping: bool = False,
               accountant: EpsilonAccountant | None = None,
               require_dp: bool = False,
               pool: Executor | None = None,
               paillier_bits: int = DEFAULT_PAILLIER_BITS,
               paillier_key: PaillierSecretKey | None = None) -> HolderReport:
    """Serve one intersection-aggregate query as the holder S.

    ``query`` is what the node authorised (columns, grouping); the requester's
    own copy must equal it, or the job fails. ``None`` accepts the requester's
    query (for tests). ``group`` is the holder's group-by column, aligned with
    ``keys``. The epsilon of a DP query is charged to ``accountant`` before any
    data is touched; the returned report carries the updated accountant.
    """
    t0 = time.perf_counter()
    if backend not in BACKENDS:
        raise InvalidInput(f"unknown stats backend {backend!r}", hint="use paillier or ckks")
    if not isinstance(k, int) or k < 1:
        raise InvalidInput("k must be a positive integer")
    skeys = _as_bytes(keys)
    n = len(skeys)
    hello = channel.recv_json(T_HELLO)
    try:
        if not isinstance(hello, dict) or hello.get("v") != PROTOCOL_VERSION:
            raise ProtocolError("requester speaks another stats protocol version",
                                hint="upgrade both nodes to the same pcnode release")
        theirs = StatsQuery.from_json(hello.get("query"))
        if query is not None and theirs.to_json() != query.to_json():
            raise PermissionDenied("the requester's query differs from the authorised one",
                                   rule="query_mismatch")
        query = theirs
        n_req = int(hello.get("n_keys", -1))
        r_half = bytes.fromhex(str(hello.get("salt", "")))
        if not 0 <= n_req <= MAX_SET_SIZE or len(r_half) != 16:
            raise ProtocolError("requester sent a malformed hello")
        if require_dp and query.dp is None:
            raise PermissionDenied("this grant requires differential privacy",
                                   hint="add --epsilon", rule="dp_required")
        if query.group_side == REQUESTER and query.group_by is not None:
            if not allow_requester_grouping:
                raise PermissionDenied(
                    "grouping by a requester column needs a grant that allows intersection membership",
                    hint="group by a holder column instead, or apply for the intersection mode",
                    rule="requester_grouping")
            hgroup = None
        else:
            if query.group_by is not None and group is None:
                raise InvalidInput(f"the holder was not given its group column {query.group_by!r}")
            hgroup = group if query.group_by is not None else None
        fields = field_plan(query)
        if query.dp is not None and accountant is not None:
            accountant = accountant.charge(query.dp)
        prepared = prepare_columns(query, columns, n)
        labels, gidx = group_index(hgroup, n, MAX_GROUPS)
        hidx = hist_bins(query, prepared)
        holder: PaillierHolder | CkksHolder
        if backend == "paillier":
            holder = PaillierHolder(query, fields, prepared, hidx, gidx, len(labels),
                                    key=paillier_key, bits=paillier_bits)
        else:
            holder = CkksHolder(query, fields, prepared, hidx, gidx, len(labels))
    except PcnodeError as exc:
        _send_error(channel, T_SETUP, exc)
        raise
    s_half = secrets.token_bytes(16)
    salt = _job_salt(r_half, s_half)
    rows_msg = holder.rows_per_message()
    channel.send_json(T_SETUP, {
        "v": PROTOCOL_VERSION, "backend": backend, "salt": s_half.hex(), "n_rows": n,
        "labels": labels if hgroup is not None else None, "k": k,
        "rows_per_message": rows_msg, "backend_setup": holder.setup(),
    })
    channel.send(T_KEY, holder.key_bytes())
    t_setup = time.perf_counter()

    b = ecdh.new_scalar()
    order = np.random.default_rng(secrets.randbits(128)).permutation(n)
    own_error: list[BaseException] = []
    stop = threading.Event()

    def own_rows() -> None:
        try:
            tasks = []
            for sl in _chunks(n, rows_msg):
                rows = order[sl]
                tasks.append((ecdh.hash_and_blind, ([skeys[i] for i in rows.tolist()], salt, b)))
                tasks.append(holder.encrypt_task(rows))
            for i, res in enumerate(imap_chunks(_call, tasks, pool)):
                if stop.is_set():
                    return
                if i % 2 == 0:
                    channel.send(T_B, res)
                elif isinstance(holder, CkksHolder):
                    for blob in holder.wrap(res):
                        channel.send(T_ENC, blob)
                else:
                    channel.send(T_ENC, res)
        except BaseException as exc:
            own_error.append(exc)

    # R's double-blinded keys first: R cannot aggregate any chunk before it has all
    # of them, and they are the largest single piece of work here (the audited
    # X25519 path), so our own rows wait until they are on their way.
    incoming = ((channel.recv_array(T_A, np.uint8, (sl.stop - sl.start, ecdh.POINT_BYTES)), b, True)
                for sl in _chunks(n_req, KEY_CHUNK))
    parts = list(imap_chunks(ecdh.reblind, incoming, pool))
    ab = np.concatenate(parts) if parts else np.zeros((0, ecdh.POINT_BYTES), np.uint8)
    if not (query.group_side == REQUESTER and query.group_by is not None):
        ab = ab[np.random.default_rng(secrets.randbits(128)).permutation(n_req)]
    worker = threading.Thread(target=own_rows, name="stats-holder-rows", daemon=True)
    worker.start()
    try:
        for sl in _chunks(n_req, KEY_CHUNK):
            channel.send(T_AB, ab[sl])
    except BaseException:
        stop.set()
        raise
    finally:
        worker.join()
    if own_error:
        raise own_error[0]
    t_ecdh = time.perf_counter()

    meta = channel.recv_json(T_AGG_META)
    try:
        n_blobs = int(meta.get("n_blobs", -1)) if isinstance(meta, dict) else -1
        n_acc = int(meta.get("n_acc", -1)) if isinstance(meta, dict) else -1
        max_acc = MAX_REQUESTER_GROUPS if query.group_side == REQUESTER and query.group_by else 1
        if not 0 <= n_blobs <= 100_000 or not 1 <= n_acc <= max_acc:
            raise ProtocolError("requester sent a malformed aggregate header",
                                hint="one accumulator per requester group, or one without grouping")
        blobs = [channel.recv_bytes(T_AGG) for _ in range(n_blobs)]
        dp = query.dp.split(_dp_parts(fields, query)) if query.dp is not None else None
        release = holder.release(meta, blobs, k, dp, NoiseSource())
    except PcnodeError as exc:
        _send_error(channel, T_RELEASE, exc)
        raise
    channel.send_json(T_RELEASE, release)
    t_end = time.perf_counter()
    return HolderReport(
        backend=backend, rows=n, requester_rows=n_req,
        intersection_size=sum(holder.counts_seen),
        group_counts=list(holder.counts_seen), suppressed=len(release["suppressed"]),
        accountant=accountant,
        metrics={"setup_s": t_setup - t0, "exchange_s": t_ecdh - t_setup,
                 "release_s": t_end - t_ecdh, "total_s": t_end - t0,
                 "bytes_out": channel.bytes_out, "bytes_in": channel.bytes_in},
    )


def _call(fn: Any, args: tuple[Any, ...]) -> Any:
    return fn(*args)


# ======================================================================================
# requester
# ======================================================================================


def run_requester(channel: Channel, keys: Sequence[bytes | str], query: StatsQuery, *,
                  group: np.ndarray | None = None,
                  pool: Executor | None = None) -> StatsResult:
    """Run one intersection-aggregate query as the requester R; returns only aggregates.

    ``group`` is R's own group-by column (aligned with ``keys``) when the query
    groups on the requester side; the holder must allow it.
    """
    t0 = time.perf_counter()
    rkeys = _as_bytes(keys)
    n = len(rkeys)
    req_grouping = query.group_side == REQUESTER and query.group_by is not None
    if req_grouping:
        if group is None:
            raise InvalidInput(f"requester grouping needs the requester's column {query.group_by!r}")
        sorted_labels, sorted_idx = group_index(group, n, MAX_REQUESTER_GROUPS)
        # accumulators in a secret random order: S sees per-group counts, never which is which
        perm = np.random.default_rng(secrets.randbits(128)).permutation(len(sorted_labels))
        r_labels = [""] * len(sorted_labels)
        for i, lab in enumerate(sorted_labels):
            r_labels[int(perm[i])] = lab
        r_gidx = perm[sorted_idx].astype(np.int32)
    else:
        r_labels, r_gidx = ["all"], np.zeros(n, dtype=np.int32)
    r_half = secrets.token_bytes(16)
    channel.send_json(T_HELLO, {"v": PROTOCOL_VERSION, "query": query.to_json(), "n_keys": n,
                                "salt": r_half.hex()})
    setup = channel.recv_json(T_SETUP)
    _check_peer_error(setup, channel.peer)
    try:
        backend = str(setup["backend"])
        n_rows = int(setup["n_rows"])
        s_half = bytes.fromhex(str(setup["salt"]))
        rows_msg = int(setup["rows_per_message"])
        k = int(setup["k"])
        h_labels = setup["labels"]
    except (KeyError, TypeError, ValueError):
        raise ProtocolError("holder sent a malformed setup") from None
    if backend not in BACKENDS or not 0 <= n_rows <= MAX_SET_SIZE or len(s_half) != 16 \
            or not 1 <= rows_msg <= 1 << 20 or k < 1:
        raise ProtocolError("holder sent an implausible setup")
    fields = field_plan(query)
    n_acc = len(r_labels)
    key_bytes = channel.recv_bytes(T_KEY)
    req: PaillierRequester | CkksRequester
    if backend == "paillier":
        req = PaillierRequester(setup.get("backend_setup"), key_bytes, fields, n_acc)
    else:
        req = CkksRequester(setup.get("backend_setup"), key_bytes, fields, n_acc, n_rows)
    if h_labels is None:
        if req.n_groups != 1:
            raise ProtocolError("holder packed several groups but named none")
        labels = list(r_labels) if req_grouping else ["all"]
    else:
        if req_grouping or not isinstance(h_labels, list) or len(h_labels) != req.n_groups:
            raise ProtocolError("holder's group labels do not match its layout")
        labels = [str(x) for x in h_labels]
    salt = _job_salt(r_half, s_half)
    t_setup = time.perf_counter()

    # -- ECDH: send H(x)^a, then H(y)^ba and aggregation chunk by chunk as S's rows arrive --
    a = ecdh.new_scalar()
    for pts in imap_chunks(ecdh.hash_and_blind, [(rkeys[sl], salt, a) for sl in _chunks(n, KEY_CHUNK)],
                           pool):
        channel.send(T_A, pts)
    # Masks depend on no data: make them while the holder blinds our keys.
    masks_fut = None
    if isinstance(req, CkksRequester):
        mask_fn, mask_args = req.mask_task()
        masks_fut = _submit(pool, mask_fn, *mask_args)
    # R receives H(x)^ab in a second thread, so that chunks of S's rows can be matched
    # and aggregated as they arrive instead of after the last one.
    ab_done = threading.Event()
    ab_box: dict[str, Any] = {}

    def receive_ab() -> None:
        try:
            parts = [channel.recv_array(T_AB, np.uint8, (sl.stop - sl.start, ecdh.POINT_BYTES))
                     for sl in _chunks(n, KEY_CHUNK)]
            raw_ab = b"".join(p.tobytes() for p in parts)
            lookup: dict[bytes, int] = {}
            for i in range(n):
                lookup.setdefault(raw_ab[i * 32:(i + 1) * 32], i)
            ab_box["lookup"] = lookup
        except BaseException as exc:
            ab_box["error"] = exc
        finally:
            ab_done.set()

    ab_thread = threading.Thread(target=receive_ab, name="stats-requester-ab", daemon=True)
    ab_thread.start()
    matched = 0
    partials: list[Future[Any]] = []
    pending: list[tuple[Future[Any], int, Any]] = []
    ckks_batch: list[tuple[list[bytes], np.ndarray]] = []
    batch_size = _ckks_batch(-(-n_rows // rows_msg), pool)

    def flush_ckks() -> None:
        if ckks_batch:
            fn, args = req.select_task([c for c, _ in ckks_batch], [s for _, s in ckks_batch])
            partials.append(_submit(pool, fn, *args))
            ckks_batch.clear()

    def process(fut: Future[Any], rows: int, enc: Any) -> None:
        nonlocal matched
        raw_ba = fut.result().tobytes()
        lookup = ab_box["lookup"]
        pos, accs = [], []
        for j in range(rows):
            r = lookup.get(raw_ba[j * 32:(j + 1) * 32])
            if r is not None:
                pos.append(j)
                accs.append(int(r_gidx[r]))
        matched += len(pos)
        if isinstance(req, CkksRequester):
            sel = np.zeros((n_acc, req.slots))
            if pos:
                sel[np.asarray(accs), np.asarray(pos)] = 1.0
            ckks_batch.append((enc, sel))
            if len(ckks_batch) >= batch_size:
                flush_ckks()
        else:  # every chunk is validated, matched or not
            fn, args = req.select_task(enc, np.asarray(pos, np.int64), np.asarray(accs, np.int64))
            partials.append(_submit(pool, fn, *args))

    def drain(block: bool) -> None:
        if "error" in ab_box:
            raise ab_box["error"]
        while pending and (block or pending[0][0].done()):
            process(*pending.pop(0))

    for sl in _chunks(n_rows, rows_msg):
        rows = sl.stop - sl.start
        bpts = channel.recv_array(T_B, np.uint8, (rows, ecdh.POINT_BYTES))
        fut = _submit(pool, ecdh.reblind, bpts, a)
        if isinstance(req, CkksRequester):
            whole = None
            while whole is None:
                whole = req.feed(channel.recv_bytes(T_ENC))
            pending.append((fut, rows, whole))
        else:
            pending.append((fut, rows, channel.recv_bytes(T_ENC)))
        if ab_done.is_set():
            drain(block=False)
    ab_done.wait()
    ab_thread.join()
    drain(block=True)
    flush_ckks()
    duplicates = n - len(ab_box["lookup"])
    t_ecdh = time.perf_counter()
    for f in partials:
        req.absorb(f.result())
    if masks_fut is not None and isinstance(req, CkksRequester):
        req.use_masks(masks_fut.result())
    meta, blobs = req.masked_aggregates()
    meta["n_blobs"] = len(blobs)
    channel.send_json(T_AGG_META, meta)
    for blob in blobs:
        channel.send(T_AGG, blob)
    t_agg = time.perf_counter()

    release = channel.recv_json(T_RELEASE)
    _check_peer_error(release, channel.peer)
    noisy = query.dp is not None
    sums = req.unmask(release, labels, matched, noisy)
    rows_out = sorted(finalize(query, sums), key=lambda r: r.group) if req_grouping \
        else finalize(query, sums)
    t_end = time.perf_counter()
    return StatsResult(
        query=query, backend=backend, k=k, groups=rows_out, intersection_size=matched,
        dp=query.dp,
        metrics={"holder_rows": n_rows, "requester_rows": n, "duplicate_keys": duplicates,
                 "setup_s": t_setup - t0, "exchange_s": t_ecdh - t_setup,
                 "aggregate_s": t_agg - t_ecdh, "release_s": t_end - t_agg,
                 "total_s": t_end - t0, "bytes_out": channel.bytes_out,
                 "bytes_in": channel.bytes_in},
    )


def _ckks_batch(n_chunks: int, pool: Executor | None) -> int:
    workers = getattr(pool, "_max_workers", 1) if pool is not None else 1
    return max(1, -(-n_chunks // (2 * workers)))


__all__ = ["BACKENDS", "KEY_CHUNK", "PROTOCOL_VERSION", "HolderReport", "run_holder",
           "run_requester"]
