"""The SQL shared by both backends, written once against the Python DB-API.

Backends differ only in connecting, the placeholder style, column types and
how a write transaction takes the write lock; :class:`SqlStore` gets those
from its subclass. We use the DB-API (``sqlite3``, psycopg 3) directly, not
SQLAlchemy: the schema is three tables and a dozen statements, the append
path has a budget of a few hundred microseconds, and each backend needs its
own locking statement (``BEGIN IMMEDIATE``, ``pg_advisory_xact_lock``) anyway.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from pcnode.errors import LedgerError, NotFound

from ..merkle import HASH_SIZE
from .base import (
    READ_BATCH,
    CheckpointRecord,
    EntryRecord,
    HeadMoved,
    LedgerStore,
    ReceiptRecord,
)

SCHEMA_VERSION = "1"
_ZERO = bytes(HASH_SIZE)
_ENTRY_COLUMNS = "idx, body, leaf_hash, signature, event, time_us, job_id, dataset, peer"


#: Most entry rows one INSERT statement carries (9 parameters each): far below
#: every driver's parameter limit, and few statement texts to cache.
INSERT_CHUNK = 64

_make_record = EntryRecord._make


def _record(row: Sequence[Any]) -> EntryRecord:
    return _make_record(row)  # both drivers return int and bytes for these columns


class SqlStore(LedgerStore):
    """A :class:`LedgerStore` over one DB-API connection guarded by a lock."""

    #: Placeholder for one parameter ("?" or "%s").
    P = "?"
    #: Column type of the entry index and of byte columns.
    INDEX_TYPE = "INTEGER"
    BLOB_TYPE = "BLOB"
    INT_TYPE = "INTEGER"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._conn: Any = None
        self._closed = False
        self._insert_cache: dict[int, str] = {}

    # --- backend hooks -------------------------------------------------------

    @abstractmethod
    def _begin_write(self, cur: Any) -> None:
        """Start a transaction holding the ledger's write lock."""

    @abstractmethod
    def _wrap(self, exc: Exception, doing: str) -> LedgerError:
        """Turn a driver error into a LedgerError."""

    @abstractmethod
    def _driver_errors(self) -> tuple[type[Exception], ...]:
        """The driver's base error classes."""

    # --- schema ----------------------------------------------------------------

    def _ddl(self) -> list[str]:
        b, i, n = self.BLOB_TYPE, self.INDEX_TYPE, self.INT_TYPE
        return [
            "CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS ledger_entries (idx {i} PRIMARY KEY, body {b} NOT NULL,"
            f" leaf_hash {b} NOT NULL, signature {b} NOT NULL, event TEXT NOT NULL,"
            f" time_us {n} NOT NULL, job_id TEXT, dataset TEXT, peer TEXT)",
            "CREATE INDEX IF NOT EXISTS ledger_entries_event ON ledger_entries (event)",
            "CREATE INDEX IF NOT EXISTS ledger_entries_time ON ledger_entries (time_us)",
            "CREATE INDEX IF NOT EXISTS ledger_entries_job ON ledger_entries (job_id)"
            " WHERE job_id IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS ledger_entries_dataset ON ledger_entries (dataset)"
            " WHERE dataset IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS ledger_entries_peer ON ledger_entries (peer)"
            " WHERE peer IS NOT NULL",
            f"CREATE TABLE IF NOT EXISTS ledger_checkpoints (tree_size {n} PRIMARY KEY,"
            f" checkpoint_json TEXT NOT NULL, entry_idx {n} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS ledger_receipts (entry_idx {n} PRIMARY KEY,"
            " job_id TEXT NOT NULL, issuer TEXT NOT NULL, receipt_json TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS ledger_receipts_job ON ledger_receipts (job_id)",
        ]

    def _init_schema(self, create: bool) -> None:
        p = self.P
        with self._lock:
            cur = self._conn.cursor()
            try:
                self._begin_write(cur)
                if create:
                    for stmt in self._ddl():
                        cur.execute(stmt)
                    cur.execute(f"SELECT value FROM ledger_meta WHERE key = {p}",
                                ("schema_version",))
                    row = cur.fetchone()
                    if row is None:
                        cur.execute(f"INSERT INTO ledger_meta (key, value) VALUES ({p}, {p})",
                                    ("schema_version", SCHEMA_VERSION))
                else:
                    cur.execute(f"SELECT value FROM ledger_meta WHERE key = {p}",
                                ("schema_version",))
                    row = cur.fetchone()
                    if row is None:
                        raise LedgerError(f"no ledger at {self.url}",
                                          hint="check the URL, or create the ledger first")
                cur.execute("COMMIT")
            except self._driver_errors() as exc:
                self._rollback(cur)
                raise self._wrap(exc, "create the ledger tables") from None
            except BaseException:
                self._rollback(cur)
                raise
            if row is not None and row[0] != SCHEMA_VERSION:
                raise LedgerError(f"ledger schema version {row[0]} is not supported",
                                  hint="upgrade pcnode to open this ledger")

    def _rollback(self, cur: Any) -> None:
        try:
            cur.execute("ROLLBACK")
        except self._driver_errors():
            pass

    # --- writing -----------------------------------------------------------------

    def append(self, records: Sequence[EntryRecord], *, prev_hash: bytes,
               checkpoint: CheckpointRecord | None = None,
               receipts: Sequence[ReceiptRecord] = ()) -> None:
        """See :meth:`LedgerStore.append`."""
        if not records:
            raise LedgerError("nothing to append")
        first = records[0].index
        if any(r.index != first + i for i, r in enumerate(records)):
            raise LedgerError("appended records must have contiguous indexes")
        p = self.P
        rows = [(r.index, r.body, r.leaf_hash, r.signature, r.event, r.time_us, r.job_id,
                 r.dataset, r.peer) for r in records]
        with self._lock:
            self._check_open()
            cur = self._conn.cursor()
            try:
                self._begin_write(cur)
                cur.execute("SELECT idx, leaf_hash FROM ledger_entries ORDER BY idx DESC LIMIT 1")
                row = cur.fetchone()
                size, last = (0, _ZERO) if row is None else (int(row[0]) + 1, bytes(row[1]))
                if first != size or prev_hash != last:
                    raise HeadMoved(f"ledger head moved: size is {size}, rows start at {first}",
                                    hint="reread the head and rebuild the rows")
                for start in range(0, len(rows), INSERT_CHUNK):
                    chunk = rows[start:start + INSERT_CHUNK]
                    cur.execute(self._insert_sql(len(chunk)),
                                [value for row in chunk for value in row])
                if checkpoint is not None:
                    cur.execute(f"INSERT INTO ledger_checkpoints (tree_size, checkpoint_json,"
                                f" entry_idx) VALUES ({p}, {p}, {p})",
                                (checkpoint.tree_size, checkpoint.checkpoint_json,
                                 checkpoint.entry_index))
                if receipts:
                    cur.executemany(f"INSERT INTO ledger_receipts (entry_idx, job_id, issuer,"
                                    f" receipt_json) VALUES ({p}, {p}, {p}, {p})",
                                    [(r.entry_index, r.job_id, r.issuer, r.receipt_json)
                                     for r in receipts])
                cur.execute("COMMIT")
            except self._driver_errors() as exc:
                self._rollback(cur)
                raise self._wrap(exc, "append to the ledger") from None
            except BaseException:
                self._rollback(cur)
                raise

    def _insert_sql(self, n: int) -> str:
        """One ``INSERT`` of ``n`` entry rows.

        One statement, not ``executemany``: the driver releases the GIL around
        every step, and a writer that has to win the GIL back after each row
        from threads busy preparing the next appends waits far longer than
        the row takes to insert.
        """
        sql = self._insert_cache.get(n)
        if sql is None:
            p = self.P
            row = f"({', '.join([p] * 9)})"
            sql = f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) VALUES {', '.join([row] * n)}"
            self._insert_cache[n] = sql
        return sql

    # --- reading -----------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = (), *, many: int | None = None,
               doing: str = "read the ledger") -> list[Any]:
        with self._lock:
            self._check_open()
            cur = self._conn.cursor()
            try:
                cur.execute(sql, params)
                return cur.fetchall() if many is None else cur.fetchmany(many)
            except self._driver_errors() as exc:
                raise self._wrap(exc, doing) from None

    def head(self) -> tuple[int, bytes]:
        """See :meth:`LedgerStore.head`."""
        rows = self._query("SELECT idx, leaf_hash FROM ledger_entries ORDER BY idx DESC LIMIT 1")
        return (0, _ZERO) if not rows else (int(rows[0][0]) + 1, bytes(rows[0][1]))

    def size(self) -> int:
        """See :meth:`LedgerStore.size`."""
        return self.head()[0]

    def count(self) -> int:
        """See :meth:`LedgerStore.count`."""
        return int(self._query("SELECT COUNT(*) FROM ledger_entries")[0][0])

    def index_bounds(self) -> tuple[int, int] | None:
        """See :meth:`LedgerStore.index_bounds`."""
        row = self._query("SELECT MIN(idx), MAX(idx) FROM ledger_entries")[0]
        return None if row[0] is None else (int(row[0]), int(row[1]))

    def get(self, index: int) -> EntryRecord:
        """See :meth:`LedgerStore.get`."""
        rows = self._query(f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries WHERE idx = {self.P}",
                           (index,))
        if not rows:
            raise NotFound(f"ledger entry {index} does not exist",
                           hint=f"the ledger has {self.size()} entries (0-based indexes)")
        return _record(rows[0])

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[EntryRecord]:
        """See :meth:`LedgerStore.read`."""
        return self.find(start=start, stop=stop)

    def leaf_hashes(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """See :meth:`LedgerStore.leaf_hashes`."""
        p = self.P
        sql = f"SELECT idx, leaf_hash FROM ledger_entries WHERE idx >= {p}"
        if stop is not None:
            sql += f" AND idx < {p}"
        sql += f" ORDER BY idx LIMIT {p}"
        batch = READ_BATCH * 4
        nxt = start
        while True:
            rows = self._query(sql, [nxt, *([stop] if stop is not None else []), batch])
            for row in rows:
                yield bytes(row[1])
            if len(rows) < batch:
                return
            nxt = int(rows[-1][0]) + 1

    def find(self, *, start: int = 0, stop: int | None = None, event: str | None = None,
             job_id: str | None = None, dataset: str | None = None, peer: str | None = None,
             since_us: int | None = None, until_us: int | None = None,
             limit: int | None = None) -> Iterator[EntryRecord]:
        """See :meth:`LedgerStore.find`."""
        p = self.P
        where, params = [f"idx >= {p}"], [start]
        if stop is not None:
            where.append(f"idx < {p}")
            params.append(stop)
        for column, value in (("event", event), ("job_id", job_id), ("dataset", dataset),
                              ("peer", peer)):
            if value is not None:
                where.append(f"{column} = {p}")
                params.append(value)
        if since_us is not None:
            where.append(f"time_us >= {p}")
            params.append(since_us)
        if until_us is not None:
            where.append(f"time_us < {p}")
            params.append(until_us)
        sql = (f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries WHERE {' AND '.join(where)}"
               f" ORDER BY idx LIMIT {p}")
        left = limit
        while left is None or left > 0:
            batch = READ_BATCH if left is None else min(READ_BATCH, left)
            rows = self._query(sql, [*params, batch])
            yield from map(_make_record, rows)
            if len(rows) < batch:
                return
            if left is not None:
                left -= len(rows)
            params[0] = int(rows[-1][0]) + 1

    def checkpoints(self, limit: int | None = None) -> list[CheckpointRecord]:
        """See :meth:`LedgerStore.checkpoints`."""
        sql = "SELECT tree_size, checkpoint_json, entry_idx FROM ledger_checkpoints" \
              " ORDER BY tree_size DESC"
        params: tuple[Any, ...] = ()
        if limit is not None:
            sql += f" LIMIT {self.P}"
            params = (limit,)
        return [CheckpointRecord(int(r[0]), r[1], int(r[2])) for r in self._query(sql, params)]

    def receipts(self, job_id: str | None = None) -> list[ReceiptRecord]:
        """See :meth:`LedgerStore.receipts`."""
        sql = "SELECT job_id, issuer, receipt_json, entry_idx FROM ledger_receipts"
        params: tuple[Any, ...] = ()
        if job_id is not None:
            sql += f" WHERE job_id = {self.P}"
            params = (job_id,)
        sql += " ORDER BY entry_idx"
        return [ReceiptRecord(r[0], r[1], r[2], int(r[3])) for r in self._query(sql, params)]

    # --- lifecycle -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerError("the ledger store is closed", hint="open it again with open_store")

    def close(self) -> None:
        """See :meth:`LedgerStore.close`."""
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._conn.close()
                except self._driver_errors():
                    pass
