"""The one code path that runs a party's share of a joint job.

``run_party`` writes ``job.started`` before the protocol and exactly one of
``job.completed`` / ``job.failed`` after it, agrees on the transcript hash
with every peer, makes a checkpoint and exchanges signed receipts. Kinds
never see the ledger; callers never run a kind any other way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from node.identity import verify_node_certificate
from node.jobs.kinds import Authorization, JobContext, JobOutcome, Progress, get_kind
from node.jobs.spec import JobSpec
from node.services import NodeServices
from pcnode.errors import AuthenticationError, PcnodeError, ProtocolError
from protocols import codec, transcript
from protocols.channel import Channel

log = logging.getLogger(__name__)

_TAG_RECEIPT = "__receipt"
#: Error text stored in the ledger is bounded and never includes raw data.
MAX_ERROR_CHARS = 500


def _no_progress(stage: str, done: int, total: int | None) -> None:
    """Default progress sink."""


def job_fields(services: NodeServices, spec: JobSpec, auth: Authorization) -> dict[str, Any]:
    """The ledger fields every entry of this job carries at this party."""
    kind = get_kind(spec.kind)
    fields = {
        "job_id": spec.job_id,
        "user": services.user,
        "peer": ",".join(spec.others(services.name)),
        "operation": kind.operation,
        "mode": kind.mode(spec),
        "grant_id": auth.grant_id,
        "authorised_by": auth.operator,
        "dataset": auth.dataset,
        "purpose": auth.purpose,
        "params_digest": spec.params_digest,
        "extra": {"parties": ",".join(sorted(spec.parties)), "kind": spec.kind,
                  "role": spec.parties[services.name], "initiator": spec.initiator,
                  **auth.extra},
    }
    return {k: v for k, v in fields.items() if v not in ("", None)}


def run_party(
    services: NodeServices,
    spec: JobSpec,
    channels: Mapping[str, Channel],
    auth: Authorization,
    progress: Progress | None = None,
) -> JobOutcome:
    """Run this node's role in ``spec`` over ``channels`` (one per other party)."""
    kind = get_kind(spec.kind)
    me = services.name
    fields = job_fields(services, spec, auth)
    ledger = services.ledger
    ledger.append("job.started", status="started", **fields)
    try:
        ctx = JobContext(services, spec, spec.parties[me], dict(channels), auth,
                         progress or _no_progress)
        outcome = kind.run(ctx)
        outcome.job_id = spec.job_id
        outcome.transcript_hash = transcript.finalize(spec.job_id, me, channels)
    except BaseException as exc:
        reason = f"{me} failed: {_error_text(exc)}"[:300]
        for ch in channels.values():
            ch.cancel(reason)
        ledger.append(
            "job.failed", status="failed", error=_error_text(exc),
            bytes_in=sum(c.bytes_in for c in channels.values()),
            bytes_out=sum(c.bytes_out for c in channels.values()),
            **fields,
        )
        log.warning("job %s failed at %s: %s", spec.job_id, me, type(exc).__name__)
        raise
    counts = {"rows_in": outcome.rows_in, "rows_out": outcome.rows_out,
              "bytes_in": sum(c.bytes_in for c in channels.values()),
              "bytes_out": sum(c.bytes_out for c in channels.values())}
    if outcome.result_digest:
        counts["result_digest"] = outcome.result_digest
    ledger.append("job.completed", status="completed",
                  transcript_hash=outcome.transcript_hash, **counts, **fields)
    try:
        _exchange_receipts(services, spec, channels, outcome.transcript_hash)
    finally:
        for ch in channels.values():
            ch.close()
    log.info("job %s completed at %s (transcript %s)", spec.job_id, me, outcome.transcript_hash[:16])
    return outcome


def _error_text(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, PcnodeError) else f"{type(exc).__name__}"
    return text[:MAX_ERROR_CHARS]


def _exchange_receipts(
    services: NodeServices, spec: JobSpec, channels: Mapping[str, Channel], transcript_hash: str
) -> None:
    """Sign (job, transcript, checkpoint), send it to every peer, verify and record theirs."""
    from ledger import Receipt, make_receipt, verify_receipt

    checkpoint = services.ledger.checkpoint()
    receipt = make_receipt(services.signing_key, services.name, spec.job_id,
                           transcript_hash, checkpoint)
    wire = codec.dumps({"receipt": receipt.to_dict(),
                        "certificate": services.config.tls_cert.read_text()})
    for ch in channels.values():
        ch.send(_TAG_RECEIPT, wire)
    for peer, ch in sorted(channels.items()):
        body = codec.loads(ch.recv_bytes(_TAG_RECEIPT))
        try:
            identity = verify_node_certificate(body["certificate"].encode(),
                                               services.ca_certificate)
            theirs = Receipt.from_dict(body["receipt"])
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ProtocolError(f"{peer} sent a malformed receipt: {exc}") from None
        if identity.name != peer or theirs.node != peer:
            raise AuthenticationError(f"receipt from {peer} is for another node")
        if theirs.job_id != spec.job_id or theirs.transcript_hash != transcript_hash:
            raise ProtocolError(f"{peer}'s receipt names a different job or transcript",
                                expected=transcript_hash, actual=theirs.transcript_hash)
        verify_receipt(theirs, identity.signing_key)
        services.ledger.record_receipt(theirs)


def summary_json(outcome: JobOutcome) -> str:
    """The outcome summary as one JSON line (for logs and the CLI)."""
    return json.dumps({"job_id": outcome.job_id, "transcript_hash": outcome.transcript_hash,
                       **outcome.summary}, sort_keys=True, default=str)
