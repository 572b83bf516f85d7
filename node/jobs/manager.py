"""Inbound jobs at a serving node: open, authorise, link up and run in the background."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from node.identity import PeerIdentity
from node.jobs.kinds import Authorization, get_kind
from node.jobs.runner import job_fields, run_party
from node.jobs.spec import JobSpec, dials
from node.services import NodeServices
from pcnode.errors import (
    AlreadyExists,
    AuthenticationError,
    Cancelled,
    ChannelTimeout,
    NotFound,
    PcnodeError,
    PermissionDenied,
)
from protocols.channel import Channel

log = logging.getLogger(__name__)

#: How long a party waits for a peer to dial in, and a dial-in waits for the job
#: to be opened here (the initiator opens the job at each party in turn).
LINK_WAIT_S = 60.0
#: Finished jobs are forgotten after this long (ids stay refused: see _seen).
FORGET_AFTER_S = 3600.0


@dataclass
class InboundJob:
    """A job opened here by a peer."""

    spec: JobSpec
    auth: Authorization
    links: dict[str, Channel] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)
    state: str = "opened"
    error: str = ""
    finished_at: float = 0.0
    cancelled: str = ""


class JobManager:
    """Tracks inbound jobs of one serving node."""

    def __init__(self, services: NodeServices) -> None:
        self.services = services
        self._jobs: dict[str, InboundJob] = {}
        self._seen: set[str] = set()
        #: Jobs refused here (id -> reason): a peer's stream for one is refused at
        #: once instead of waiting for a job that will never open.
        self._refused: dict[str, str] = {}
        self._cond = threading.Condition()

    def open(self, caller: PeerIdentity, spec_bytes: bytes, signature: bytes) -> JobSpec:
        """Validate, authorise and start a job a peer asks us to join."""
        spec = JobSpec.from_bytes(spec_bytes)
        me = self.services.name
        if caller.name != spec.initiator:
            raise AuthenticationError(f"{caller.name} may not open a job on behalf of {spec.initiator}")
        spec.verify(signature, caller.signing_key)
        if me not in spec.parties:
            raise PermissionDenied(f"this node ({me}) is not a party of the job", rule="party")
        for name in spec.others(me):
            self.services.config.peer(name)  # every other party must be a configured peer
        kind = get_kind(spec.kind)
        kind.validate(spec)
        with self._cond:
            if spec.job_id in self._seen:
                raise AlreadyExists("job id was used before", hint="replayed or duplicate request")
            self._seen.add(spec.job_id)
        role = spec.parties[me]
        base = job_fields(self.services, spec, Authorization())
        ledger = self.services.ledger
        ledger.append("job.requested", status="requested", **base)
        try:
            auth = kind.authorize(self.services, spec, role)
        except PcnodeError as exc:
            with self._cond:
                self._refused[spec.job_id] = str(exc.details.get("rule", type(exc).__name__))
                self._cond.notify_all()
            fields = job_fields(self.services, spec, Authorization(
                grant_id=str(exc.details.get("grant_id", "")),
                dataset=str(exc.details.get("dataset", ""))))
            ledger.append("job.denied", status="denied", error=str(exc)[:500],
                          extra={**fields.pop("extra"), "rule": str(exc.details.get("rule", ""))},
                          **fields)
            log.warning("job %s from %s denied: rule %s", spec.job_id, caller.name,
                        exc.details.get("rule", type(exc).__name__))
            raise
        ledger.append("job.allowed", status="allowed", **job_fields(self.services, spec, auth))
        job = InboundJob(spec, auth)
        with self._cond:
            self._gc()
            self._jobs[spec.job_id] = job
            self._cond.notify_all()
        threading.Thread(target=self._run, args=(job,), name=f"job-{spec.job_id[:8]}",
                         daemon=True).start()
        return spec

    def _run(self, job: InboundJob) -> None:
        me = self.services.name
        spec = job.spec
        try:
            for peer in spec.others(me):
                if dials(me, peer, spec.initiator):
                    job.links[peer] = self.services.peer(peer).link(spec.job_id, spec.timeout)
            deadline = time.monotonic() + LINK_WAIT_S
            with job.cond:
                while not all(p in job.links for p in spec.others(me)):
                    if job.cancelled:
                        raise Cancelled(f"job cancelled before it started: {job.cancelled}")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        missing = [p for p in spec.others(me) if p not in job.links]
                        raise ChannelTimeout(f"peers {missing} never connected for job {spec.job_id}")
                    job.cond.wait(remaining)
            job.state = "running"
            run_party(self.services, spec, job.links, job.auth)
            job.state = "completed"
        except BaseException as exc:
            started = job.state == "running"  # run_party already wrote job.failed
            job.state, job.error = "failed", type(exc).__name__
            text = str(exc) if isinstance(exc, PcnodeError) else type(exc).__name__
            for ch in job.links.values():
                ch.cancel(f"{me} failed: {text}"[:300])
            if not started:
                self.services.ledger.append(
                    "job.failed", status="failed", error=str(exc)[:500],
                    **job_fields(self.services, spec, job.auth))
                log.warning("job %s failed at %s before it started: %s", spec.job_id, me,
                            type(exc).__name__)
        finally:
            job.finished_at = time.time()

    def attach(self, job_id: str, caller: PeerIdentity, channel: Channel) -> InboundJob:
        """Attach an inbound stream from ``caller`` to the job, waiting for it to open."""
        deadline = time.monotonic() + LINK_WAIT_S
        with self._cond:
            while job_id not in self._jobs:
                if job_id in self._refused:
                    raise PermissionDenied(f"job was refused at {self.services.name} "
                                           f"(rule {self._refused[job_id]})",
                                           rule=self._refused[job_id])
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NotFound("no such job here", hint="the job was never opened at this node")
                self._cond.wait(remaining)
            job = self._jobs[job_id]
        me = self.services.name
        if caller.name not in job.spec.parties or caller.name == me:
            raise PermissionDenied(f"{caller.name} is not a party of this job", rule="party")
        if not dials(caller.name, me, job.spec.initiator):
            raise PermissionDenied(f"{caller.name} should not dial {me} in this job", rule="party")
        with job.cond:
            if caller.name in job.links:
                raise AlreadyExists(f"{caller.name} is already linked to this job")
            job.links[caller.name] = channel
            job.cond.notify_all()
        return job

    def cancel(self, job_id: str, caller: PeerIdentity, reason: str) -> None:
        """Cancel a job at a party's request."""
        with self._cond:
            job = self._jobs.get(job_id)
        if job is None or caller.name not in job.spec.parties:
            raise NotFound("no such job here")
        with job.cond:
            job.cancelled = f"cancelled by {caller.name}: {reason}"
            job.cond.notify_all()
        for ch in list(job.links.values()):
            ch.cancel(f"cancelled by {caller.name}: {reason}")

    def _gc(self) -> None:
        now = time.time()
        for jid in [j for j, job in self._jobs.items()
                    if job.finished_at and now - job.finished_at > FORGET_AFTER_S]:
            del self._jobs[jid]
