"""PostgreSQL backend (psycopg 3): the production store.

Each append is one transaction that first takes a transaction-scoped advisory
lock, so appends from any number of processes are serialised and cannot fork
the chain; readers are never blocked. ``synchronous_commit`` is forced on for
the session so that a commit is durable when ``append`` returns, whatever the
server default.
"""

from __future__ import annotations

from typing import Any

import psycopg

from pcnode.errors import LedgerError

from .sql import SqlStore
from .url import postgres_conninfo, redact

#: Advisory lock key taken by every ledger write ("pcnode" in ASCII).
WRITE_LOCK_KEY = 0x70636E6F6465
#: Seconds to wait for the server when connecting; an unreachable server is
#: reported instead of hanging the node at start-up.
CONNECT_TIMEOUT_S = 10


class PostgresStore(SqlStore):
    """A ledger in PostgreSQL tables ``ledger_*`` (shareable with other pcnode tables)."""

    P = "%s"
    INDEX_TYPE = "BIGINT"
    BLOB_TYPE = "BYTEA"
    INT_TYPE = "BIGINT"

    def __init__(self, url: str, *, create: bool = True) -> None:
        super().__init__()
        self.url = redact(url)
        self.reopen_url = url
        try:
            self._conn = psycopg.connect(postgres_conninfo(url), autocommit=True,
                                         connect_timeout=CONNECT_TIMEOUT_S)
            self._conn.execute("SET synchronous_commit TO on")
        except psycopg.Error as exc:
            raise LedgerError(
                f"cannot connect to the PostgreSQL ledger at {self.url}: {type(exc).__name__}",
                hint="check the server is running and the URL "
                     "(postgresql://user:password@host:port/dbname) is right") from None
        self._init_schema(create)

    def _begin_write(self, cur: Any) -> None:
        cur.execute("BEGIN")
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))

    def _driver_errors(self) -> tuple[type[Exception], ...]:
        return (psycopg.Error,)

    def _wrap(self, exc: Exception, doing: str) -> LedgerError:
        return LedgerError(f"could not {doing} at {self.url}: {type(exc).__name__}",
                           hint="check the database is reachable and the user may write "
                                "the ledger_* tables")
