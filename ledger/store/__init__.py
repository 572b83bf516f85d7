"""Ledger storage backends behind one interface; :func:`open_store` picks one by URL."""

from __future__ import annotations

from pcnode.errors import LedgerError

from .base import (
    CheckpointRecord,
    EntryRecord,
    HeadMoved,
    LedgerStore,
    ReceiptRecord,
)
from .url import redact, scheme_of

__all__ = ["CheckpointRecord", "EntryRecord", "HeadMoved", "LedgerStore", "ReceiptRecord",
           "open_store"]


def open_store(url: str, *, create: bool = True) -> LedgerStore:
    """Open (and by default create) the ledger at ``url``.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:``,
    or ``postgresql://user:pw@host:port/db`` (``postgresql+psycopg://`` and
    ``postgres://`` are accepted too). A bad or unreachable URL raises
    :class:`~pcnode.errors.LedgerError` saying what is wrong.
    """
    scheme = scheme_of(url)
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(url, create=create)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        return PostgresStore(url, create=create)
    raise LedgerError(f"unsupported ledger URL scheme {scheme!r} in {redact(url)}",
                      hint="use sqlite:///path/to/ledger.db or postgresql://user@host/db")
