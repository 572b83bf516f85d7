"""The :class:`Catalog`: datasets, applications, grants, enforcement and tokens of one node."""

from __future__ import annotations

from typing import Any

from node.catalog.applications import ApplicationsMixin
from node.catalog.datasets import DatasetsMixin
from node.catalog.enforcement import EnforcementMixin
from node.catalog.grants import GrantsMixin
from node.catalog.store import Store
from node.catalog.tokens import TokensMixin
from pcnode.errors import InternalError

#: Ledger fields the catalog may set (the ledger's entry schema).
LEDGER_FIELDS = frozenset({
    "user", "grant_id", "operator", "peer", "dataset", "operation", "mode", "purpose",
    "rows_in", "rows_out", "bytes_in", "bytes_out", "params_digest", "result_digest",
    "transcript_hash", "job_id", "status", "error", "extra",
})


def _operator_field() -> str:
    """The ledger's name for the authorising operator (授权操作员).

    The catalog says ``operator``; the ledger package may call it
    ``authorised_by``. Ask the ledger which it accepts.
    """
    try:
        from ledger.entry import OPTIONAL_FIELDS
    except ImportError:
        return "operator"
    return "operator" if "operator" in OPTIONAL_FIELDS else "authorised_by"


#: The ledger field the authorising operator is written to.
OPERATOR_FIELD = _operator_field()


class Catalog(DatasetsMixin, ApplicationsMixin, GrantsMixin, EnforcementMixin, TokensMixin):
    """One node's catalog database plus the ledger its changes are recorded in.

    ``url`` is a SQLAlchemy URL (SQLite or PostgreSQL); ``ledger`` is the
    node's ledger (anything with ``append(event, **fields)``); ``node`` is this
    node's name. Every change is one database transaction, and its ledger
    entry is appended inside that transaction, just before commit: if the
    ledger cannot be written the change is rolled back, so there is never a
    catalog change without its ledger entry.

    Safe to share between threads (each call takes its own connection).
    """

    def __init__(self, url: str, ledger: Any = None, node: str = "") -> None:
        self.store = Store(url)
        self.ledger = ledger
        self.node = node

    @property
    def system_user(self) -> str:
        """The acting user for steps the node takes by itself (e.g. marking a dataset stale)."""
        return f"{self.node or 'node'}/system"

    def _audit(self, event: str, **fields: Any) -> None:
        """Append one ledger entry; drops fields that are None."""
        if self.ledger is None:
            raise InternalError(
                f"the catalog was opened without a ledger and cannot record {event!r}",
                hint="open it through NodeServices, which passes the node's ledger",
            )
        unknown = set(fields) - LEDGER_FIELDS
        if unknown:  # pragma: no cover - a programming error
            raise InternalError(f"unknown ledger field(s): {', '.join(sorted(unknown))}")
        out = {k: v for k, v in fields.items() if v is not None}
        if "operator" in out and OPERATOR_FIELD != "operator":
            out[OPERATOR_FIELD] = out.pop("operator")
        if "extra" in out:
            # Ledger extras are JSON scalars without floats (no canonical encoding):
            # floats are written as their shortest round-trip text.
            out["extra"] = {k: repr(float(v)) if isinstance(v, float) else v
                            for k, v in out["extra"].items()}
        self.ledger.append(event, **out)

    def close(self) -> None:
        """Release database connections."""
        self.store.close()
