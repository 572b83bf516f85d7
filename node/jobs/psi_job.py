"""``psi``: ECDH private set intersection between a requester and a holder node.

The requester names its own dataset and the holder's; the holder checks the
grant (peer, dataset, operation ``psi``, PSI mode, time, quota, staleness,
sharing) before anything is exchanged. Only the key column is read, streamed
in chunks from the registered source. What each side learns per mode is in
docs/PSI.md and the README.
"""

from __future__ import annotations

import hashlib
import secrets

from node.jobs.kinds import Authorization, JobContext, JobKind, JobOutcome, register
from node.jobs.spec import JobSpec
from node.services import NodeServices
from pcnode.errors import InvalidInput
from protocols.psi import MODES, Normalization, PsiParams, run_holder, run_requester

#: Normalisation applied when the requester names none: trim whitespace and
#: NFKC-fold full-width characters, which are common in Chinese registry data.
DEFAULT_NORMALIZATION = "strip,nfkc"


def new_salt() -> str:
    """A fresh per-job salt (hex), chosen by the initiator and bound into the signed spec."""
    return secrets.token_hex(32)


class PsiJob(JobKind):
    """Requester R (initiator) and holder S (data provider)."""

    name = "psi"
    operation = "psi"
    roles = ("requester", "holder")

    def validate(self, spec: JobSpec) -> None:
        """Mode, datasets and salt must be present and well-formed."""
        super().validate(spec)
        p = spec.params
        if p.get("mode") not in MODES:
            raise InvalidInput(f"unknown PSI mode {p.get('mode')!r}",
                               hint=f"choose one of {', '.join(MODES)}")
        for key in ("dataset", "peer_dataset", "salt"):
            if not isinstance(p.get(key), str) or not p[key]:
                raise InvalidInput(f"PSI job needs a {key!r} parameter")
        try:
            bytes.fromhex(p["salt"])
        except ValueError:
            raise InvalidInput("PSI salt must be hex") from None
        Normalization.parse(p.get("normalization", DEFAULT_NORMALIZATION))
        if sorted(spec.parties.values()) != ["holder", "requester"]:
            raise InvalidInput("PSI needs exactly one requester and one holder")

    def authorize(self, services: NodeServices, spec: JobSpec, role: str) -> Authorization:
        """The holder checks the requester's grant for the dataset and mode."""
        if role != "holder":
            return Authorization()
        p = spec.params
        grant = services.catalog.authorize(spec.initiator, p["peer_dataset"], "psi", [],
                                           p["mode"])
        return Authorization(grant_id=grant.id, operator=grant.operator,
                             dataset=p["peer_dataset"], purpose=grant.purpose)

    def run(self, ctx: JobContext) -> JobOutcome:
        """Stream our key column through the protocol in our role."""
        p = ctx.spec.params
        own = p["dataset"] if ctx.role == "requester" else p["peer_dataset"]
        handle = ctx.services.catalog.open_dataset(own)
        peer = ctx.spec.others(ctx.me)[0]
        params = PsiParams(mode=p["mode"], salt=bytes.fromhex(p["salt"]),
                           normalization=Normalization.parse(
                               p.get("normalization", DEFAULT_NORMALIZATION)),
                           collect_items=ctx.role == "requester")
        run = run_requester if ctx.role == "requester" else run_holder
        result = run(ctx.channels[peer], lambda: handle.iter_key_chunks(), params,
                     pool=ctx.services.pool, progress=ctx.progress)
        if result.intersection is not None:
            h = hashlib.sha256()
            for item in sorted(map(str, result.intersection)):
                h.update(item.encode() + b"\n")
            digest = h.hexdigest()
        else:
            digest = hashlib.sha256(f"size:{result.size}".encode()).hexdigest()
        summary = result.summary()
        if result.join is not None:
            summary["join"] = result.join.describe()
        return JobOutcome(summary=summary, result=result, rows_in=result.own_rows,
                          rows_out=result.size or 0, result_digest=digest)


register(PsiJob())
