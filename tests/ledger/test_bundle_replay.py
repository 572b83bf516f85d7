"""Export bundles and regulator replay across several nodes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from ledger import Ledger, export_bundle, open_store, read_bundle_header, replay, verify_bundle
from pcnode.errors import InvalidInput, LedgerError

from .federation import export_all, make_nodes, run_job

NAMES = ("bank-a", "gov", "operator")


def kinds(report) -> set[tuple[str, str | None, str | None]]:
    return {(f.kind, f.job_id, f.party) for f in report.problems()}


def certificate(name: str) -> str:
    key = Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, None))
    from cryptography.hazmat.primitives.serialization import Encoding
    return cert.public_bytes(Encoding.PEM).decode()


def test_export_and_verify_bundle(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, ["bank-a", "gov"])
    run_job(nodes, "job-1")
    a = nodes["bank-a"]
    size_before = len(a)
    info = export_bundle(a, tmp_path / "a.bundle", certificate_pem=certificate("bank-a"))
    assert info.entries == size_before and len(a) == size_before + 1  # export checkpoints
    header = read_bundle_header(tmp_path / "a.bundle")
    assert header["node"] == "bank-a" and header["entries"] == info.entries
    report = verify_bundle(tmp_path / "a.bundle", a.public_key)
    assert report.ok, report.to_dict()
    assert report.certificate_matches_node is True
    assert report.checkpoint is not None and report.checkpoint.root_hash == info.root_hash
    assert not list(tmp_path.glob(".ledger-bundle-*"))  # no temp file left behind
    lines = (tmp_path / "a.bundle").read_bytes().splitlines()
    assert json.loads(lines[-1])["type"] == "signature"


def test_consistent_federation(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, NAMES)
    run_job(nodes, "job-psi", parties=["bank-a", "gov"], record_at=["bank-a", "gov"])
    run_job(nodes, "job-fl")  # three parties
    nodes["gov"].append("dataset.registered", dataset="DS-9")
    paths = export_all(nodes, tmp_path)
    keys = {n: led.public_key for n, led in nodes.items()}
    report = replay(paths, trusted_keys=keys)
    assert report.ok, [f.to_dict() for f in report.problems()]
    assert not report.keys_from_bundles
    jobs = {j.job_id: j for j in report.jobs}
    assert set(jobs) == {"job-psi", "job-fl"}
    assert jobs["job-fl"].parties == sorted(NAMES) and jobs["job-fl"].joint
    assert set(jobs["job-fl"].status.values()) == {"completed"}
    times = [e.time for e in jobs["job-fl"].timeline]
    assert times == sorted(times)
    assert {e.node for e in jobs["job-fl"].timeline} == set(NAMES)
    summary = report.to_dict()["summary"]
    assert summary == {"bundles": 3, "jobs": 2, "joint_jobs": 2, "jobs_with_findings": 0}
    assert replay(paths).ok  # keys taken from the bundles


def test_job_missing_at_a_party(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, NAMES)
    run_job(nodes, "job-ok")
    run_job(nodes, "job-hidden", record_at=["bank-a", "gov"])  # operator withheld it
    report = replay(export_all(nodes, tmp_path))
    assert not report.ok
    found = kinds(report)
    assert ("missing", "job-hidden", "operator") in found
    assert ("unreceipted", "job-hidden", "bank-a") in found  # no receipt from operator
    assert all(j.ok for j in report.jobs if j.job_id == "job-ok")


def test_mismatched_transcript(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, ["bank-a", "gov"])
    run_job(nodes, "job-x", transcripts={"bank-a": "11" * 32, "gov": "22" * 32},
            skip_receipts=[("bank-a", "gov"), ("gov", "bank-a")])
    report = replay(export_all(nodes, tmp_path))
    found = kinds(report)
    assert ("transcript_mismatch", "job-x", None) in found
    job = report.jobs[0]
    assert job.transcript_hash is None
    assert {f.kind for f in job.findings} >= {"transcript_mismatch", "unreceipted"}


def test_missing_receipt(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, ["bank-a", "gov"])
    run_job(nodes, "job-r", skip_receipts=[("bank-a", "gov")])
    report = replay(export_all(nodes, tmp_path))
    assert kinds(report) == {("unreceipted", "job-r", "bank-a")}
    finding = report.problems()[0]
    assert finding.details["issuer"] == "gov"


def test_failed_and_incomplete_jobs(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, ["bank-a", "gov"])
    run_job(nodes, "job-f", fail_at=["bank-a", "gov"])  # failed everywhere: consistent
    run_job(nodes, "job-s", fail_at=["gov"])            # completed at one, failed at the other
    nodes["bank-a"].append("job.started", job_id="job-open", peer="gov",
                           extra={"parties": "bank-a,gov"})
    report = replay(export_all(nodes, tmp_path))
    found = kinds(report)
    assert not any(job == "job-f" for _, job, _ in found)
    assert ("status_mismatch", "job-s", None) in found
    assert ("incomplete", "job-open", "bank-a") in found
    assert ("missing", "job-open", "gov") in found


def test_tampered_bundle(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, ["bank-a", "gov"])
    run_job(nodes, "job-1")
    paths = export_all(nodes, tmp_path)
    data = bytearray(paths[0].read_bytes())
    pos = data.index(b'rows_in\\":10')
    data[pos + 11] = ord("9")
    paths[0].write_bytes(bytes(data))
    report = replay(paths)
    assert ("bundle_invalid", None, "bank-a") in kinds(report)
    bundle = verify_bundle(paths[0])
    checks = {e.details.get("check") for e in bundle.all_errors()}
    assert {"bundle_digest", "bundle_signature", "content"} <= checks


def test_truncated_bundle_file(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, ["bank-a"])
    nodes["bank-a"].append("job.started", job_id="x")
    (path,) = export_all(nodes, tmp_path)
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-2]))
    report = verify_bundle(path)
    assert not report.ok
    assert {e.details.get("check") for e in report.errors} >= {"bundle_signature"}


def test_rewritten_ledger_is_caught_by_the_receipt_it_gave(tmp_path: Path) -> None:
    """gov signs a receipt, then rebuilds its ledger without the completion and exports that."""
    nodes = make_nodes(tmp_path, ["bank-a", "gov"])
    run_job(nodes, "job-1")
    gov_key = nodes["gov"]._key
    forged = Ledger(open_store(f"sqlite:///{tmp_path / 'gov-forged.db'}"), gov_key, "gov")
    for entry in list(nodes["gov"].entries()):
        if entry.event in ("checkpoint", "receipt.received", "job.completed"):
            continue
        forged.append(entry.event, **{k: v for k, v in entry.to_dict().items()
                                      if k not in ("index", "event", "node", "prev_hash",
                                                   "entry_hash", "signature")})
    for i in range(3):
        forged.append("dataset.registered", dataset=f"DS-{i}")
    nodes["gov"] = forged
    report = replay(export_all(nodes, tmp_path))
    found = kinds(report)
    assert ("receipt_checkpoint", "job-1", "gov") in found
    assert ("incomplete", "job-1", "gov") in found
    assert all(b.ok for b in report.bundles)  # each bundle is internally valid


def test_untrusted_and_duplicate_bundles(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, ["bank-a", "gov"])
    run_job(nodes, "job-1")
    paths = export_all(nodes, tmp_path)
    wrong = {"bank-a": Ed25519PrivateKey.generate().public_key()}
    report = replay([*paths, paths[0]], trusted_keys=wrong)
    found = kinds(report)
    assert ("duplicate_bundle", None, "bank-a") in found
    assert ("untrusted_key", None, "gov") in found
    assert ("bundle_invalid", None, "bank-a") in found


def test_export_errors(tmp_path: Path) -> None:
    (a,) = make_nodes(tmp_path, ["bank-a"]).values()
    with pytest.raises(LedgerError):
        export_bundle(a, tmp_path / "missing-dir" / "x.bundle")
    with pytest.raises(InvalidInput):
        export_bundle(a, tmp_path / "x.bundle", certificate_pem="not a cert")
    with pytest.raises(InvalidInput):
        read_bundle_header(tmp_path / "bank-a.db")
    with pytest.raises(LedgerError):
        read_bundle_header(tmp_path / "nothing.bundle")


def test_job_refused_before_it_started_need_not_reach_every_party(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, NAMES)
    extra = {"parties": ",".join(NAMES)}
    nodes["bank-a"].append("job.requested", job_id="job-d", peer="gov", extra=extra)
    nodes["bank-a"].append("job.failed", job_id="job-d", peer="gov", error="denied",
                           extra=extra)
    nodes["gov"].append("job.requested", job_id="job-d", peer="bank-a", extra=extra)
    nodes["gov"].append("job.denied", job_id="job-d", peer="bank-a", extra=extra)
    report = replay(export_all(nodes, tmp_path))
    assert report.ok, [f.to_dict() for f in report.problems()]
    (job,) = report.jobs
    assert job.status == {"bank-a": "failed", "gov": "denied", "operator": "absent"}


def test_unreadable_bundle_is_a_finding(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, ["bank-a"])
    nodes["bank-a"].append("job.started", job_id="x")
    paths = export_all(nodes, tmp_path)
    junk = tmp_path / "junk.bundle"
    junk.write_text("not json\n")
    report = replay([*paths, junk])
    assert ("bundle_invalid", None, None) in kinds(report)
