"""Catalog tables (SQLAlchemy Core) and transactions that work on SQLite and PostgreSQL.

Several processes of one node (``pcnode serve`` and CLI commands) may write
the catalog at the same time, so:

* every change is one transaction (:meth:`Store.write`);
* on SQLite a write transaction starts with ``BEGIN IMMEDIATE``, taking the
  write lock up front, so two writers never deadlock upgrading a read lock;
  the database runs in WAL mode with a busy timeout, so readers are not
  blocked by a writer;
* counters (a grant's call quota, its privacy budget) are consumed by one
  conditional ``UPDATE ... WHERE used < quota``, which is atomic on both
  backends (PostgreSQL re-checks the WHERE clause on the locked row).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    exc,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from pcnode.errors import ConfigError

#: Seconds a SQLite writer waits for the lock held by another process.
SQLITE_BUSY_TIMEOUT_S = 30

metadata = MetaData()

#: Registered datasets: directory core metadata, source reference, digest and profile.
datasets = Table(
    "datasets",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("level", String(2), nullable=False),
    Column("share", String(16), nullable=False),
    Column("key_column", String(200), nullable=False),
    Column("source_kind", String(16), nullable=False),
    Column("source_location", Text, nullable=False),
    Column("source_table", String(200)),
    Column("content_digest", String(80), nullable=False),
    Column("fingerprint", JSON, nullable=False),
    Column("columns", JSON, nullable=False),
    Column("meta", JSON, nullable=False),
    Column("profile", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("registered_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("retired_at", DateTime(timezone=True)),
    Column("retired_by", String(200)),
    Column("reason", Text),
)

#: Applications filed with this node by partner nodes (this node is the provider).
applications = Table(
    "applications",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("peer", String(64), nullable=False, index=True),
    Column("dataset", String(64), nullable=False),
    Column("operations", JSON, nullable=False),
    Column("columns", JSON, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("days", Integer, nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("filed_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by", String(200)),
    Column("reason", Text),
    Column("grant_id", String(40)),
)

#: Applications this node filed with provider nodes (this node is the partner).
outgoing_applications = Table(
    "outgoing_applications",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("peer", String(64), primary_key=True),
    Column("dataset", String(64), nullable=False),
    Column("operations", JSON, nullable=False),
    Column("columns", JSON, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("days", Integer, nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("filed_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text),
    Column("grant_id", String(40)),
    Column("grant", JSON),
)

#: Grants issued by this node (provider side): the constraints enforced on every call.
grants = Table(
    "grants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("peer", String(64), nullable=False, index=True),
    Column("dataset", String(64), nullable=False, index=True),
    Column("operations", JSON, nullable=False),
    Column("columns", JSON, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("k", Integer, nullable=False),
    Column("quota", Integer),
    Column("used", Integer, nullable=False),
    Column("psi_modes", JSON, nullable=False),
    Column("epsilon", Float),
    Column("epsilon_spent", Float, nullable=False),
    Column("application_id", String(40)),
    Column("standing", Boolean, nullable=False),
    Column("operator", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String(200)),
    Column("revoke_reason", Text),
)

#: HTTP API bearer tokens, stored as SHA-256 digests only.
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC, truncated to microseconds."""
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Normalise a datetime read back from the database to aware UTC.

    SQLite hands back naive datetimes (they were written as UTC); PostgreSQL
    hands back aware ones.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 text of an aware datetime (``None`` stays ``None``)."""
    value = as_utc(value)
    return value.isoformat() if value is not None else None


class Store:
    """The catalog database: an engine, the tables, and read/write transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        try:
            if self.is_sqlite and _in_memory(url):
                # One shared connection, or each connection would see its own empty database.
                self.engine = create_engine(url, poolclass=StaticPool,
                                            connect_args={"check_same_thread": False})
                self.write_engine = self.engine
            elif self.is_sqlite:
                self.engine = create_engine(
                    url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
                )
                _sqlite_pragmas(self.engine)
                # A second engine on the same file whose transactions take the
                # write lock at BEGIN (see module docstring).
                self.write_engine = create_engine(
                    url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
                )
                _sqlite_pragmas(self.write_engine, immediate=True)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
                self.write_engine = self.engine
            self._create_tables()
        except exc.ArgumentError as error:
            raise ConfigError(f"catalog database URL is invalid: {error}") from None
        except exc.OperationalError as error:
            raise ConfigError(
                f"cannot open the catalog database: {error.orig}",
                hint="check [catalog] url in node.toml and that the database is reachable",
            ) from None

    def _create_tables(self) -> None:
        # Two processes may race to create the schema; the loser retries once
        # and then sees the tables.
        for attempt in range(3):
            try:
                metadata.create_all(self.write_engine, checkfirst=True)
                return
            except (exc.OperationalError, exc.ProgrammingError, exc.IntegrityError):
                if attempt == 2:
                    raise

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any error."""
        with self.write_engine.begin() as conn:
            yield conn

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()


def _in_memory(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url


def _sqlite_pragmas(engine: Engine, immediate: bool = False) -> None:
    """WAL, busy timeout and foreign keys; we issue BEGIN ourselves (pysqlite quirk)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" hook emit BEGIN
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
