"""A small simulated federation for bundle and replay tests (no network, no node)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import Ledger, export_bundle, open_store


def make_nodes(tmp: Path, names: Iterable[str]) -> dict[str, Ledger]:
    """One SQLite ledger per node name."""
    return {n: Ledger(open_store(f"sqlite:///{tmp / (n + '.db')}"),
                      Ed25519PrivateKey.generate(), n) for n in names}


def run_job(nodes: Mapping[str, Ledger], job_id: str, *,
            transcripts: Mapping[str, str] | None = None, record_at: Iterable[str] | None = None,
            skip_receipts: Iterable[tuple[str, str]] = (), parties: Iterable[str] | None = None,
            fail_at: Iterable[str] = ()) -> None:
    """Write a joint job the way the node does at each party in ``record_at``.

    requested -> allowed -> started -> completed (transcript) -> checkpoint ->
    receipts exchanged; ``skip_receipts`` holds (holder, issuer) pairs not recorded.
    """
    all_parties = sorted(parties or nodes)
    present = list(record_at or nodes)
    t = dict(transcripts or {})
    agreed = hashlib.sha256(job_id.encode()).hexdigest()
    extra = {"parties": ",".join(all_parties), "kind": "psi"}
    receipts = {}
    for name in present:
        ledger = nodes[name]
        peers = ",".join(p for p in all_parties if p != name)
        common = {"job_id": job_id, "peer": peers, "operation": "psi", "extra": extra}
        ledger.append("job.requested", status="requested", **common)
        ledger.append("job.allowed", status="allowed", grant_id="G-1", **common)
        ledger.append("job.started", status="started", **common)
        if name in fail_at:
            ledger.append("job.failed", status="failed", error="peer vanished", **common)
            continue
        ledger.append("job.completed", status="completed",
                      transcript_hash=t.get(name, agreed),
                      rows_in=10, rows_out=3, **common)
        receipts[name] = ledger.make_receipt(job_id, t.get(name, agreed))
    skip = set(skip_receipts)
    for holder in receipts:
        for issuer, receipt in receipts.items():
            if issuer != holder and (holder, issuer) not in skip:
                nodes[holder].record_receipt(receipt, nodes[issuer].public_key)


def export_all(nodes: Mapping[str, Ledger], out: Path) -> list[Path]:
    """Export every node's bundle into ``out``."""
    paths = []
    for name, ledger in nodes.items():
        path = out / f"{name}.bundle"
        export_bundle(ledger, path)
        paths.append(path)
    return paths
