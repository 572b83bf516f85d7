"""Regulator replay: check a set of bundles against each other, job by job.

Each bundle is first verified completely (signature, every entry, checkpoint).
Then every job that names several parties (``extra.parties`` or ``peer``) is
rebuilt as a timeline across all bundles and checked:

* **no_bundle** — a party of the job supplied no bundle;
* **missing** — a party's ledger does not mention a job that ran (was
  started somewhere); a job refused before it started need not reach every
  party, and is then listed with status ``absent`` there;
* **incomplete** — a party started the job but recorded no end
  (``job.completed``, ``job.failed`` or ``job.denied``);
* **status_mismatch** — one party completed the job, another failed/denied it;
* **no_transcript** / **transcript_mismatch** — a completed job lacks a
  transcript hash, or the parties recorded different ones;
* **unreceipted** — party Q completed the job but holds no receipt from P;
* **bad_receipt** — a recorded receipt does not verify under P's key, or
  names another job or transcript;
* **receipt_checkpoint** — the checkpoint inside P's receipt does not match
  P's own bundle (P rewrote or truncated its ledger after signing), or does
  not yet include P's ``job.completed`` entry.

Bundle-level problems are reported as **bundle_invalid**, **duplicate_bundle**
and **untrusted_key**.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pcnode.errors import InvalidInput, PcnodeError

from .bundle import BundleReport, read_bundle_header, verify_bundle
from .entry import Entry
from .events import (
    JOB_COMPLETED,
    JOB_DENIED,
    JOB_FAILED,
    JOB_STARTED,
    RECEIPT_KEY,
    RECEIPT_RECEIVED,
)
from .keys import PublicKeyLike, load_public_key
from .merkle import HASH_SIZE, MerkleTree
from .receipt import Receipt
from .timefmt import format_time

#: Events showing a job actually ran (beyond request and authorisation).
RAN_EVENTS = frozenset({JOB_STARTED, JOB_COMPLETED})


@dataclass
class Finding:
    """One problem found by replay."""

    kind: str
    message: str
    job_id: str | None = None
    party: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "job_id": self.job_id, "party": self.party,
                "message": self.message, "details": self.details}


@dataclass
class JobEvent:
    """One entry of a job, as seen in one party's bundle."""

    node: str
    index: int
    event: str
    time: int
    peer: str | None
    parties: list[str]
    transcript_hash: str | None
    status: str | None
    receipt_json: str | None

    def to_dict(self) -> dict[str, Any]:
        """Timeline row."""
        return {"time": format_time(self.time), "node": self.node, "index": self.index,
                "event": self.event, "peer": self.peer, "status": self.status,
                "transcript_hash": self.transcript_hash}


@dataclass
class JobReport:
    """Everything replay established about one job."""

    job_id: str
    parties: list[str]
    joint: bool
    status: dict[str, str]
    transcript_hash: str | None
    findings: list[Finding]
    timeline: list[JobEvent]

    @property
    def ok(self) -> bool:
        """True iff no problem was found for this job."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"job_id": self.job_id, "parties": self.parties, "joint": self.joint,
                "ok": self.ok, "status": self.status, "transcript_hash": self.transcript_hash,
                "findings": [f.to_dict() for f in self.findings],
                "timeline": [e.to_dict() for e in self.timeline]}


@dataclass
class ReplayReport:
    """Outcome of :func:`replay`. ``ok`` is True iff nothing was found anywhere."""

    bundles: list[BundleReport]
    jobs: list[JobReport]
    findings: list[Finding]
    keys_from_bundles: bool

    @property
    def ok(self) -> bool:
        """True iff every bundle verifies and every job is consistent."""
        return not self.findings and all(j.ok for j in self.jobs)

    def problems(self) -> list[Finding]:
        """Every finding: bundle-level first, then per job."""
        return [*self.findings, *(f for j in self.jobs for f in j.findings)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ok": self.ok, "keys_from_bundles": self.keys_from_bundles,
                "bundles": [b.to_dict() for b in self.bundles],
                "findings": [f.to_dict() for f in self.findings],
                "jobs": [j.to_dict() for j in self.jobs],
                "summary": {"bundles": len(self.bundles), "jobs": len(self.jobs),
                            "joint_jobs": sum(j.joint for j in self.jobs),
                            "jobs_with_findings": sum(not j.ok for j in self.jobs)}}


def _job_event(node: str, entry: Entry) -> JobEvent:
    receipt = entry.extra.get(RECEIPT_KEY) if entry.event == RECEIPT_RECEIVED else None
    try:
        parties = entry.parties
    except InvalidInput:
        parties = []
    return JobEvent(node, entry.index, entry.event, entry.time, entry.peer, parties,
                    entry.transcript_hash, entry.status,
                    receipt if isinstance(receipt, str) else None)


def _status(events: list[JobEvent]) -> str:
    names = {e.event for e in events}
    for event, status in ((JOB_COMPLETED, "completed"), (JOB_FAILED, "failed"),
                          (JOB_DENIED, "denied")):
        if event in names:
            return status
    return "open"


def replay(paths: Iterable[str | os.PathLike[str]],
           trusted_keys: Mapping[str, PublicKeyLike] | None = None) -> ReplayReport:
    """Verify every bundle and check every joint job across them.

    ``trusted_keys`` maps node name -> that node's ledger public key, obtained
    out of band (e.g. from the federation). Without it each bundle's own header
    key is used, which proves integrity but not authorship
    (``keys_from_bundles`` is then True).
    """
    findings: list[Finding] = []
    bundles: list[BundleReport] = []
    keys: dict[str, PublicKeyLike] = {}
    trees: dict[str, MerkleTree] = {}
    by_job: dict[str, dict[str, list[JobEvent]]] = defaultdict(lambda: defaultdict(list))
    for raw_path in paths:
        path = os.fspath(raw_path)
        try:
            node = read_bundle_header(path)["node"]
        except PcnodeError as exc:
            findings.append(Finding("bundle_invalid", f"{path} cannot be read: {exc.message}",
                                    details={"path": path}))
            continue
        if any(b.node == node for b in bundles):
            findings.append(Finding("duplicate_bundle", f"two bundles are for node {node}; "
                                    f"only the first is used", party=node,
                                    details={"path": path}))
            continue
        trusted = None
        if trusted_keys is not None:
            trusted = trusted_keys.get(node)
            if trusted is None:
                findings.append(Finding("untrusted_key", f"no trusted key for node {node}; its "
                                        "bundle was checked with its own header key",
                                        party=node))

        def collect(entry: Entry, node: str = node) -> None:
            if entry.job_id is not None:
                by_job[entry.job_id][node].append(_job_event(node, entry))

        report = verify_bundle(path, trusted, on_entry=collect, keep_leaf_hashes=True)
        bundles.append(report)
        if not report.ok:
            errors = report.all_errors()
            first = errors[0] if errors else None
            findings.append(Finding(
                "bundle_invalid", f"bundle of {node} does not verify: "
                f"{first.message if first else 'unknown problem'}", party=node,
                details={"errors": len(errors), "first": first.to_dict() if first else None}))
        if report.public_key is not None:
            keys[node] = load_public_key(trusted) if trusted is not None else report.public_key
        leaves = report.leaf_hashes
        trees[node] = MerkleTree(leaves[i:i + HASH_SIZE] for i in range(0, len(leaves), HASH_SIZE))

    present = {b.node for b in bundles if b.node is not None}
    jobs = [_check_job(job_id, parties, present, keys, trees)
            for job_id, parties in by_job.items()]
    jobs.sort(key=lambda j: (min((e.time for e in j.timeline), default=0), j.job_id))
    return ReplayReport(bundles, jobs, findings, trusted_keys is None)


def _check_job(job_id: str, events_by_node: Mapping[str, list[JobEvent]], present: set[str],
               keys: Mapping[str, PublicKeyLike], trees: Mapping[str, MerkleTree]) -> JobReport:
    findings: list[Finding] = []
    timeline = sorted((e for evs in events_by_node.values() for e in evs),
                      key=lambda e: (e.time, e.node, e.index))
    parties: set[str] = set(events_by_node)
    for e in timeline:
        parties.update(e.parties)
        if e.peer is not None and e.event != RECEIPT_RECEIVED:
            parties.update(p for p in e.peer.split(",") if p)
    joint = len(parties) > 1
    status = {node: _status(evs) for node, evs in events_by_node.items()}

    def add(kind: str, message: str, party: str | None = None, **details: Any) -> None:
        findings.append(Finding(kind, message, job_id, party, details))

    # A job that ran (was started somewhere) must appear at every party; one that
    # was refused or abandoned before starting may not have reached them all.
    ran = any(e.event in RAN_EVENTS for e in timeline)
    for party in sorted(parties):
        if party not in present:
            if ran:
                add("no_bundle", f"no bundle was supplied for party {party} of job {job_id}",
                    party)
        elif party not in events_by_node:
            if ran:
                add("missing", f"job {job_id} is absent from the ledger of {party}", party)
            status[party] = "absent"
    for node, st in sorted(status.items()):
        if st == "open":
            add("incomplete", f"{node} recorded job {job_id} but no completion or failure", node)
    done = {n for n, s in status.items() if s == "completed"}
    ended = {n: s for n, s in status.items() if s in ("failed", "denied")}
    if done and ended:
        add("status_mismatch", f"job {job_id} completed at {sorted(done)} but "
            f"{'/'.join(sorted(set(ended.values())))} at {sorted(ended)}", None,
            status=dict(sorted(status.items())))

    transcripts: dict[str, str | None] = {}
    completed_at: dict[str, int] = {}
    for node in sorted(done):
        completions = [e for e in events_by_node[node] if e.event == JOB_COMPLETED]
        hashes = {e.transcript_hash for e in completions}
        completed_at[node] = max(e.index for e in completions)
        if None in hashes:
            add("no_transcript", f"{node} completed job {job_id} without a transcript hash", node)
        hashes.discard(None)
        if len(hashes) > 1:
            add("transcript_mismatch", f"{node} recorded several transcript hashes for "
                f"job {job_id}", node, transcripts=sorted(h for h in hashes if h))
        transcripts[node] = next(iter(hashes)) if hashes else None
    agreed = {h for h in transcripts.values() if h is not None}
    if len(agreed) > 1:
        add("transcript_mismatch", f"parties recorded different transcript hashes for job "
            f"{job_id}", None, transcripts=dict(sorted(transcripts.items())))
    transcript = next(iter(agreed)) if len(agreed) == 1 else None

    if joint:
        for holder in sorted(done):
            received = [e for e in events_by_node[holder] if e.event == RECEIPT_RECEIVED]
            for issuer in sorted(parties - {holder}):
                _check_receipt(job_id, holder, issuer, [e for e in received if e.peer == issuer],
                               transcripts.get(holder), keys, trees, completed_at, present, add)

    return JobReport(job_id, sorted(parties), joint, dict(sorted(status.items())), transcript,
                     findings, timeline)


def _check_receipt(job_id: str, holder: str, issuer: str, received: list[JobEvent],
                   transcript: str | None, keys: Mapping[str, PublicKeyLike],
                   trees: Mapping[str, MerkleTree], completed_at: Mapping[str, int],
                   present: set[str], add: Any) -> None:
    if not received:
        add("unreceipted", f"{holder} holds no receipt from {issuer} for job {job_id}", holder,
            issuer=issuer)
        return
    key = keys.get(issuer)
    problems: list[str] = []
    for event in received:
        try:
            receipt = Receipt.from_json(event.receipt_json or "")
        except InvalidInput as exc:
            problems.append(f"entry {event.index}: unreadable receipt ({exc.message})")
            continue
        if receipt.node != issuer or receipt.job_id != job_id:
            problems.append(f"entry {event.index}: receipt is by {receipt.node} for job "
                            f"{receipt.job_id}")
            continue
        if key is None:
            problems.append(f"entry {event.index}: no key for {issuer} to check the receipt")
            continue
        if not receipt.is_valid(key):
            problems.append(f"entry {event.index}: receipt signature does not verify "
                            f"under {issuer}'s key")
            continue
        if transcript is not None and receipt.transcript_hash != transcript:
            problems.append(f"entry {event.index}: receipt names transcript "
                            f"{receipt.transcript_hash}, {holder} recorded {transcript}")
            continue
        cp = receipt.checkpoint
        if issuer in present:
            tree = trees[issuer]
            if cp.tree_size > tree.size:
                add("receipt_checkpoint", f"{issuer}'s receipt for job {job_id} pins its ledger "
                    f"at {cp.tree_size} entries but its bundle has only {tree.size}", issuer,
                    holder=holder, expected=cp.root_hash.hex(), index=tree.size)
            elif tree.root(cp.tree_size) != cp.root_hash:
                add("receipt_checkpoint", f"{issuer}'s ledger was rewritten after it signed its "
                    f"receipt for job {job_id}: the root at size {cp.tree_size} differs", issuer,
                    holder=holder, expected=cp.root_hash.hex(),
                    actual=tree.root(cp.tree_size).hex(), index=cp.tree_size)
            elif issuer in completed_at and completed_at[issuer] >= cp.tree_size:
                add("receipt_checkpoint", f"{issuer}'s receipt for job {job_id} pins a checkpoint "
                    f"({cp.tree_size}) taken before its completion entry "
                    f"({completed_at[issuer]})", issuer, holder=holder)
        return
    add("bad_receipt", f"{holder}'s receipt from {issuer} for job {job_id} is not valid: "
        f"{'; '.join(problems)}", holder, issuer=issuer)
