"""SQLite backend: the embedded default.

Durability: WAL journal and ``synchronous=FULL``, so a transaction is on disk
(WAL fsynced) when ``append`` returns, and survives a power cut, not only a
crashed process. ``?synchronous=NORMAL`` in the URL trades that for speed: in
WAL mode a NORMAL commit still survives a killed process, but the last commits
before an OS crash or power loss can be lost. ``OFF`` is refused.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from pcnode.errors import LedgerError

from .sql import SqlStore
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

    def _driver_errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.Error,)

    def _wrap(self, exc: Exception, doing: str) -> LedgerError:
        hint = "check the file is a pcnode ledger, writable, and not on a network file system"
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            hint = "another process holds the ledger's write lock; retry, or stop that process"
        return LedgerError(f"could not {doing} at {self.url}: {type(exc).__name__}: {exc}",
                           hint=hint)
