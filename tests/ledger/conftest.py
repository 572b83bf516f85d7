"""Fixtures for the ledger tests: one suite, run against SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import Ledger, LedgerStore, open_store
from ledger.store.url import postgres_conninfo, sqlite_path


def _pg_conninfo(url: str) -> str:
    return postgres_conninfo(url)


@pytest.fixture(scope="session")
def ledger_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """One PostgreSQL database for the ledger tests; each test gets its own schema in it."""
    base = request.getfixturevalue("postgres_url")
    name = "ledger_" + uuid.uuid4().hex[:12]
    with psycopg.connect(_pg_conninfo(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(_pg_conninfo(base), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty ledger on each backend (PostgreSQL: a fresh schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    database = request.getfixturevalue("ledger_database")
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(_pg_conninfo(database), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{database}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(_pg_conninfo(database), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def key() -> Ed25519PrivateKey:
    """A node signing key."""
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(store_url: str) -> Iterator[LedgerStore]:
    """An open store on each backend."""
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def ledger(store: LedgerStore, key: Ed25519PrivateKey) -> Ledger:
    """A ledger of node 'bank-a' on each backend."""
    return Ledger(store, key, "bank-a")


def raw_sql(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run SQL straight on the database behind ``url`` (to tamper with it); ``?`` placeholders."""
    if url.startswith("sqlite"):
        path, _ = sqlite_path(url)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []
        finally:
            conn.close()
    with psycopg.connect(_pg_conninfo(url), autocommit=True) as conn:
        cur = conn.execute(sql.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def sql(store_url: str) -> Callable[..., list[tuple[Any, ...]]]:
    """``sql(statement, params)`` on the store's database."""
    return lambda statement, params=(): raw_sql(store_url, statement, params)


def fill(ledger: Ledger, n: int, *, start: int = 0, **fields: Any) -> None:
    """Append ``n`` typical job entries."""
    for i in range(start, start + n):
        ledger.append("job.completed", job_id=f"job-{i:04d}", peer="gov", dataset="DS-001",
                      user="alice", operation="psi", mode="intersection", rows_in=100 + i,
                      rows_out=i, transcript_hash=f"{i:064x}", status="completed",
                      extra={"parties": "bank-a,gov"}, **fields)
