"""SQLite backend: the embedded default.

Durability: WAL journal and ``synchronous=FULL``, so a transaction is on disk
(WAL fsynced) when ``append`` returns, and survives a power cut, not only a
crashed process. ``?synchronous=NORMAL`` in the URL trades that for speed: in
WAL mode a NORMAL commit still survives a killed process, but the last commits
before an OS crash or power loss can be lost. ``OFF`` is refused.

**One statement per append.** Rows without a checkpoint or receipts go in with
a single ``INSERT`` in autocommit mode, guarded by the head check (index =
size, ``prev_hash`` = last leaf hash) in its own ``WHERE``: the statement
takes the write lock when it starts (as ``BEGIN IMMEDIATE`` does), checks,
inserts and commits (with its fsync) in one ``sqlite3_step``. That is the same
transaction as ``BEGIN IMMEDIATE; SELECT; INSERT; COMMIT``, but the driver
gives up and must win back the GIL once instead of four times, which is what a
commit costs most when other threads are busy preparing appends.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from pcnode.errors import LedgerError

from .base import CheckpointRecord, EntryRecord, HeadMoved, ReceiptRecord
from .sql import _ENTRY_COLUMNS, _ZERO, INSERT_CHUNK, SqlStore
from .url import sqlite_path

#: Default synchronous level: FULL, so a commit is durable against power loss.
DEFAULT_SYNCHRONOUS = "FULL"
#: Levels a URL may ask for. OFF is never allowed: a ledger must survive a crash.
ALLOWED_SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")
#: Seconds to wait for another process's write lock before failing; long enough
#: for a checkpoint or a large append batch, short enough to report a stuck writer.
BUSY_TIMEOUT_S = 30.0


class SqliteStore(SqlStore):
    """A ledger in one SQLite file (or in memory, for tests)."""

    P = "?"
    INDEX_TYPE = "INTEGER"  # INTEGER PRIMARY KEY is the rowid: no extra index
    BLOB_TYPE = "BLOB"
    INT_TYPE = "INTEGER"

    def __init__(self, url: str, *, create: bool = True) -> None:
        super().__init__()
        self._guarded_cache: dict[int, str] = {}
        path, options = sqlite_path(url)
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise LedgerError(f"unknown SQLite URL option(s) {sorted(unknown)}",
                              hint="the only option is ?synchronous=FULL|NORMAL|EXTRA")
        sync = options.get("synchronous", DEFAULT_SYNCHRONOUS).upper()
        if sync not in ALLOWED_SYNCHRONOUS:
            raise LedgerError(f"synchronous={sync} is not allowed for a ledger",
                              hint="use FULL (default) or NORMAL")
        self.synchronous = sync
        if path == ":memory:":
            self.url = "sqlite:///:memory:"
            self.reopen_url = None
        else:
            path = os.path.abspath(path)
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                raise LedgerError(f"directory {parent} for the ledger does not exist",
                                  hint="create it first, or fix the sqlite:/// URL")
            if not create and not os.path.exists(path):
                raise LedgerError(f"no ledger file at {path}", hint="check the path")
            suffix = "" if sync == DEFAULT_SYNCHRONOUS else f"?synchronous={sync}"
            self.url = f"sqlite:///{path}{suffix}"
            self.reopen_url = self.url
        try:
            self._conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                         check_same_thread=False)
            if path != ":memory:":
                mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LedgerError(f"SQLite refused WAL mode (got {mode})",
                                      hint="put the ledger on a local file system")
            self._conn.execute(f"PRAGMA synchronous={sync}")
        except sqlite3.Error as exc:
            raise self._wrap(exc, "open the ledger") from None
        self._init_schema(create)

    def _begin_write(self, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE")

    def append(self, records: Sequence[EntryRecord], *, prev_hash: bytes,
               checkpoint: CheckpointRecord | None = None,
               receipts: Sequence[ReceiptRecord] = ()) -> None:
        """See :meth:`LedgerStore.append`; plain entry rows take one guarded statement."""
        n = len(records)
        if checkpoint is not None or receipts or not 0 < n <= INSERT_CHUNK:
            super().append(records, prev_hash=prev_hash, checkpoint=checkpoint,
                           receipts=receipts)
            return
        first = records[0].index
        if any(r.index != first + i for i, r in enumerate(records)):
            raise LedgerError("appended records must have contiguous indexes")
        params: list[Any] = []
        for r in records:
            params += (r.index, r.body, r.leaf_hash, r.signature, r.event, r.time_us, r.job_id,
                       r.dataset, r.peer)
        params += (first, _ZERO, prev_hash)
        with self._lock:
            self._check_open()
            try:
                inserted = self._conn.execute(self._guarded_insert_sql(n), params).rowcount
            except sqlite3.Error as exc:
                if self._conn.in_transaction:  # pragma: no cover - autocommit rolls back itself
                    self._rollback(self._conn.cursor())
                raise self._wrap(exc, "append to the ledger") from None
        if inserted == n:
            return
        if inserted == 0:
            size = self.size()
            raise HeadMoved(f"ledger head moved: size is {size}, rows start at {first}",
                            hint="reread the head and rebuild the rows")
        raise LedgerError(  # pragma: no cover - the guard is evaluated once per statement
            f"SQLite inserted {inserted} of {n} rows in one statement",
            hint="run `pcnode ledger verify`; report this as a bug")

    def _guarded_insert_sql(self, n: int) -> str:
        """INSERT of ``n`` rows that inserts nothing unless they continue the stored chain.

        Parameters: the rows, then the first index, 32 zero bytes (the ``prev`` of
        entry 0) and ``prev_hash``. Both subqueries are uncorrelated, so SQLite
        evaluates them once, before the first row goes in.
        """
        sql = self._guarded_cache.get(n)
        if sql is None:
            row = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
            sql = (f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) SELECT * FROM (VALUES "
                   f"{', '.join([row] * n)}) WHERE"
                   " (SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries) = ? AND"
                   " COALESCE((SELECT leaf_hash FROM ledger_entries ORDER BY idx DESC LIMIT 1),"
                   " ?) = ?")
            self._guarded_cache[n] = sql
        return sql

    def _driver_errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.Error,)

    def _wrap(self, exc: Exception, doing: str) -> LedgerError:
        hint = "check the file is a pcnode ledger, writable, and not on a network file system"
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            hint = "another process holds the ledger's write lock; retry, or stop that process"
        return LedgerError(f"could not {doing} at {self.url}: {type(exc).__name__}: {exc}",
                           hint=hint)
