"""The one storage interface of the ledger, and the rows it moves.

A store keeps raw rows; it never interprets an entry body. Three tables:

* ``ledger_entries`` — index, canonical body, leaf hash, signature, plus
  copies of event, time, job id, dataset and peer for filtering (the verifier
  checks the copies against the signed body);
* ``ledger_checkpoints`` — every signed checkpoint the node issued;
* ``ledger_receipts`` — every receipt received from a peer.

``append`` is the only writer. It runs in one transaction, under the
backend's write lock, and refuses rows that do not continue the stored chain
(index = current size, ``prev_hash`` = stored hash of the last entry), so two
writers, even in two processes, can never fork the log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple

from pcnode.errors import LedgerError

#: Rows fetched per round trip when streaming; bounds memory when reading 10^6 rows.
READ_BATCH = 5000


class EntryRecord(NamedTuple):
    """One stored entry row, as bytes; nothing in it is trusted by the verifier.

    A named tuple, not a dataclass: a full verify builds 10^6 of them.
    """

    index: int
    body: bytes
    leaf_hash: bytes
    signature: bytes
    event: str
    time_us: int
    job_id: str | None = None
    dataset: str | None = None
    peer: str | None = None


@dataclass(frozen=True)
class CheckpointRecord:
    """A stored checkpoint: its JSON and the index of the entry that records it."""

    tree_size: int
    checkpoint_json: str
    entry_index: int


@dataclass(frozen=True)
class ReceiptRecord:
    """A stored receipt from ``issuer``: its JSON and the index of its entry."""

    job_id: str
    issuer: str
    receipt_json: str
    entry_index: int


class HeadMoved(LedgerError):
    """``append`` was handed rows that do not continue the stored chain.

    Another writer appended first; reread the head and rebuild the rows.
    """


class LedgerStore(ABC):
    """Abstract ledger storage. Implementations: SQLite and PostgreSQL.

    All methods are thread-safe. ``url`` is the address with any password
    removed; ``reopen_url`` (or None for in-memory stores) lets another
    process open the same ledger, e.g. parallel verify workers.
    """

    url: str
    reopen_url: str | None

    @abstractmethod
    def append(self, records: Sequence[EntryRecord], *, prev_hash: bytes,
               checkpoint: CheckpointRecord | None = None,
               receipts: Sequence[ReceiptRecord] = ()) -> None:
        """Write ``records`` (contiguous indexes) and any checkpoint/receipt rows atomically.

        Durable when it returns. Raises :class:`HeadMoved` if ``records[0].index``
        is not the current size or ``prev_hash`` is not the last stored leaf hash
        (zero hash when empty).
        """

    @abstractmethod
    def head(self) -> tuple[int, bytes]:
        """(size, stored leaf hash of the last entry or 32 zero bytes)."""

    @abstractmethod
    def size(self) -> int:
        """Highest stored index + 1 (0 when empty)."""

    @abstractmethod
    def count(self) -> int:
        """Number of stored entry rows (differs from size only if rows were removed)."""

    @abstractmethod
    def index_bounds(self) -> tuple[int, int] | None:
        """(lowest, highest) stored index, or None when empty."""

    @abstractmethod
    def get(self, index: int) -> EntryRecord:
        """The row at ``index``; raise NotFound if absent."""

    def last(self) -> EntryRecord | None:
        """The row with the highest index, or None."""
        bounds = self.index_bounds()
        return None if bounds is None else self.get(bounds[1])

    @abstractmethod
    def read(self, start: int = 0, stop: int | None = None) -> Iterator[EntryRecord]:
        """Rows with ``start <= index < stop`` in index order, streamed in batches."""

    @abstractmethod
    def leaf_hashes(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Stored leaf hashes for ``start <= index < stop`` in index order."""

    @abstractmethod
    def find(self, *, start: int = 0, stop: int | None = None, event: str | None = None,
             job_id: str | None = None, dataset: str | None = None, peer: str | None = None,
             since_us: int | None = None, until_us: int | None = None,
             limit: int | None = None) -> Iterator[EntryRecord]:
        """Rows matching every given filter (times inclusive/exclusive), in index order."""

    @abstractmethod
    def checkpoints(self, limit: int | None = None) -> list[CheckpointRecord]:
        """Stored checkpoints, newest first."""

    def latest_checkpoint(self) -> CheckpointRecord | None:
        """The checkpoint with the largest tree size, or None."""
        found = self.checkpoints(limit=1)
        return found[0] if found else None

    @abstractmethod
    def receipts(self, job_id: str | None = None) -> list[ReceiptRecord]:
        """Stored receipts (for one job if given), in entry order."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; the store is unusable afterwards."""

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
