"""Grants: the constraints a provider puts on a partner's use of one dataset.

A grant comes from an approved application, or — for datasets shared
``unconditional`` only — is a *standing grant* created directly by the provider
(``pcnode grant HOME --standing --peer NAME --dataset CODE ...``). A dataset
shared as ``none`` can never be granted.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from node.catalog import store as st
from pcnode.errors import InvalidInput, NotFound, PermissionDenied, QuotaExhausted

if TYPE_CHECKING:
    from node.catalog.catalog import Catalog

#: Operations a grant can allow.
OPERATIONS = ("psi", "stats", "fl")
#: PSI output modes (DESIGN.md, ECDH-PSI).
PSI_MODES = ("intersection", "cardinality", "both", "join")
#: Defaults used by ``approve`` and standing grants.
DEFAULT_K = 10
DEFAULT_QUOTA = 100
#: The least revealing modes: the requester learns a count, or nothing but an aggregate.
DEFAULT_PSI_MODES = ("cardinality", "join")
MAX_DAYS = 3650
#: Tolerance when comparing float privacy budgets.
EPSILON_SLACK = 1e-9


@dataclass(frozen=True)
class Grant:
    """One grant as stored: who may do what with which columns, until when, how often."""

    id: str
    peer: str
    dataset: str
    operations: tuple[str, ...]
    columns: tuple[str, ...]
    purpose: str
    not_before: dt.datetime
    expires_at: dt.datetime
    k: int
    quota: int | None
    used: int
    psi_modes: tuple[str, ...]
    epsilon: float | None
    epsilon_spent: float
    application_id: str | None
    standing: bool
    operator: str
    created_at: dt.datetime
    reason: str | None
    revoked_at: dt.datetime | None
    revoked_by: str | None
    revoke_reason: str | None

    @property
    def remaining(self) -> int | None:
        """Calls left, or ``None`` when the quota is unlimited."""
        return None if self.quota is None else max(self.quota - self.used, 0)

    @property
    def epsilon_remaining(self) -> float | None:
        """Privacy budget left, or ``None`` when the grant has no budget."""
        return None if self.epsilon is None else max(self.epsilon - self.epsilon_spent, 0.0)

    def status(self, now: dt.datetime | None = None) -> str:
        """One of revoked, expired, pending (before not-before), exhausted, active."""
        now = st.as_utc(now) or st.utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        if now < self.not_before:
            return "pending"
        if self.quota is not None and self.used >= self.quota:
            return "exhausted"
        return "active"

    def to_dict(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """JSON-ready form, with ``status``, ``remaining`` and ISO times."""
        d = asdict(self)
        for key in ("not_before", "expires_at", "created_at", "revoked_at"):
            d[key] = st.iso(d[key])
        d["operations"] = list(self.operations)
        d["columns"] = list(self.columns)
        d["psi_modes"] = list(self.psi_modes)
        d["status"] = self.status(now)
        d["remaining"] = self.remaining
        d["epsilon_remaining"] = self.epsilon_remaining
        return d

    def public_dict(self) -> dict[str, Any]:
        """What the partner is told about its grant (no internal reasons or operator names)."""
        d = self.to_dict()
        for key in ("operator", "reason", "revoked_by", "revoke_reason"):
            d.pop(key, None)
        return d


def grant_from_row(row: Any) -> Grant:
    """Build a :class:`Grant` from a ``grants`` row mapping."""
    return Grant(
        id=row["id"],
        peer=row["peer"],
        dataset=row["dataset"],
        operations=tuple(row["operations"]),
        columns=tuple(row["columns"]),
        purpose=row["purpose"],
        not_before=st.as_utc(row["not_before"]),  # type: ignore[arg-type]
        expires_at=st.as_utc(row["expires_at"]),  # type: ignore[arg-type]
        k=int(row["k"]),
        quota=row["quota"],
        used=int(row["used"]),
        psi_modes=tuple(row["psi_modes"]),
        epsilon=row["epsilon"],
        epsilon_spent=float(row["epsilon_spent"]),
        application_id=row["application_id"],
        standing=bool(row["standing"]),
        operator=row["operator"],
        created_at=st.as_utc(row["created_at"]),  # type: ignore[arg-type]
        reason=row["reason"],
        revoked_at=st.as_utc(row["revoked_at"]),
        revoked_by=row["revoked_by"],
        revoke_reason=row["revoke_reason"],
    )


def parse_list(value: str | Iterable[str] | None, what: str) -> list[str]:
    """Accept ``"a,b"`` or ``["a", "b"]``; strip blanks, keep order, drop repeats."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise InvalidInput(f"{what}: expected a list or a comma-separated string")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput(f"{what}: expected strings, got {type(item).__name__}")
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


def check_operations(ops: Sequence[str]) -> list[str]:
    """Validate a list of operations (psi, stats, fl)."""
    ops = list(ops)
    if not ops:
        raise InvalidInput("no operations given", hint="use --ops with some of psi,stats,fl")
    bad = [o for o in ops if o not in OPERATIONS]
    if bad:
        raise InvalidInput(f"unknown operation(s): {', '.join(bad)}",
                           hint=f"use some of {', '.join(OPERATIONS)}")
    return ops


def check_psi_modes(modes: Sequence[str]) -> list[str]:
    """Validate a list of PSI output modes."""
    modes = list(modes)
    bad = [m for m in modes if m not in PSI_MODES]
    if bad:
        raise InvalidInput(f"unknown PSI mode(s): {', '.join(bad)}",
                           hint=f"use some of {', '.join(PSI_MODES)}")
    if not modes:
        raise InvalidInput("no PSI modes given", hint=f"use some of {', '.join(PSI_MODES)}")
    return modes


def check_limits(*, k: int, quota: int | None, epsilon: float | None, days: int) -> None:
    """Validate k, quota, epsilon and the period in days."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidInput(f"k must be a whole number >= 1, got {k!r}")
    if quota is not None and (not isinstance(quota, int) or isinstance(quota, bool) or quota < 1):
        raise InvalidInput(f"quota must be a whole number >= 1, got {quota!r}")
    if epsilon is not None and (not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool)
                                or not 0 < float(epsilon) < 1e6):
        raise InvalidInput(f"epsilon must be a positive number, got {epsilon!r}")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be a whole number 1-{MAX_DAYS}, got {days!r}")


class GrantsMixin:
    """Grant operations of :class:`node.catalog.Catalog`."""

    def _insert_grant(
        self: Catalog,
        conn: Connection,
        *,
        peer: str,
        dataset: dict[str, Any],
        operations: Sequence[str],
        columns: Sequence[str],
        purpose: str,
        days: int,
        k: int,
        quota: int | None,
        psi_modes: Sequence[str],
        epsilon: float | None,
        user: str,
        reason: str,
        application_id: str | None,
        standing: bool,
        now: dt.datetime,
    ) -> str:
        """Insert a grant inside ``conn``'s transaction and write ``grant.created``."""
        if dataset["share"] == "none":
            raise PermissionDenied(
                f"denied by rule 'share': dataset {dataset['code']!r} is shared as 'none' "
                "(不予共享) and can never be granted",
                hint="change its sharing attribute by re-registering it, if that is allowed",
                rule="share", dataset=dataset["code"],
            )
        if dataset["state"] == "retired":
            raise PermissionDenied(f"denied by rule 'dataset': dataset {dataset['code']!r} is retired",
                                   rule="dataset", dataset=dataset["code"])
        known = [c["name"] for c in dataset["columns"]]
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise InvalidInput(f"dataset {dataset['code']!r} has no column(s) {', '.join(unknown)}",
                               hint=f"columns: {', '.join(known)}")
        check_limits(k=k, quota=quota, epsilon=epsilon, days=days)
        grant_id = "g-" + secrets.token_hex(8)
        conn.execute(insert(st.grants).values(
            id=grant_id, peer=peer, dataset=dataset["code"], operations=list(operations),
            columns=list(columns), purpose=purpose, not_before=now,
            expires_at=now + dt.timedelta(days=days), k=k, quota=quota, used=0,
            psi_modes=list(psi_modes), epsilon=None if epsilon is None else float(epsilon),
            epsilon_spent=0.0, application_id=application_id, standing=standing, operator=user,
            created_at=now, reason=reason,
        ))
        self._audit(
            "grant.created", user=user, operator=user, grant_id=grant_id, peer=peer,
            dataset=dataset["code"], operation=",".join(operations), mode=",".join(psi_modes),
            purpose=purpose,
            extra={"columns": ",".join(columns), "k": k, "quota": quota, "epsilon": epsilon,
                   "days": days, "standing": standing, "application_id": application_id,
                   "expires_at": st.iso(now + dt.timedelta(days=days)), "reason": reason},
        )
        return grant_id

    def create_standing_grant(
        self: Catalog,
        *,
        peer: str,
        dataset: str,
        operations: Sequence[str],
        purpose: str,
        user: str,
        columns: Sequence[str] | None = None,
        days: int = 365,
        k: int = DEFAULT_K,
        quota: int | None = None,
        psi_modes: Sequence[str] = DEFAULT_PSI_MODES,
        epsilon: float | None = None,
        reason: str = "",
    ) -> Grant:
        """Grant an ``unconditional`` dataset to ``peer`` without an application.

        ``columns`` defaults to every column; ``quota`` ``None`` is unlimited.
        """
        from node.config import validate_name
        from pcnode.errors import ConfigError

        try:
            validate_name(peer, "peer name")
        except ConfigError as error:
            raise InvalidInput(error.message, hint=error.hint) from None
        row = self._require_dataset(dataset)
        if row["share"] != "unconditional":
            share = row["share"]
            raise PermissionDenied(
                f"denied by rule 'share': a standing grant needs an 'unconditional' dataset; "
                f"{dataset!r} is shared as {share!r}",
                hint="conditional datasets are granted by approving an application"
                if share == "conditional" else "a dataset shared as 'none' can never be granted",
                rule="share", dataset=dataset,
            )
        ops = check_operations(operations)
        modes = check_psi_modes(psi_modes)
        cols = list(columns) if columns else [c["name"] for c in row["columns"]]
        if not purpose or not purpose.strip():
            raise InvalidInput("a grant needs a purpose (使用目的)", hint="pass --purpose TEXT")
        now = st.utcnow()
        ds = self.get_dataset(dataset)
        with self.store.write() as conn:
            grant_id = self._insert_grant(
                conn, peer=peer, dataset=ds, operations=ops, columns=cols, purpose=purpose.strip(),
                days=days, k=k, quota=quota, psi_modes=modes, epsilon=epsilon, user=user,
                reason=reason or "standing grant", application_id=None, standing=True, now=now,
            )
        return self.get_grant(grant_id)

    def get_grant(self: Catalog, grant_id: str) -> Grant:
        """The grant ``grant_id``; NotFound if there is none."""
        with self.store.read() as conn:
            row = conn.execute(select(st.grants).where(st.grants.c.id == grant_id)).mappings().first()
        if row is None:
            raise NotFound(f"no grant {grant_id!r}", hint="list grants with: pcnode grants HOME")
        return grant_from_row(row)

    def list_grants(self: Catalog, *, peer: str | None = None, dataset: str | None = None,
                    active_only: bool = False, now: dt.datetime | None = None) -> list[Grant]:
        """Grants, newest first, optionally for one peer and/or dataset."""
        stmt = select(st.grants).order_by(st.grants.c.created_at.desc(), st.grants.c.id)
        if peer is not None:
            stmt = stmt.where(st.grants.c.peer == peer)
        if dataset is not None:
            stmt = stmt.where(st.grants.c.dataset == dataset)
        with self.store.read() as conn:
            rows = conn.execute(stmt).mappings().all()
        out = [grant_from_row(r) for r in rows]
        if active_only:
            out = [g for g in out if g.status(now) == "active"]
        return out

    def revoke_grant(self: Catalog, grant_id: str, *, user: str, reason: str = "") -> Grant:
        """Revoke a grant now; every later call under it is denied (rule 'revoked')."""
        grant = self.get_grant(grant_id)
        with self.store.write() as conn:
            result = conn.execute(
                update(st.grants)
                .where(st.grants.c.id == grant_id, st.grants.c.revoked_at.is_(None))
                .values(revoked_at=st.utcnow(), revoked_by=user, revoke_reason=reason)
            )
            if result.rowcount != 1:
                raise InvalidInput(f"grant {grant_id!r} is revoked already")
            self._audit("grant.revoked", user=user, operator=user, grant_id=grant_id,
                        peer=grant.peer, dataset=grant.dataset, purpose=grant.purpose,
                        extra={"reason": reason, "used": grant.used})
        return self.get_grant(grant_id)

    def spend_epsilon(self: Catalog, grant_id: str, epsilon: float, job_id: str,
                      user: str | None = None) -> Grant:
        """Atomically consume ``epsilon`` of the grant's privacy budget; write ``budget.spent``.

        QuotaExhausted (rule 'epsilon') when the remaining budget is smaller.
        A grant without a budget (``epsilon`` None) records the spend and never
        runs out.
        """
        if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or epsilon <= 0:
            raise InvalidInput(f"epsilon to spend must be a positive number, got {epsilon!r}")
        grant = self.get_grant(grant_id)
        g = st.grants.c
        with self.store.write() as conn:
            result = conn.execute(
                update(st.grants)
                .where(g.id == grant_id, g.revoked_at.is_(None),
                       g.epsilon.is_(None) | (g.epsilon_spent + epsilon <= g.epsilon + EPSILON_SLACK))
                .values(epsilon_spent=g.epsilon_spent + float(epsilon))
            )
            if result.rowcount != 1:
                current = self._grant_in(conn, grant_id)
                if current.revoked_at is not None:
                    raise PermissionDenied(
                        f"denied by rule 'revoked': grant {grant_id} was revoked",
                        rule="revoked", grant_id=grant_id)
                raise QuotaExhausted(
                    f"denied by rule 'epsilon': grant {grant_id} has privacy budget "
                    f"{current.epsilon_remaining:.6g} left, {epsilon:.6g} requested",
                    hint="ask the provider for a new grant with a fresh --epsilon budget",
                    rule="epsilon", grant_id=grant_id,
                )
            current = self._grant_in(conn, grant_id)
            self._audit("budget.spent", user=user or self.system_user, operator=grant.operator,
                        grant_id=grant_id, peer=grant.peer, dataset=grant.dataset, job_id=job_id,
                        purpose=grant.purpose,
                        extra={"epsilon": float(epsilon), "epsilon_spent": current.epsilon_spent,
                               "epsilon_total": current.epsilon})
        return current

    def _grant_in(self: Catalog, conn: Connection, grant_id: str) -> Grant:
        row = conn.execute(select(st.grants).where(st.grants.c.id == grant_id)).mappings().first()
        if row is None:
            raise NotFound(f"no grant {grant_id!r}")
        return grant_from_row(row)
