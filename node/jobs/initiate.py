"""Starting a joint job from this node (CLI, SDK): open it at every peer, link, run."""

from __future__ import annotations

import logging
from typing import Any

from node.jobs.kinds import Authorization, JobOutcome, Progress, get_kind
from node.jobs.runner import job_fields, run_party
from node.jobs.spec import JobSpec, new_job_id
from node.services import NodeServices
from pcnode.errors import PcnodeError
from protocols.channel import DEFAULT_RECV_TIMEOUT, Channel

log = logging.getLogger(__name__)


def initiate(
    services: NodeServices,
    kind_name: str,
    parties: dict[str, str],
    params: dict[str, Any],
    *,
    auth: Authorization | None = None,
    progress: Progress | None = None,
    timeout: float = DEFAULT_RECV_TIMEOUT,
) -> JobOutcome:
    """Run a job with ``parties`` (name -> role; must include this node) and return our outcome."""
    me = services.name
    spec = JobSpec(job_id=new_job_id(), kind=kind_name, initiator=me, parties=dict(parties),
                   params=params, timeout=timeout)
    spec.validate()
    kind = get_kind(kind_name)
    kind.validate(spec)
    for peer in spec.others(me):
        services.config.peer(peer)
    auth = auth or Authorization()
    fields = job_fields(services, spec, auth)
    services.ledger.append("job.requested", status="requested", **fields)
    signature = spec.sign(services.signing_key)
    body = spec.to_bytes()
    opened: list[str] = []
    links: dict[str, Channel] = {}
    try:
        for peer in spec.others(me):
            services.peer(peer).open_job(body, signature)
            opened.append(peer)
        for peer in spec.others(me):
            links[peer] = services.peer(peer).link(spec.job_id, timeout)
    except PcnodeError as exc:
        services.ledger.append("job.failed", status="failed", error=str(exc)[:500], **fields)
        for ch in links.values():
            ch.cancel(f"{me} could not start the job")
        for peer in opened:
            try:
                services.peer(peer).cancel_job(spec.job_id, "initiator could not start the job")
            except PcnodeError:
                log.info("could not cancel job %s at %s", spec.job_id, peer)
        raise
    return run_party(services, spec, links, auth, progress)
