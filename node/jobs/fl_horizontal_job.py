"""``fl-horizontal``: horizontal federated LR between nodes that hold the same features.

Every ``party`` trains on its own rows each round; updates (weighted by
sample count) are summed under CKKS encrypted with the ``arbiter``'s key by
an aggregator party, and the arbiter decrypts only the sum, so no single
party's update is seen by anyone (docs/FL.md). Each non-initiating party
checks a grant (operation ``fl``) for its dataset, features and label before
anything is exchanged. Every party keeps the resulting shared model in its
registry; every party writes one ``job.epoch`` entry per round.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from node.jobs.fl_job import EpochRecorder
from node.jobs.kinds import Authorization, JobContext, JobKind, JobOutcome, register
from node.jobs.runner import job_fields
from node.jobs.spec import JobSpec
from node.models import ModelRegistry
from node.services import NodeServices
from pcnode.errors import InvalidInput
from protocols.fl import HorizontalParams, run_horizontal_arbiter, run_horizontal_party

MODEL_KIND = "fl-horizontal-lr"


def horizontal_params(spec: JobSpec) -> HorizontalParams:
    """The protocol parameters carried in the signed spec."""
    p = spec.params
    parties = sorted(n for n, r in spec.parties.items() if r == "party")
    arbiters = [n for n, r in spec.parties.items() if r == "arbiter"]
    if len(arbiters) != 1:
        raise InvalidInput("a horizontal job needs exactly one arbiter")
    try:
        hp = HorizontalParams(parties=parties, arbiter=arbiters[0],
                              aggregator=spec.initiator if spec.initiator in parties else "",
                              rounds=int(p.get("rounds", 10)),
                              local_epochs=int(p.get("local_epochs", 1)),
                              batch_size=int(p.get("batch_size", 256)),
                              learning_rate=float(p.get("learning_rate", 0.1)),
                              l2=float(p.get("l2", 0.0)), job_id=spec.job_id)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"bad horizontal FL parameter: {exc}") from None
    hp.validate()
    return hp


def _columns(spec: JobSpec) -> tuple[list[str], str]:
    features = spec.params.get("features")
    label = spec.params.get("label")
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise InvalidInput("a horizontal job needs the shared feature columns")
    if not isinstance(label, str) or not label:
        raise InvalidInput("a horizontal job needs the label column")
    return features, label


class FlHorizontalJob(JobKind):
    """Parties with the same features, plus an arbiter holding the CKKS key."""

    name = "fl-horizontal"
    operation = "fl"
    roles = ("party", "arbiter")

    def mode(self, spec: JobSpec) -> str:
        """The ledger's mode field."""
        return "horizontal/ckks"

    def validate(self, spec: JobSpec) -> None:
        """Roles, parameters, and a dataset named for every party."""
        super().validate(spec)
        horizontal_params(spec)
        _columns(spec)
        datasets = spec.params.get("datasets")
        parties = [n for n, r in spec.parties.items() if r == "party"]
        if not isinstance(datasets, dict) or set(datasets) != set(parties):
            raise InvalidInput("name one dataset per party (datasets: {party: code})")

    def authorize(self, services: NodeServices, spec: JobSpec, role: str) -> Authorization:
        """A party other than the initiator checks its grant for the features and label."""
        if role == "arbiter":
            return Authorization()
        features, label = _columns(spec)
        dataset = spec.params["datasets"][services.name]
        grant = services.catalog.authorize(spec.initiator, dataset, "fl", [*features, label], None)
        return Authorization(grant_id=grant.id, operator=grant.operator, dataset=dataset,
                             purpose=grant.purpose)

    def run(self, ctx: JobContext) -> JobOutcome:
        """Train locally and aggregate (party), or decrypt only sums (arbiter)."""
        hp = horizontal_params(ctx.spec)
        if ctx.role == "arbiter":
            report = run_horizontal_arbiter(ctx.channels, hp, on_epoch=EpochRecorder(ctx, hp.rounds))
            return JobOutcome(summary={"role": "arbiter", "rounds": getattr(report, "epochs", None)})
        features, label = _columns(ctx.spec)
        code = ctx.spec.params["datasets"][ctx.me]
        handle = ctx.services.catalog.open_dataset(code)
        values = handle.read_columns([*features, label])
        try:
            x = np.column_stack([np.asarray(values[f], dtype=np.float64) for f in features])
            y = np.asarray(values[label], dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInput(f"dataset {code}: features and label must be numeric") from None
        model, report = run_horizontal_party(ctx.channels, x, y, hp, me=ctx.me,
                                             on_epoch=EpochRecorder(ctx, hp.rounds))
        meta: dict[str, Any] = {"dataset": code, "features": features, "label": label,
                                "parties": hp.parties, "arbiter": hp.arbiter,
                                "losses": report.losses, "rows": report.rows}
        record = ModelRegistry.for_services(ctx.services).save(
            ctx.spec.job_id, role="party", party=ctx.me, part=model.to_bytes(), kind=MODEL_KIND,
            job_id=ctx.spec.job_id, meta=meta,
            ledger_fields=job_fields(ctx.services, ctx.spec, ctx.authorization))
        return JobOutcome(summary={"role": "party", "model_id": record.model_id,
                                   "version": record.version, "rows": report.rows,
                                   "rounds": report.epochs, "losses": report.losses,
                                   "converged": report.converged},
                          result=model, rows_in=report.rows, rows_out=len(features) + 1,
                          result_digest=record.digest)


register(FlHorizontalJob())
