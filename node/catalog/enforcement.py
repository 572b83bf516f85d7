"""Enforcement: every inbound PSI, stats or FL call is checked against a grant.

:meth:`authorize` checks the rules below **in this order** and stops at the
first that fails, raising PermissionDenied whose ``details['rule']`` and
message name the rule (QuotaExhausted, a PermissionDenied, for the quota):

==========  =================================================================
rule        passes when
==========  =================================================================
peer        the caller is an identified federation node (from mTLS), not us
dataset     the dataset exists and is not retired
stale       its source is unchanged since registration
share       its sharing attribute is not ``none`` (不予共享: never)
grant       some grant on this dataset names this peer
operation   the operation (psi, stats, fl) is one the grant allows
columns     every requested column is granted (the key column is implicit
            for psi)
mode        the PSI output mode, when one is given, is allowed by the grant
time        not-before <= now < expiry
revoked     the grant has not been revoked
quota       calls remain; one is consumed atomically on success
==========  =================================================================

When a peer holds several grants on the dataset, each is checked and the
first that passes every rule is used (newest first). If none passes, the
denial reported is the one from the grant that got furthest down the table,
so the message names the most specific reason.

authorize does not write the ledger: the job module records the allowed or
denied call with the grant id and rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import update

from node.catalog import store as st
from node.catalog.grants import OPERATIONS, PSI_MODES, Grant
from node.config import NAME_PATTERN
from pcnode.errors import PermissionDenied, QuotaExhausted

if TYPE_CHECKING:
    from node.catalog.catalog import Catalog

#: The rules, in the order they are checked.
RULES = ("peer", "dataset", "stale", "share", "grant", "operation", "columns", "mode", "time",
         "revoked", "quota")


def denied(rule: str, message: str, *, hint: str = "", **details: object) -> PermissionDenied:
    """A PermissionDenied naming ``rule`` (QuotaExhausted for the quota rule)."""
    cls = QuotaExhausted if rule == "quota" else PermissionDenied
    return cls(f"denied by rule {rule!r}: {message}", hint=hint, rule=rule, **details)


def _fmt(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


def check_grant(grant: Grant, *, operation: str, columns: Sequence[str], mode: str | None,
                key_column: str, now: dt.datetime) -> PermissionDenied | None:
    """The first grant-level rule (operation .. quota) that ``grant`` fails, or None."""
    if operation not in grant.operations:
        return denied("operation",
                      f"operation {operation!r} is not in grant {grant.id} "
                      f"(granted: {_fmt(grant.operations)})",
                      hint="apply for a grant that includes this operation",
                      grant_id=grant.id, operation=operation)
    allowed = set(grant.columns) | ({key_column} if operation == "psi" else set())
    for column in columns:
        if column not in allowed:
            return denied("columns",
                          f"column {column!r} is not in grant {grant.id} "
                          f"(granted: {_fmt(grant.columns)})",
                          hint="apply for a grant that includes this column",
                          grant_id=grant.id, column=column)
    if mode is not None and mode not in grant.psi_modes:
        return denied("mode",
                      f"PSI mode {mode!r} is not allowed by grant {grant.id} "
                      f"(allowed: {_fmt(grant.psi_modes)})",
                      hint="use an allowed mode, or ask the provider to allow this one",
                      grant_id=grant.id, mode=mode)
    if now < grant.not_before:
        return denied("time", f"grant {grant.id} is not valid before {st.iso(grant.not_before)}",
                      grant_id=grant.id)
    if now >= grant.expires_at:
        return denied("time", f"grant {grant.id} expired at {st.iso(grant.expires_at)}",
                      hint="apply for a new grant", grant_id=grant.id)
    if grant.revoked_at is not None:
        return denied("revoked", f"grant {grant.id} was revoked at {st.iso(grant.revoked_at)}",
                      hint="apply for a new grant", grant_id=grant.id)
    if grant.quota is not None and grant.used >= grant.quota:
        return denied("quota", f"grant {grant.id} has used all {grant.quota} calls of its quota",
                      hint="apply for a new grant", grant_id=grant.id)
    return None


class EnforcementMixin:
    """:meth:`authorize` of :class:`node.catalog.Catalog`."""

    def authorize(
        self: Catalog,
        peer: str,
        dataset: str,
        operation: str,
        columns: Sequence[str],
        mode: str | None,
        now: dt.datetime | None = None,
    ) -> Grant:
        """Check a call by ``peer`` against its grants (see module docstring); consume one call.

        Returns the grant used, with ``used`` already incremented. Raises
        PermissionDenied (or QuotaExhausted) naming the failed rule.
        """
        now = st.as_utc(now) or st.utcnow()  # a naive ``now`` is taken as UTC
        columns = list(columns)
        # peer
        if not isinstance(peer, str) or not NAME_PATTERN.match(peer):
            raise denied("peer", "the caller is not an identified federation node",
                         hint="calls must arrive over mTLS with a federation certificate")
        if peer == self.node:
            raise denied("peer", f"a node cannot call itself ({peer!r})")
        # dataset
        row = self._dataset_row(dataset) if isinstance(dataset, str) else None
        if row is None or row["state"] == "retired":
            raise denied("dataset", f"dataset {dataset!r} is not in the catalog of {self.node}"
                         + (" (retired)" if row is not None else ""),
                         hint=f"list shareable datasets with: pcnode catalog HOME --peer {self.node}",
                         dataset=dataset)
        # stale
        if self.check_stale(dataset):
            raise denied("stale", f"dataset {dataset!r} changed at the source since it was "
                         "registered; calls are refused until the provider re-registers it",
                         hint="ask the provider to check and re-register the dataset",
                         dataset=dataset)
        # share
        if row["share"] == "none":
            raise denied("share", f"dataset {dataset!r} is shared as 'none' (不予共享)",
                         dataset=dataset)
        # grant
        grants = [g for g in self.list_grants(peer=peer, dataset=dataset)]
        if not grants:
            raise denied("grant", f"peer {peer!r} holds no grant on dataset {dataset!r}",
                         hint=f"apply first: pcnode apply HOME --peer {self.node} --dataset {dataset} ...",
                         dataset=dataset, peer=peer)
        if operation not in OPERATIONS:
            raise denied("operation", f"unknown operation {operation!r}",
                         hint=f"operations are {', '.join(OPERATIONS)}", operation=operation)
        if mode is not None and mode not in PSI_MODES:
            raise denied("mode", f"unknown PSI mode {mode!r}",
                         hint=f"modes are {', '.join(PSI_MODES)}", mode=mode)
        # operation .. quota, per grant; newest first, unrevoked before revoked
        grants.sort(key=lambda g: (g.revoked_at is not None, -g.created_at.timestamp()))
        best: PermissionDenied | None = None
        for grant in grants:
            failure = check_grant(grant, operation=operation, columns=columns, mode=mode,
                                  key_column=row["key_column"], now=now)
            if failure is None:
                used = self._consume_call(grant)
                if used is not None:
                    return used
                # Lost a race (revoked or quota spent meanwhile): re-check the fresh row.
                failure = check_grant(
                    self.get_grant(grant.id), operation=operation, columns=columns, mode=mode,
                    key_column=row["key_column"], now=now,
                ) or denied("quota", f"grant {grant.id} has used all {grant.quota} calls of its "
                            "quota", hint="apply for a new grant", grant_id=grant.id)
            if best is None or RULES.index(failure.details["rule"]) > RULES.index(
                    best.details["rule"]):
                best = failure
        assert best is not None
        raise best

    def _consume_call(self: Catalog, grant: Grant) -> Grant | None:
        """Atomically take one call from ``grant``'s quota; None if none was left (or revoked)."""
        g = st.grants.c
        with self.store.write() as conn:
            result = conn.execute(
                update(st.grants)
                .where(g.id == grant.id, g.revoked_at.is_(None),
                       g.quota.is_(None) | (g.used < g.quota))
                .values(used=g.used + 1)
            )
            if result.rowcount != 1:
                return None
            return self._grant_in(conn, grant.id)
