"""The Ledger: a node's append-only, hash-chained, signed, Merkle-provable audit log.

Writes go through one writer at a time, so any number of threads keep one
chain; the store itself refuses rows that do not extend
its head, so other processes cannot fork it either (a moved head makes the
ledger rebuild and re-sign its rows and try again).

**Group commit, pipelined.** Concurrent appends share transactions: the
appending threads take turns as the *sealer* (builds and signs the rows of
everything queued, on the head the batch in flight will leave) and the
*writer* (one transaction, one fsync), so sealing the next batch overlaps the
current fsync. Every append still returns only after its own entry is durably
committed; a lone caller gets exactly one transaction per append. See
"Storage" in docs/LEDGER.md.

The Merkle tree is built from the stored leaf hashes on first use (first
checkpoint or proof) and then extended on every commit, so a checkpoint
never rehashes the log.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcnode.errors import (
    InvalidInput,
    LedgerError,
    LedgerIntegrityError,
    PcnodeError,
)

from .checkpoint import Checkpoint
from .ed25519 import make_checker, make_signer
from .encoding import encode_checked_value
from .entry import (
    ENTRY_FORMAT_VERSION,
    ENTRY_SIGNING_DOMAIN,
    ZERO_HASH,
    Entry,
    entry_signing_message,
    validate_fields,
)
from .events import CHECKPOINT, RECEIPT_KEY, RECEIPT_RECEIVED, RESERVED_EVENTS, check_event, check_node
from .keys import PublicKeyLike, key_id
from .merkle import MerkleTree, hash_leaf
from .proofs import ConsistencyProof, InclusionProof
from .receipt import Receipt, make_receipt, verify_receipt
from .store.base import CheckpointRecord, EntryRecord, HeadMoved, LedgerStore, ReceiptRecord
from .timefmt import format_time, now_us, to_us

if TYPE_CHECKING:
    from .verify import VerifyReport

#: Most entries one group-commit transaction carries; bounds a transaction's
#: size and the latency of the callers queued behind it.
MAX_BATCH = 512
#: How often an append is rebuilt after another process moved the head before
#: giving up; each retry means another writer made progress.
MAX_HEAD_RETRIES = 100
#: First back-off after losing that race twice in a row (then doubling, at most 50 ms).
HEAD_BACKOFF_S = 0.0002

T = TypeVar("T")


_SEAL, _WRITE = "seal", "write"


class _Item:
    """One entry to write: validated fields and the body template built from them."""

    __slots__ = ("event", "extra", "fields", "receipt", "template", "time_us")

    def __init__(self, node: str, event: str, time_us: int | None, fields: dict[str, Any],
                 extra: dict[str, Any], receipt: Receipt | None = None) -> None:
        self.event, self.time_us, self.fields, self.extra = event, time_us, fields, extra
        self.receipt = receipt
        # Everything of the body but index, prev and time, encoded once here in the
        # caller's thread so that an unencodable value (a lone surrogate) fails this
        # request alone, before it is queued with others.
        template = _body_template(node, event, fields, extra)
        try:
            encode_checked_value(template)
        except ValueError:
            raise InvalidInput("a field contains text that cannot be encoded (a lone surrogate)",
                               hint="pass valid Unicode text") from None
        self.template = template


def _body_template(node: str, event: str, fields: Mapping[str, Any],
                   extra: Mapping[str, Any]) -> dict[str, Any]:
    """The body of :func:`~ledger.entry.make_body` without index, prev and time.

    The sealer adds those three; the keys are then the same, and the encoding
    sorts them, so the bytes are make_body's.
    """
    body: dict[str, Any] = {"v": ENTRY_FORMAT_VERSION, "event": event, "node": node}
    body.update(fields)
    if extra:
        body["extra"] = dict(extra)
    return body


class _Request:
    """One caller's append (one or more entries, all or none) or checkpoint.

    ``wake`` is held while the caller sleeps; whoever completes the request, or
    hands its thread a role (seal or write a batch), releases it. So a caller
    is woken only for its own request, never by every commit.
    """

    __slots__ = (
        "asleep",
        "checkpoint",
        "done",
        "error",
        "items",
        "prev",
        "records",
        "result",
        "role",
        "wake",
    )

    def __init__(self, items: list[_Item], checkpoint: bool = False) -> None:
        self.items = items
        self.checkpoint = checkpoint
        self.prev = ZERO_HASH  # prev hash of the first record
        self.records: list[EntryRecord] = []
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.asleep = False
        self.role: str | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class _Batch:
    """Requests sealed together on ``base`` (size, prev hash), written in one transaction."""

    __slots__ = ("base", "end", "failed", "receipts", "records", "requests")

    def __init__(self, requests: list[_Request]) -> None:
        self.requests = requests
        self.base: tuple[int, bytes] | None = None
        self.end: tuple[int, bytes] | None = None
        self.records: list[EntryRecord] = []
        self.receipts: list[ReceiptRecord] = []
        #: requests whose rows could not be built (their error is set): not written
        self.failed: list[_Request] = []


class Ledger:
    """A node's ledger over a :class:`~ledger.store.LedgerStore`.

    ``signing_key`` signs every entry, checkpoint and receipt; ``node`` is
    this node's name, written into every entry. Opening a store that another
    node or key wrote raises :class:`~pcnode.errors.LedgerError`.
    """

    def __init__(self, store: LedgerStore, signing_key: Ed25519PrivateKey, node: str, *,
                 clock: Callable[[], int] = now_us) -> None:
        if not isinstance(signing_key, Ed25519PrivateKey):
            raise InvalidInput("the ledger signing key must be an Ed25519PrivateKey",
                               hint="load the node's ledger key with "
                                    "serialization.load_pem_private_key")
        self.store = store
        self.node = check_node(node)
        self._key = signing_key
        self._entry_signer = make_signer(signing_key)
        self.public_key = signing_key.public_key()
        self._clock = clock
        #: Held while rows are written and while the tree is read or extended.
        self._commit_lock = threading.Lock()
        #: Guards the pipeline below (never held across SQL, signing or fsync).
        self._mutex = threading.Lock()
        self._pending: deque[_Request] = deque()
        self._sealer_on = False  # a thread holds the seal role
        self._writer_on = False  # a thread holds the write role
        self._sealed: _Batch | None = None  # sealed, waiting for the writer
        self._writing: _Batch | None = None  # being written
        #: Transactions and entries committed by this object (mean batch = entries/commits).
        self._commits = 0
        self._committed = 0
        self._tree: MerkleTree | None = None
        self._head = store.head()
        self._check_owner()

    # --- opening -----------------------------------------------------------------

    def _check_owner(self) -> None:
        size, stored_leaf = self._head
        if size == 0:
            return
        record = self.store.get(size - 1)
        entry = self._decode(record)
        if entry.node != self.node:
            raise LedgerError(f"this ledger was written by node {entry.node!r}, not {self.node!r}",
                              hint="open the node's own ledger, or check the node name")
        if hash_leaf(record.body) != stored_leaf:
            raise LedgerIntegrityError(
                f"the last ledger entry ({size - 1}) does not match its recorded hash",
                hint="the ledger was altered; run `pcnode ledger verify` before appending",
                index=size - 1, expected=stored_leaf.hex(), actual=entry.entry_hash.hex(),
                check="content")
        if not make_checker(self.public_key)(record.signature, entry_signing_message(stored_leaf)):
            raise LedgerError(
                f"the ledger was signed by another key than this node's ({key_id(self._key)})",
                hint="use the node's original ledger key; run `pcnode ledger verify`")

    def _decode(self, record: EntryRecord) -> Entry:
        try:
            return Entry.from_body(record.body, record.signature)
        except InvalidInput as exc:
            raise LedgerIntegrityError(
                f"ledger entry {record.index} cannot be decoded: {exc.message}",
                hint="the stored entry was altered; run `pcnode ledger verify`",
                index=record.index, expected="canonical entry body", actual=exc.message,
                check="body") from None

    # --- basic facts -------------------------------------------------------------------

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """Number of entries (re-read from the store, so other writers are seen)."""
        return self.store.size()

    # --- writing -----------------------------------------------------------------------

    def append(self, event: str, **fields: Any) -> Entry:
        """Append one entry for ``event`` and return it once it is durably committed.

        ``fields`` are the audit fields of :class:`~ledger.entry.Entry` (user,
        grant_id, authorised_by, peer, dataset, operation, mode, purpose, job_id,
        status, error, rows_in, rows_out, bytes_in, bytes_out, params_digest,
        result_digest, transcript_hash), ``extra={...}`` for anything else, and
        optionally ``time=`` (default: now). Unknown names raise InvalidInput.
        """
        check_event(event)
        if event in RESERVED_EVENTS:
            raise InvalidInput(f"event {event!r} is written by the ledger itself",
                               hint="use Ledger.checkpoint() or Ledger.record_receipt()")
        when = fields.pop("time", None)
        time_us = None if when is None else to_us(when)
        values, extra = validate_fields(fields)
        request = _Request([_Item(self.node, event, time_us, values, extra)])
        self._submit(request)
        return self._entries(request)[0]

    def record_receipt(self, receipt: Receipt, public_key: PublicKeyLike | None = None) -> Entry:
        """Store a peer's receipt and append a ``receipt.received`` entry carrying it.

        With ``public_key`` (the issuer's ledger key) the receipt is verified
        first and a bad one raises LedgerIntegrityError without being recorded.
        """
        if not isinstance(receipt, Receipt):
            raise InvalidInput("record_receipt needs a Receipt", hint="use Receipt.from_json")
        if receipt.node == self.node:
            raise InvalidInput("a node does not record its own receipt",
                               hint="record the receipts received from the other parties")
        if public_key is not None:
            verify_receipt(receipt, public_key)
        values, extra = validate_fields({
            "job_id": receipt.job_id, "peer": receipt.node,
            "transcript_hash": receipt.transcript_hash,
            "extra": {RECEIPT_KEY: receipt.to_json()}})
        request = _Request([_Item(self.node, RECEIPT_RECEIVED, None, values, extra, receipt)])
        self._submit(request)
        return self._entries(request)[0]

    def append_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Entry]:
        """Append several ``(event, fields)`` entries in ONE transaction: all or none.

        For imports and bulk recording; every item is validated before anything
        is written.
        """
        batch = []
        for event, fields in items:
            check_event(event)
            if event in RESERVED_EVENTS:
                raise InvalidInput(f"event {event!r} is written by the ledger itself")
            fields = dict(fields)
            when = fields.pop("time", None)
            values, extra = validate_fields(fields)
            batch.append(_Item(self.node, event, None if when is None else to_us(when), values,
                               extra))
        if not batch:
            return []
        request = _Request(batch)
        self._submit(request)
        return self._entries(request)

    def checkpoint(self) -> Checkpoint:
        """Sign a checkpoint of the whole ledger and record it as a ``checkpoint`` entry.

        The checkpoint's tree size ``n`` is the number of entries before it; the
        ``checkpoint`` entry itself lands at index ``n`` (covered by the next
        checkpoint). Appends queued before the call are committed first.
        """
        request = _Request([], checkpoint=True)
        self._submit(request)
        result: Checkpoint = request.result
        return result

    def commit_stats(self) -> dict[str, int]:
        """Transactions and entries this object has committed (entries/transactions is
        the mean group-commit batch: entries per fsync on SQLite)."""
        return {"transactions": self._commits, "entries": self._committed}

    def _entries(self, request: _Request) -> list[Entry]:
        """The caller's entries, built in the caller's thread once its rows are durable."""
        out = []
        prev, node = request.prev, self.node
        for item, record in zip(request.items, request.records, strict=True):
            out.append(Entry(index=record.index, event=item.event, time=record.time_us, node=node,
                             prev_hash=prev, entry_hash=record.leaf_hash,
                             signature=record.signature,
                             extra=MappingProxyType(dict(item.extra)), **item.fields))
            prev = record.leaf_hash
        return out

    # --- the commit pipeline ------------------------------------------------------------
    #
    # Two roles, taken by the appending threads themselves: the *sealer* takes the
    # queued requests and builds their rows (body, leaf hash, signature) on top of
    # the head they will have once the batch in flight is committed; the *writer*
    # writes a sealed batch in one transaction and waits for its fsync. Sealing
    # batch k+1 overlaps the fsync of batch k, so the serial path is the
    # transaction alone. A batch sealed on a head that did not happen (the batch
    # before it failed, another process appended) is resealed by the writer on the
    # real head; the store refuses rows that do not extend its head in any case.
    # A thread sleeps on its own request's lock and is woken only when its
    # request is done or it is handed a role, never by every commit.

    def _submit(self, request: _Request) -> None:
        """Queue ``request`` and return when it is done (its ``error`` or ``records`` set)."""
        mutex = self._mutex
        with mutex:
            self._pending.append(request)
            role = self._roles_locked(request)
            while True:
                if role is _SEAL:
                    self._run_sealer()
                elif role is _WRITE:
                    self._run_writer()
                elif request.done:
                    break
                else:
                    request.asleep = True
                    mutex.release()
                    try:
                        request.wake.acquire()
                    finally:
                        mutex.acquire()
                        if request.asleep:  # interrupted while asleep: take no role
                            request.asleep = False
                    role, request.role = request.role, None
                    continue
                role = self._roles_locked(request)
        if request.error is not None:
            raise request.error

    def _roles_locked(self, me: _Request | None) -> str | None:
        """Give out the free roles; return the one ``me``'s thread takes, if any.

        A thread whose own request is still waiting takes a role itself (it
        would only sleep otherwise); one whose request is done hands the role to
        a sleeping thread and returns to its caller. Every request still queued
        belongs to a thread that is asleep or in a role (and calls this again
        when the role is done), so a role left unassigned here is never lost.
        """
        mine = None
        free = me is not None and not me.done
        sealed = self._sealed
        if not self._writer_on and sealed is not None and (
                free or (not self._hand_locked(_WRITE, sealed.requests) and me is not None)):
            # (a thread whose request is done writes only if nobody asleep can: it
            # would rather return to its caller; keeping the role measured slower)
            mine = _WRITE
            self._writer_on = True
        if (not self._sealer_on and self._pending and self._sealed is None
                and not (self._writing is not None and self._writing.end is None)):
            if mine is None and free:
                mine = _SEAL
                self._sealer_on = True
            else:
                self._hand_locked(_SEAL, self._pending)
        return mine

    def _hand_locked(self, role: str, candidates: Iterable[_Request]) -> bool:
        """Wake the first sleeping thread among ``candidates`` to take ``role``."""
        for req in candidates:
            if req.asleep:
                req.asleep, req.role = False, role
                if role is _WRITE:
                    self._writer_on = True
                else:
                    self._sealer_on = True
                req.wake.release()
                return True
        return False

    def _finish_locked(self, request: _Request) -> None:
        """Mark ``request`` done and wake its thread if it sleeps."""
        request.done = True
        if request.asleep:
            request.asleep = False
            request.wake.release()

    def _fail_locked(self, requests: Iterable[_Request], exc: BaseException) -> None:
        for req in requests:
            if not req.done:
                if req.error is None:
                    req.error = exc
                self._finish_locked(req)

    def _take_locked(self) -> _Batch:
        """The next batch: queued requests up to MAX_BATCH entries; a checkpoint goes alone."""
        pending = self._pending
        first = pending.popleft()
        requests = [first]
        if not first.checkpoint:
            n = len(first.items)
            while pending and not pending[0].checkpoint \
                    and n + len(pending[0].items) <= MAX_BATCH:
                req = pending.popleft()
                requests.append(req)
                n += len(req.items)
        return _Batch(requests)

    def _run_sealer(self) -> None:
        """Seal the queued requests (called and returning with the mutex held)."""
        batch = self._take_locked()
        writing = self._writing
        base = writing.end if writing is not None and writing.end is not None else self._head
        self._mutex.release()
        try:
            if not batch.requests[0].checkpoint:  # a checkpoint is built by its writer
                self._seal_batch(batch, base)
        except BaseException as exc:
            self._mutex.acquire()
            self._sealer_on = False
            self._fail_locked(batch.requests, exc)
            self._roles_locked(None)
            raise
        self._mutex.acquire()
        self._sealer_on = False
        for req in batch.failed:
            self._finish_locked(req)
        batch.failed = []
        if batch.requests:
            self._sealed = batch

    def _run_writer(self) -> None:
        """Write the sealed batch (called and returning with the mutex held)."""
        batch = self._sealed
        assert batch is not None
        self._sealed, self._writing = None, batch
        self._roles_locked(None)  # the sealed slot is free: the next batch can be sealed
        self._mutex.release()
        try:
            self._write(batch)
        except BaseException as exc:
            self._mutex.acquire()
            self._writing, self._writer_on = None, False
            self._fail_locked([*batch.failed, *batch.requests], exc)
            self._roles_locked(None)
            raise
        self._mutex.acquire()
        self._writing, self._writer_on = None, False
        done = [*batch.failed, *batch.requests]
        for req in done:
            req.done = True
        # hand the next batch's write (the critical path) on first, then wake the callers
        self._roles_locked(None)
        for req in done:
            self._finish_locked(req)

    def _seal_batch(self, batch: _Batch, base: tuple[int, bytes]) -> None:
        """Build the rows of ``batch`` on ``base``; a request that cannot be built fails alone."""
        size, link = base
        records: list[EntryRecord] = []
        receipts: list[ReceiptRecord] = []
        ok: list[_Request] = []
        seal, clock = self._seal_item, self._clock
        for req in batch.requests:
            rows: list[EntryRecord] = []
            last = link
            try:
                for item in req.items:
                    when = clock() if item.time_us is None else item.time_us
                    record = seal(size + len(records) + len(rows), last, when, item)
                    rows.append(record)
                    last = record.leaf_hash
            except Exception as exc:  # this request's own values: it alone fails
                req.error = exc
                batch.failed.append(req)
                continue
            req.prev, req.records = link, rows
            for item, record in zip(req.items, rows, strict=True):
                if item.receipt is not None:
                    receipts.append(ReceiptRecord(item.receipt.job_id, item.receipt.node,
                                                  item.receipt.to_json(), record.index))
            records.extend(rows)
            link = last
            ok.append(req)
        batch.requests, batch.records, batch.receipts = ok, records, receipts
        batch.base, batch.end = base, (size + len(records), link)

    def _write(self, batch: _Batch) -> None:
        """Commit ``batch``; if the store refuses it, commit its requests one by one.

        So a request the store will not take fails alone, as it would have
        without the others; each request is still all or none.
        """
        with self._commit_lock:
            if batch.requests[0].checkpoint:
                req = batch.requests[0]
                try:
                    req.result = self._commit(self._checkpoint_builder())
                except PcnodeError as exc:
                    req.error = exc
                return
            try:
                self._write_rows(batch)
            except PcnodeError as exc:
                if len(batch.requests) == 1:
                    batch.requests[0].error = exc
                    return
                for req in batch.requests:
                    single = _Batch([req])
                    try:
                        self._write_rows(single)
                    except PcnodeError as one:
                        req.error = one
                    batch.failed.extend(single.failed)
                batch.requests = [r for r in batch.requests if r not in batch.failed]

    def _write_rows(self, batch: _Batch) -> None:
        def build(size: int, prev: bytes) -> tuple[list[EntryRecord], None,
                                                   list[ReceiptRecord], None]:
            if batch.base != (size, prev):  # sealed on a head that did not happen
                self._seal_batch(batch, (size, prev))
            return batch.records, None, batch.receipts, None

        self._commit(build)

    def _checkpoint_builder(self) -> Callable[[int, bytes], tuple[
            list[EntryRecord], CheckpointRecord, list[ReceiptRecord], Checkpoint]]:
        def build(size: int, prev: bytes) -> tuple[list[EntryRecord], CheckpointRecord,
                                                   list[ReceiptRecord], Checkpoint]:
            tree = self._ensure_tree()
            root = tree.root(size)
            when = self._clock()
            cp = Checkpoint.create(self._key, self.node, size, root, when)
            extra = {"tree_size": size, "root": root.hex(), "signature": cp.signature.hex()}
            record = self._seal_item(size, prev, when, _Item(self.node, CHECKPOINT, None, {},
                                                             extra))
            return [record], CheckpointRecord(size, cp.to_json(), size), [], cp

        return build

    def _seal_item(self, index: int, prev: bytes, time_us: int, item: _Item) -> EntryRecord:
        """The row of ``item`` at ``index`` after ``prev``: body, leaf hash, signature."""
        body = encode_checked_value({**item.template, "index": index, "prev": prev.hex(),
                                     "time": format_time(time_us)})
        leaf = hash_leaf(body)
        fields = item.fields
        return EntryRecord(index, body, leaf, self._entry_signer(ENTRY_SIGNING_DOMAIN + leaf),
                           item.event, time_us, fields.get("job_id"), fields.get("dataset"),
                           fields.get("peer"))

    def _seal(self, index: int, prev: bytes, event: str, time_us: int, fields: dict[str, Any],
              extra: dict[str, Any]) -> tuple[EntryRecord, Entry]:
        """One row and its Entry, outside the pipeline (tests use it to forge rows)."""
        record = self._seal_item(index, prev, time_us, _Item(self.node, event, None, fields,
                                                              extra))
        entry = Entry(index=index, event=event, time=time_us, node=self.node, prev_hash=prev,
                      entry_hash=record.leaf_hash, signature=record.signature,
                      extra=MappingProxyType(dict(extra)), **fields)
        return record, entry

    def _commit(self, build: Callable[[int, bytes], tuple[list[EntryRecord],
                                                          CheckpointRecord | None,
                                                          list[ReceiptRecord], T]]) -> T:
        """Build rows on the current head and append them; rebuild if the head moved.

        Called with the commit lock held.
        """
        for attempt in range(MAX_HEAD_RETRIES):
            size, prev = self._head
            records, checkpoint, receipts, result = build(size, prev)
            if not records:
                return result
            try:
                self.store.append(records, prev_hash=prev, checkpoint=checkpoint,
                                  receipts=receipts)
            except HeadMoved:
                if attempt:
                    # Lost the race again: back off (random, growing) so that a writer in
                    # another process that appends back to back cannot starve this one.
                    time.sleep(random.random() * min(HEAD_BACKOFF_S * 2 ** attempt, 0.05))
                self._refresh()
                continue
            self._head = (size + len(records), records[-1].leaf_hash)
            self._commits += 1
            self._committed += len(records)
            if self._tree is not None:
                self._tree.extend(r.leaf_hash for r in records)
            return result
        raise LedgerError("could not append: other writers kept moving the ledger head",
                          hint="only one node process should write a ledger; check for another")

    def _refresh(self) -> None:
        """Re-read the head (and extend the tree) after another writer appended."""
        self._head = self.store.head()
        if self._tree is not None:
            size = self._head[0]
            if self._tree.size > size:
                raise LedgerIntegrityError(
                    f"the ledger shrank from {self._tree.size} to {size} entries",
                    hint="entries were deleted; run `pcnode ledger verify` with a saved "
                         "checkpoint", index=size, expected=self._tree.size, actual=size,
                    check="truncation")
            self._tree.extend(self.store.leaf_hashes(self._tree.size, size))

    def _ensure_tree(self) -> MerkleTree:
        if self._tree is None:
            size = self._head[0]
            tree = MerkleTree(self.store.leaf_hashes(0, size))
            if tree.size != size:
                raise LedgerIntegrityError(
                    f"the ledger has {tree.size} entry rows below index {size}",
                    hint="entries were deleted; run `pcnode ledger verify`",
                    index=tree.size, expected=size, actual=tree.size, check="index")
            self._tree = tree
        return self._tree

    # --- reading -----------------------------------------------------------------------

    def entry(self, index: int) -> Entry:
        """The entry at ``index`` (NotFound if there is none)."""
        return self._decode(self.store.get(index))

    def entries(self, start: int = 0, stop: int | None = None, *, event: str | None = None,
                job_id: str | None = None, dataset: str | None = None, peer: str | None = None,
                since: int | str | datetime | None = None,
                until: int | str | datetime | None = None,
                limit: int | None = None) -> Iterator[Entry]:
        """Entries with ``start <= index < stop`` matching every given filter.

        ``since`` is inclusive, ``until`` exclusive; both take microseconds,
        RFC 3339 text or an aware datetime.
        """
        records = self.store.find(
            start=start, stop=stop, event=event, job_id=job_id, dataset=dataset, peer=peer,
            since_us=None if since is None else to_us(since),
            until_us=None if until is None else to_us(until), limit=limit)
        for record in records:
            yield self._decode(record)

    def latest_checkpoint(self) -> Checkpoint | None:
        """The most recent checkpoint this ledger issued, or None."""
        record = self.store.latest_checkpoint()
        return None if record is None else Checkpoint.from_json(record.checkpoint_json)

    def checkpoints(self, limit: int | None = None) -> list[Checkpoint]:
        """Checkpoints this ledger issued, newest first."""
        return [Checkpoint.from_json(r.checkpoint_json) for r in self.store.checkpoints(limit)]

    def receipts(self, job_id: str | None = None) -> list[Receipt]:
        """Receipts recorded from peers (for one job if given)."""
        return [Receipt.from_json(r.receipt_json) for r in self.store.receipts(job_id)]

    def _sized(self, tree_size: int | None) -> tuple[MerkleTree, int]:
        self._refresh()
        tree = self._ensure_tree()
        size = tree.size if tree_size is None else tree_size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= tree.size:
            raise InvalidInput(f"tree size {tree_size} is not between 0 and {tree.size}",
                               hint="use a size the ledger has reached")
        return tree, size

    def root(self, tree_size: int | None = None) -> bytes:
        """The Merkle root of the first ``tree_size`` entries (default: all)."""
        with self._commit_lock:
            tree, size = self._sized(tree_size)
            return tree.root(size)

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> InclusionProof:
        """Prove entry ``index`` is in the tree of ``tree_size`` (default: current size).

        The proof carries the entry body and signature, so it can be checked
        offline with :func:`ledger.verify_inclusion`.
        """
        with self._commit_lock:
            tree, size = self._sized(tree_size)
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
                raise InvalidInput(f"entry {index} is not in a tree of size {size}",
                                   hint=f"use an index from 0 to {size - 1}")
            path = tree.inclusion_proof(index, size)
            root = tree.root(size)
        record = self.store.get(index)
        return InclusionProof(index, size, record.leaf_hash, root, tuple(path), record.body,
                              record.signature)

    def consistency_proof(self, old: int, new: int | None = None) -> ConsistencyProof:
        """Prove the tree of size ``old`` is a prefix of the tree of size ``new`` (default: now)."""
        with self._commit_lock:
            tree, new_size = self._sized(new)
            if isinstance(old, bool) or not isinstance(old, int) or not 0 <= old <= new_size:
                raise InvalidInput(f"old size {old} is not between 0 and {new_size}")
            return ConsistencyProof(old, new_size, tree.root(old), tree.root(new_size),
                                    tuple(tree.consistency_proof(old, new_size)))

    # --- receipts and verification -----------------------------------------------------

    def _sign(self, message: bytes) -> bytes:
        """Sign ``message`` with the node key (for bundle signatures; domain-separated)."""
        return self._key.sign(message)

    def make_receipt(self, job_id: str, transcript_hash: str,
                     checkpoint: Checkpoint | None = None) -> Receipt:
        """Sign this node's receipt for a joint job (checkpointing first unless given one)."""
        cp = self.checkpoint() if checkpoint is None else checkpoint
        return make_receipt(self._key, self.node, job_id, transcript_hash, cp)

    def verify(self, checkpoint: Checkpoint | None = None, **options: Any) -> VerifyReport:
        """Verify this ledger's store with this node's public key (see verify_store)."""
        from .verify import verify_store

        return verify_store(self.store, self.public_key, checkpoint, node=self.node, **options)

    def close(self) -> None:
        """Close the underlying store."""
        self.store.close()
