"""Fixtures: a catalog on SQLite (and PostgreSQL when the postgres_url fixture exists)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.catalog import Catalog
from tests.node.catalog.fakes import FakeLedger, residents_csv


def _postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh schema on the session's PostgreSQL, selected through search_path."""
    try:
        base = request.getfixturevalue("postgres_url")
    except pytest.FixtureLookupError:
        base = os.environ.get("PCNODE_TEST_POSTGRES_URL", "")
        if not base:
            pytest.skip("no postgres_url fixture (tests/conftest.py) or PCNODE_TEST_POSTGRES_URL")
    import sqlalchemy as sa

    schema = "catalog_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty catalog database URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        yield from _postgres_database(request)


@pytest.fixture
def ledger() -> FakeLedger:
    """A recording ledger."""
    return FakeLedger()


@pytest.fixture
def catalog(catalog_url: str, ledger: FakeLedger) -> Iterator[Catalog]:
    """The provider node 'tax' catalog."""
    cat = Catalog(catalog_url, ledger=ledger, node="tax")
    yield cat
    cat.close()


@pytest.fixture
def sqlite_catalog(tmp_path: Path, ledger: FakeLedger) -> Iterator[Catalog]:
    """A catalog on SQLite only (for tests that are about files, not the database)."""
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}", ledger=ledger, node="tax")
    yield cat
    cat.close()


@pytest.fixture
def residents(tmp_path: Path) -> Path:
    """A small residents CSV."""
    return residents_csv(tmp_path / "residents.csv")

