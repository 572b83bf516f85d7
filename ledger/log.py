"""The Ledger: a node's append-only, hash-chained, signed, Merkle-provable audit log.

Writes go through one lock and one database transaction each, so any number
of threads keep one chain; the store itself refuses rows that do not extend
its head, so other processes cannot fork it either (a moved head makes the
ledger rebuild and re-sign its rows and try again).

**Group commit.** Threads that call :meth:`Ledger.append` while another
thread is committing queue up; the next committer writes the whole queue in
one transaction (one fsync) and wakes them. Every append still returns only
after its own entry is durably committed; a lone caller gets exactly one
transaction per append.

The Merkle tree is built from the stored leaf hashes on first use (first
checkpoint or proof) and then extended on every commit, so a checkpoint
never rehashes the log.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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
from .entry import Entry, entry_signing_message, make_body, sign_leaf, validate_fields
from .events import CHECKPOINT, RECEIPT_KEY, RECEIPT_RECEIVED, RESERVED_EVENTS, check_event, check_node
from .keys import PublicKeyLike, key_id
from .merkle import MerkleTree, hash_leaf
from .proofs import ConsistencyProof, InclusionProof
from .receipt import Receipt, make_receipt, verify_receipt
from .store.base import CheckpointRecord, EntryRecord, HeadMoved, LedgerStore, ReceiptRecord
from .timefmt import now_us, to_us

if TYPE_CHECKING:
    from .verify import VerifyReport

#: Most entries one group-commit transaction carries; bounds a transaction's
#: size and the latency of the callers queued behind it.
MAX_BATCH = 512
#: How often an append is rebuilt after another process moved the head before
#: giving up; each retry means another writer made progress.
MAX_HEAD_RETRIES = 100

T = TypeVar("T")


@dataclass
class _Request:
    event: str
    time_us: int | None
    fields: dict[str, Any]
    extra: dict[str, Any]
    receipt: Receipt | None = None
    entry: Entry | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


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
        #: Held while rows are written (appends, checkpoints, tree reads).
        self._commit_lock = threading.Lock()
        #: Guards the queue and ``_leader``; waiters sleep on it until their
        #: request is done or no leader is committing.
        self._queue = threading.Condition(threading.Lock())
        self._leader = False
        self._pending: deque[_Request] = deque()
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
        return self._submit(_Request(event, time_us, values, extra))

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
        return self._submit(_Request(RECEIPT_RECEIVED, None, values, extra, receipt=receipt))

    def _submit(self, request: _Request) -> Entry:
        """Queue ``request``; commit the queue if no other thread is, else wait for it.

        The leader takes the whole queue, commits it in one transaction and
        wakes everyone; a waiter whose request was in that batch returns at
        once, and one whose request was not becomes the next leader.
        """
        queue = self._queue
        with queue:
            self._pending.append(request)
            while not request.done:
                if self._leader:
                    queue.wait()
                    continue
                self._leader = True
                batch = self._take_locked()
                queue.release()
                try:
                    # An empty batch means a checkpoint's flush took our request
                    # and is committing it: waiting for the lock waits for that.
                    with self._commit_lock:
                        self._commit_requests(batch)
                finally:
                    queue.acquire()
                    self._leader = False
                    queue.notify_all()
        if request.error is not None:
            raise request.error
        assert request.entry is not None
        return request.entry

    def _take_locked(self) -> list[_Request]:
        n = min(len(self._pending), MAX_BATCH)
        return [self._pending.popleft() for _ in range(n)]

    def _take(self) -> list[_Request]:
        with self._queue:
            return self._take_locked()

    def _builder(self, batch: list[_Request]) -> Callable[[int, bytes], tuple[
            list[EntryRecord], CheckpointRecord | None, list[ReceiptRecord], list[Entry]]]:
        """Rows for ``batch`` on top of a given head (rebuilt if the head moves)."""

        def build(size: int, prev: bytes) -> tuple[list[EntryRecord], CheckpointRecord | None,
                                                   list[ReceiptRecord], list[Entry]]:
            records: list[EntryRecord] = []
            entries: list[Entry] = []
            receipts: list[ReceiptRecord] = []
            link = prev
            for offset, req in enumerate(batch):
                index = size + offset
                when = self._clock() if req.time_us is None else req.time_us
                record, entry = self._seal(index, link, req.event, when, req.fields, req.extra)
                records.append(record)
                entries.append(entry)
                if req.receipt is not None:
                    receipts.append(ReceiptRecord(req.receipt.job_id, req.receipt.node,
                                                  req.receipt.to_json(), index))
                link = entry.entry_hash
            return records, None, receipts, entries

        return build

    def _commit_requests(self, batch: list[_Request]) -> None:
        if not batch:
            return
        try:
            entries = self._commit(self._builder(batch))
        except PcnodeError as exc:
            for req in batch:
                req.error, req.done = exc, True
            self._wake()
            return
        except BaseException as exc:
            for req in batch:
                req.error, req.done = exc, True
            self._wake()
            raise
        for req, entry in zip(batch, entries, strict=True):
            req.entry, req.done = entry, True
        self._wake()

    def _wake(self) -> None:
        """Wake threads waiting for their requests (a checkpoint may have committed them)."""
        with self._queue:
            self._queue.notify_all()

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
            batch.append(_Request(event, None if when is None else to_us(when), values, extra))
        if not batch:
            return []
        with self._commit_lock:
            self._flush_pending()
            return self._commit(self._builder(batch))

    def _seal(self, index: int, prev: bytes, event: str, time_us: int, fields: dict[str, Any],
              extra: dict[str, Any]) -> tuple[EntryRecord, Entry]:
        body = encode_checked_value(make_body(index, prev, event, time_us, self.node, fields,
                                                extra))
        leaf = hash_leaf(body)
        signature = sign_leaf(self._entry_signer, leaf)
        record = EntryRecord(index, body, leaf, signature, event, time_us, fields.get("job_id"),
                             fields.get("dataset"), fields.get("peer"))
        entry = Entry(index=index, event=event, time=time_us, node=self.node, prev_hash=prev,
                      entry_hash=leaf, signature=signature, extra=MappingProxyType(dict(extra)),
                      **fields)
        return record, entry

    def _commit(self, build: Callable[[int, bytes], tuple[list[EntryRecord],
                                                          CheckpointRecord | None,
                                                          list[ReceiptRecord], T]]) -> T:
        """Build rows on the current head and append them; rebuild if the head moved."""
        for _ in range(MAX_HEAD_RETRIES):
            size, prev = self._head
            records, checkpoint, receipts, result = build(size, prev)
            try:
                self.store.append(records, prev_hash=prev, checkpoint=checkpoint,
                                  receipts=receipts)
            except HeadMoved:
                self._refresh()
                continue
            self._head = (size + len(records), records[-1].leaf_hash)
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

    def _flush_pending(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            self._commit_requests(batch)

    def checkpoint(self) -> Checkpoint:
        """Sign a checkpoint of the whole ledger and record it as a ``checkpoint`` entry.

        The checkpoint's tree size ``n`` is the number of entries before it; the
        ``checkpoint`` entry itself lands at index ``n`` (covered by the next
        checkpoint). Appends queued before the call are committed first.
        """
        with self._commit_lock:
            self._flush_pending()
            self._ensure_tree()

            def build(size: int, prev: bytes) -> tuple[list[EntryRecord], CheckpointRecord,
                                                       list[ReceiptRecord], Checkpoint]:
                tree = self._ensure_tree()
                root = tree.root(size)
                when = self._clock()
                cp = Checkpoint.create(self._key, self.node, size, root, when)
                extra = {"tree_size": size, "root": root.hex(), "signature": cp.signature.hex()}
                record, _ = self._seal(size, prev, CHECKPOINT, when, {}, extra)
                return [record], CheckpointRecord(size, cp.to_json(), size), [], cp

            return self._commit(build)

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
