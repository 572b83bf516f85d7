"""Applications: a partner asks, the provider reviews (seeds/004 §9.3 and Appendix B, 图B.2).

Provider side (this node holds the data):

* :meth:`receive_application` files an application from a peer (the peer
  name comes from its verified mTLS certificate, never from the body);
* :meth:`approve_application` creates a grant; :meth:`refuse_application`
  records the reason; :meth:`application_status` tells the applicant.

Partner side (this node asked): :meth:`record_outgoing_application` and
:meth:`update_outgoing_application` keep this node's own copy and write the
same steps to *its* ledger, so every step is visible in both ledgers.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from node.catalog import store as st
from node.catalog.grants import (
    DEFAULT_K,
    DEFAULT_PSI_MODES,
    DEFAULT_QUOTA,
    MAX_DAYS,
    Grant,
    check_limits,
    check_operations,
    check_psi_modes,
    parse_list,
)
from pcnode.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from node.catalog.catalog import Catalog

PENDING, APPROVED, REFUSED = "pending", "approved", "refused"
MAX_PURPOSE = 1000
MAX_REASON = 1000


def validate_application_body(body: Any) -> dict[str, Any]:
    """Check an application body; return ``{dataset, operations, columns, purpose, days, requested_by}``.

    Accepts ``ops``/``operations`` and lists or comma-separated strings.
    """
    if not isinstance(body, dict):
        raise InvalidInput("an application must be a JSON object")
    dataset = body.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise InvalidInput("application: missing field 'dataset'")
    ops = check_operations(parse_list(body.get("operations", body.get("ops")), "operations"))
    columns = parse_list(body.get("columns"), "columns")
    if not columns:
        raise InvalidInput("application: missing field 'columns'",
                           hint="name the columns you need, e.g. --columns income,district")
    purpose = body.get("purpose")
    if not isinstance(purpose, str) or not purpose.strip():
        raise InvalidInput("application: missing field 'purpose' (使用目的)",
                           hint="say what the data will be used for, e.g. --purpose 'credit scoring'")
    if len(purpose) > MAX_PURPOSE:
        raise InvalidInput(f"application: purpose is longer than {MAX_PURPOSE} characters")
    days = body.get("days")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"application: 'days' must be a whole number 1-{MAX_DAYS}, got {days!r}")
    requested_by = body.get("requested_by", "")
    if not isinstance(requested_by, str) or len(requested_by) > 200:
        raise InvalidInput("application: 'requested_by' must be a short string")
    return {"dataset": dataset, "operations": ops, "columns": columns,
            "purpose": purpose.strip(), "days": days, "requested_by": requested_by or "unknown"}


def _app_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    for key in ("filed_at", "decided_at", "updated_at"):
        if key in d:
            d[key] = st.iso(d[key])
    d["operations"] = list(d["operations"])
    d["columns"] = list(d["columns"])
    return d


class ApplicationsMixin:
    """Application operations of :class:`node.catalog.Catalog`."""

    # --- provider side -----------------------------------------------------------

    def receive_application(self: Catalog, peer: str, body: dict[str, Any]) -> dict[str, Any]:
        """File an application from ``peer`` (identity from mTLS); write ``application.filed``.

        The dataset must exist, not be retired and not be shared as ``none``
        (such datasets are reported as unknown, as they are invisible to peers),
        and the columns must exist. Returns the application as the peer sees it.
        """
        app = validate_application_body(body)
        row = self._dataset_row(app["dataset"])
        if row is None or row["state"] == "retired" or row["share"] == "none":
            raise NotFound(f"no dataset {app['dataset']!r} in the catalog of {self.node}",
                           hint=f"list it with: pcnode catalog HOME --peer {self.node}")
        known = [c["name"] for c in row["columns"]]
        unknown = [c for c in app["columns"] if c not in known]
        if unknown:
            raise InvalidInput(f"dataset {app['dataset']!r} has no column(s) {', '.join(unknown)}",
                               hint=f"columns: {', '.join(known)}")
        app_id = "a-" + secrets.token_hex(8)
        now = st.utcnow()
        with self.store.write() as conn:
            conn.execute(insert(st.applications).values(
                id=app_id, peer=peer, status=PENDING, filed_at=now, **app))
            self._audit(
                "application.filed", user=app["requested_by"], peer=peer, dataset=app["dataset"],
                operation=",".join(app["operations"]), purpose=app["purpose"],
                extra={"application_id": app_id, "columns": ",".join(app["columns"]),
                       "days": app["days"], "direction": "in"},
            )
        return self.application_status(peer, app_id)

    def get_application(self: Catalog, app_id: str) -> dict[str, Any]:
        """An application filed with this node."""
        with self.store.read() as conn:
            row = conn.execute(select(st.applications).where(st.applications.c.id == app_id)
                               ).mappings().first()
        if row is None:
            raise NotFound(f"no application {app_id!r}",
                           hint="list applications with: pcnode applications HOME")
        return _app_dict(row)

    def list_applications(self: Catalog, status: str | None = None,
                          peer: str | None = None) -> list[dict[str, Any]]:
        """Applications filed with this node, newest first."""
        stmt = select(st.applications).order_by(st.applications.c.filed_at.desc())
        if status:
            stmt = stmt.where(st.applications.c.status == status)
        if peer:
            stmt = stmt.where(st.applications.c.peer == peer)
        with self.store.read() as conn:
            return [_app_dict(r) for r in conn.execute(stmt).mappings().all()]

    def application_status(self: Catalog, peer: str, app_id: str) -> dict[str, Any]:
        """The status of ``peer``'s application ``app_id``, as told to that peer.

        Another peer's application is reported as not found.
        """
        with self.store.read() as conn:
            row = conn.execute(select(st.applications).where(
                st.applications.c.id == app_id, st.applications.c.peer == peer)).mappings().first()
        if row is None:
            raise NotFound(f"no application {app_id!r} from {peer!r} at {self.node}")
        out = {
            "id": row["id"],
            "provider": self.node,
            "dataset": row["dataset"],
            "operations": list(row["operations"]),
            "columns": list(row["columns"]),
            "purpose": row["purpose"],
            "days": row["days"],
            "status": row["status"],
            "filed_at": st.iso(row["filed_at"]),
            "decided_at": st.iso(row["decided_at"]),
            "reason": row["reason"] if row["status"] == REFUSED else None,
            "grant_id": row["grant_id"],
            "grant": None,
        }
        if row["grant_id"]:
            out["grant"] = self.get_grant(row["grant_id"]).public_dict()
        return out

    def approve_application(
        self: Catalog,
        app_id: str,
        *,
        user: str,
        k: int = DEFAULT_K,
        quota: int | None = DEFAULT_QUOTA,
        psi_modes: Sequence[str] = DEFAULT_PSI_MODES,
        epsilon: float | None = None,
        reason: str = "",
    ) -> Grant:
        """Approve a pending application; create its grant; write ``application.approved``
        and ``grant.created``, all in one transaction.

        The grant runs from now for the requested number of days. A dataset
        shared as ``none`` is refused with PermissionDenied (rule 'share').
        """
        app = self.get_application(app_id)
        if app["status"] != PENDING:
            raise InvalidInput(f"application {app_id} is {app['status']} already",
                               hint="only pending applications can be approved or refused")
        modes = check_psi_modes(list(psi_modes))
        check_limits(k=k, quota=quota, epsilon=epsilon, days=app["days"])
        dataset = self.get_dataset(app["dataset"])
        now = st.utcnow()
        reason = (reason or "approved")[:MAX_REASON]
        with self.store.write() as conn:
            result = conn.execute(
                update(st.applications)
                .where(st.applications.c.id == app_id, st.applications.c.status == PENDING)
                .values(status=APPROVED, decided_at=now, decided_by=user, reason=reason)
            )
            if result.rowcount != 1:
                raise InvalidInput(f"application {app_id} was decided meanwhile")
            grant_id = self._insert_grant(
                conn, peer=app["peer"], dataset=dataset, operations=app["operations"],
                columns=app["columns"], purpose=app["purpose"], days=app["days"], k=k,
                quota=quota, psi_modes=modes, epsilon=epsilon, user=user, reason=reason,
                application_id=app_id, standing=False, now=now,
            )
            conn.execute(update(st.applications).where(st.applications.c.id == app_id)
                         .values(grant_id=grant_id))
            self._audit(
                "application.approved", user=user, operator=user, grant_id=grant_id,
                peer=app["peer"], dataset=app["dataset"], operation=",".join(app["operations"]),
                purpose=app["purpose"], extra={"application_id": app_id, "reason": reason},
            )
        return self.get_grant(grant_id)

    def refuse_application(self: Catalog, app_id: str, *, user: str, reason: str) -> dict[str, Any]:
        """Refuse a pending application with a reason; write ``application.refused``."""
        if not reason or not reason.strip():
            raise InvalidInput("a refusal needs a reason", hint="pass --reason TEXT")
        app = self.get_application(app_id)
        if app["status"] != PENDING:
            raise InvalidInput(f"application {app_id} is {app['status']} already",
                               hint="only pending applications can be approved or refused")
        reason = reason.strip()[:MAX_REASON]
        with self.store.write() as conn:
            result = conn.execute(
                update(st.applications)
                .where(st.applications.c.id == app_id, st.applications.c.status == PENDING)
                .values(status=REFUSED, decided_at=st.utcnow(), decided_by=user, reason=reason)
            )
            if result.rowcount != 1:
                raise InvalidInput(f"application {app_id} was decided meanwhile")
            self._audit(
                "application.refused", user=user, operator=user, peer=app["peer"],
                dataset=app["dataset"], operation=",".join(app["operations"]),
                purpose=app["purpose"], extra={"application_id": app_id, "reason": reason},
            )
        return self.get_application(app_id)

    # --- partner side ------------------------------------------------------------

    def record_outgoing_application(self: Catalog, peer: str, body: dict[str, Any],
                                    response: dict[str, Any], *, user: str) -> dict[str, Any]:
        """Keep this node's copy of an application it filed with ``peer``; write
        ``application.filed`` to this node's ledger."""
        app = validate_application_body(body)
        app_id = response.get("id")
        if not isinstance(app_id, str) or not app_id:
            raise InvalidInput(f"{peer} answered the application without an id")
        now = st.utcnow()
        with self.store.write() as conn:
            conn.execute(insert(st.outgoing_applications).values(
                id=app_id, peer=peer, status=str(response.get("status") or PENDING),
                filed_at=now, updated_at=now, **app))
            self._audit(
                "application.filed", user=user, peer=peer, dataset=app["dataset"],
                operation=",".join(app["operations"]), purpose=app["purpose"],
                extra={"application_id": app_id, "columns": ",".join(app["columns"]),
                       "days": app["days"], "direction": "out"},
            )
        return self.get_outgoing_application(peer, app_id)

    def get_outgoing_application(self: Catalog, peer: str, app_id: str) -> dict[str, Any]:
        """This node's copy of an application it filed with ``peer``."""
        with self.store.read() as conn:
            row = conn.execute(select(st.outgoing_applications).where(
                st.outgoing_applications.c.id == app_id,
                st.outgoing_applications.c.peer == peer)).mappings().first()
        if row is None:
            raise NotFound(f"no application {app_id!r} filed with {peer!r}",
                           hint="list them with: pcnode applications HOME --outgoing")
        return _app_dict(row)

    def list_outgoing_applications(self: Catalog, peer: str | None = None,
                                   status: str | None = None) -> list[dict[str, Any]]:
        """Applications this node filed, newest first."""
        t = st.outgoing_applications
        stmt = select(t).order_by(t.c.filed_at.desc())
        if peer:
            stmt = stmt.where(t.c.peer == peer)
        if status:
            stmt = stmt.where(t.c.status == status)
        with self.store.read() as conn:
            return [_app_dict(r) for r in conn.execute(stmt).mappings().all()]

    def update_outgoing_application(self: Catalog, peer: str, status: dict[str, Any], *,
                                    user: str) -> dict[str, Any]:
        """Apply a status answer from ``peer``; on a decision write ``application.approved``
        or ``application.refused`` (with the grant id) to this node's ledger."""
        app_id = status.get("id")
        new = status.get("status")
        if not isinstance(app_id, str) or new not in (PENDING, APPROVED, REFUSED):
            raise InvalidInput(f"{peer} sent a malformed application status")
        current = self.get_outgoing_application(peer, app_id)
        if current["status"] == new:
            return current
        t = st.outgoing_applications
        grant = status.get("grant") if isinstance(status.get("grant"), dict) else None
        with self.store.write() as conn:
            result = conn.execute(
                update(t).where(t.c.id == app_id, t.c.peer == peer, t.c.status == current["status"])
                .values(status=new, updated_at=st.utcnow(), reason=status.get("reason"),
                        grant_id=status.get("grant_id"), grant=grant)
            )
            if result.rowcount == 1 and new in (APPROVED, REFUSED):
                self._audit(
                    f"application.{new}", user=user, peer=peer, dataset=current["dataset"],
                    grant_id=status.get("grant_id"), operation=",".join(current["operations"]),
                    purpose=current["purpose"],
                    extra={"application_id": app_id, "direction": "out",
                           "reason": status.get("reason") or ""},
                )
        return self.get_outgoing_application(peer, app_id)
