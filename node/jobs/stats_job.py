"""``stats``: joint statistics over the intersection (Private Join and Compute style).

The requester R names its dataset, the holder's, and a query; it learns only
the aggregates. The holder S checks the grant for the value columns (and the
group column when S groups), for ``intersection`` membership rights when R
groups by its own column, and charges the privacy budget for a DP query
before touching data. S learns the intersection size and per-group counts (to
apply the grant's k-threshold). See docs/STATS.md.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from node.jobs.kinds import Authorization, JobContext, JobKind, JobOutcome, register
from node.jobs.spec import JobSpec
from node.services import NodeServices
from pcnode.errors import InvalidInput, PermissionDenied
from protocols.stats import BACKENDS, StatsQuery, run_holder, run_requester


def query_of(spec: JobSpec) -> StatsQuery:
    """The query carried in the signed spec."""
    return StatsQuery.from_json(spec.params.get("query"))


def holder_columns(query: StatsQuery) -> list[str]:
    """Holder columns the query reads: value columns plus a holder-side group column."""
    cols = list(query.value_columns)
    if query.group_by and query.group_side == "holder" and query.group_by not in cols:
        cols.append(query.group_by)
    return cols


class StatsJob(JobKind):
    """Requester (initiator, learns aggregates) and holder (data provider, owns the HE key)."""

    name = "stats"
    operation = "stats"
    roles = ("requester", "holder")

    def mode(self, spec: JobSpec) -> str:
        """The ledger's mode field: backend and grouping side."""
        q = spec.params.get("query") or {}
        side = q.get("group_side", "holder") if isinstance(q, dict) else "holder"
        return f"{spec.params.get('backend', '')}/{side}"

    def validate(self, spec: JobSpec) -> None:
        """Datasets, backend and a well-formed query."""
        super().validate(spec)
        p = spec.params
        for key in ("dataset", "peer_dataset"):
            if not isinstance(p.get(key), str) or not p[key]:
                raise InvalidInput(f"stats job needs a {key!r} parameter")
        if p.get("backend") not in BACKENDS:
            raise InvalidInput(f"unknown stats backend {p.get('backend')!r}",
                               hint=f"choose one of {', '.join(BACKENDS)}")
        query_of(spec)
        if sorted(spec.parties.values()) != ["holder", "requester"]:
            raise InvalidInput("stats needs exactly one requester and one holder")

    def authorize(self, services: NodeServices, spec: JobSpec, role: str) -> Authorization:
        """Check the grant (columns, grouping rights, k, DP budget) at the holder."""
        if role != "holder":
            return Authorization()
        query = query_of(spec)
        dataset = spec.params["peer_dataset"]
        requester_groups = bool(query.group_by) and query.group_side == "requester"
        # Grouping by the requester's column reveals membership per group, so it
        # needs the same right as PSI mode 'intersection' (DESIGN.md).
        grant = services.catalog.authorize(spec.initiator, dataset, "stats",
                                           holder_columns(query),
                                           "intersection" if requester_groups else None)
        if grant.epsilon is not None and query.dp is None:
            raise PermissionDenied(
                f"denied by rule 'dp': grant {grant.id} requires differential privacy",
                hint="add --epsilon E (and --clip bounds) to the query",
                rule="dp", grant_id=grant.id, dataset=dataset)
        extra: dict[str, object] = {"k": grant.k, "require_dp": grant.epsilon is not None}
        if query.dp is not None:
            services.catalog.spend_epsilon(grant.id, query.dp.epsilon, spec.job_id,
                                           user=services.user)
            extra["epsilon"] = repr(float(query.dp.epsilon))
        return Authorization(grant_id=grant.id, operator=grant.operator, dataset=dataset,
                             purpose=grant.purpose, extra=extra)

    def run(self, ctx: JobContext) -> JobOutcome:
        """Read our keys (and columns) and run our side of intersection-aggregate."""
        p = ctx.spec.params
        query = query_of(ctx.spec)
        peer = ctx.spec.others(ctx.me)[0]
        channel = ctx.channels[peer]
        if ctx.role == "requester":
            handle = ctx.services.catalog.open_dataset(p["dataset"])
            keys = handle.read_keys()
            group = None
            if query.group_by and query.group_side == "requester":
                group = handle.read_columns([query.group_by])[query.group_by]
            ctx.progress("matching", 0, 1)
            result = run_requester(channel, keys, query, group=group, pool=ctx.services.pool)
            ctx.progress("matching", 1, 1)
            body = json.dumps(result.to_json(), sort_keys=True, default=str).encode()
            return JobOutcome(summary=result.to_json(), result=result, rows_in=len(keys),
                              rows_out=len(result.groups),
                              result_digest=hashlib.sha256(body).hexdigest())
        handle = ctx.services.catalog.open_dataset(p["peer_dataset"])
        keys = handle.read_keys()
        cols = handle.read_columns(holder_columns(query))
        group = cols.pop(query.group_by) if query.group_by and query.group_side == "holder" else None
        values = {name: np.asarray(col, dtype=np.float64) for name, col in cols.items()}
        k = int(ctx.authorization.extra.get("k", 1))
        # Requester grouping reaches here only if authorize() found 'intersection' rights.
        report = run_holder(channel, keys, values, group, query, k, p["backend"],
                            allow_requester_grouping=query.group_side == "requester",
                            require_dp=bool(ctx.authorization.extra.get("require_dp")),
                            pool=ctx.services.pool)
        summary = {"intersection_size": report.intersection_size, "groups": len(report.group_counts),
                   "suppressed": report.suppressed, "rows": report.rows}
        return JobOutcome(summary=summary, rows_in=report.rows, rows_out=len(report.group_counts),
                          result_digest=hashlib.sha256(json.dumps(summary, sort_keys=True)
                                                       .encode()).hexdigest())


register(StatsJob())
