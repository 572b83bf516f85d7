"""The Ledger on both backends: chaining, checkpoints, proofs, filters, ownership."""

from __future__ import annotations

import itertools

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import (
    Checkpoint,
    ConsistencyProof,
    InclusionProof,
    Ledger,
    LedgerStore,
    open_store,
    verify_consistency,
    verify_inclusion,
    verify_store,
)
from ledger.entry import ZERO_HASH
from ledger.merkle import root_from_leaf_hashes
from pcnode.errors import InvalidInput, LedgerError, LedgerIntegrityError, NotFound

from .conftest import fill


def test_entries_chain(ledger: Ledger) -> None:
    fill(ledger, 5)
    entries = list(ledger.entries())
    assert [e.index for e in entries] == list(range(5))
    assert entries[0].prev_hash == ZERO_HASH
    for a, b in itertools.pairwise(entries):
        assert b.prev_hash == a.entry_hash
    assert len(ledger) == 5


def test_checkpoint_size_is_well_defined(ledger: Ledger, key: Ed25519PrivateKey) -> None:
    fill(ledger, 7)
    cp = ledger.checkpoint()
    assert cp.tree_size == 7 and cp.node == "bank-a"
    leaves = [e.entry_hash for e in ledger.entries(stop=7)]
    assert cp.root_hash == root_from_leaf_hashes(leaves)
    cp.verify(key.public_key())
    recorded = ledger.entry(7)
    assert recorded.event == "checkpoint"
    assert recorded.extra["tree_size"] == 7 and recorded.extra["root"] == cp.root_hash.hex()
    assert ledger.latest_checkpoint() == cp
    cp2 = ledger.checkpoint()  # the checkpoint entry is covered by the next checkpoint
    assert cp2.tree_size == 8
    assert ledger.checkpoints() == [cp2, cp]
    assert Checkpoint.from_json(cp2.to_json()) == cp2
    assert verify_store(ledger.store, key.public_key(), cp).ok


def test_checkpoint_of_empty_ledger(ledger: Ledger) -> None:
    cp = ledger.checkpoint()
    assert cp.tree_size == 0
    assert len(ledger) == 1


def test_proofs_offline(ledger: Ledger, key: Ed25519PrivateKey) -> None:
    fill(ledger, 10)
    cp_old = ledger.checkpoint()
    fill(ledger, 13, start=10)
    cp_new = ledger.checkpoint()
    for i in (0, 5, 9):
        proof = InclusionProof.from_json(ledger.inclusion_proof(i, cp_old.tree_size).to_json())
        verify_inclusion(proof, checkpoint=cp_old, public_key=key.public_key())
        verify_inclusion(proof, root=cp_old.root_hash)
    latest = ledger.inclusion_proof(3)
    assert latest.tree_size == len(ledger)
    verify_inclusion(latest)  # self-consistent against its own root
    cons = ConsistencyProof.from_json(
        ledger.consistency_proof(cp_old.tree_size, cp_new.tree_size).to_json())
    verify_consistency(cons, old=cp_old, new=cp_new, public_key=key.public_key())
    assert len(cons.path) <= 2 * cp_new.tree_size.bit_length()


def test_tampered_proofs_fail_with_evidence(ledger: Ledger, key: Ed25519PrivateKey) -> None:
    fill(ledger, 10)
    cp = ledger.checkpoint()
    proof = ledger.inclusion_proof(4, cp.tree_size)
    bad_body = proof.entry_body.replace(b'"rows_in":104', b'"rows_in":105')  # type: ignore[union-attr]
    forged = InclusionProof(4, cp.tree_size, proof.leaf_hash, proof.root_hash, proof.path, bad_body,
                            proof.signature)
    with pytest.raises(LedgerIntegrityError) as err:
        verify_inclusion(forged, checkpoint=cp)
    assert err.value.details["index"] == 4 and err.value.details["check"] == "content"
    wrong_path = InclusionProof(4, cp.tree_size, proof.leaf_hash, proof.root_hash,
                                proof.path[::-1], None, None)
    with pytest.raises(LedgerIntegrityError) as err:
        verify_inclusion(wrong_path, checkpoint=cp)
    assert err.value.details["expected"] == cp.root_hash.hex()
    other = Ed25519PrivateKey.generate()
    with pytest.raises(LedgerIntegrityError):
        verify_inclusion(proof, checkpoint=cp, public_key=other.public_key())
    with pytest.raises(InvalidInput):
        verify_inclusion(ledger.inclusion_proof(4), checkpoint=cp)  # size differs
    cons = ledger.consistency_proof(3, 10)
    with pytest.raises(LedgerIntegrityError):
        verify_consistency(ConsistencyProof(3, 10, cons.old_root, cons.new_root,
                                            cons.path[:-1]))


def test_proof_arguments(ledger: Ledger) -> None:
    fill(ledger, 3)
    with pytest.raises(InvalidInput):
        ledger.inclusion_proof(3)
    with pytest.raises(InvalidInput):
        ledger.inclusion_proof(0, 4)
    with pytest.raises(InvalidInput):
        ledger.consistency_proof(4, 3)
    with pytest.raises(NotFound):
        ledger.entry(99)


def test_filters(ledger: Ledger) -> None:
    fill(ledger, 6)
    ledger.append("dataset.registered", dataset="DS-002", time="2030-01-01T00:00:00Z")
    assert [e.index for e in ledger.entries(job_id="job-0002")] == [2]
    assert [e.index for e in ledger.entries(event="dataset.registered")] == [6]
    assert [e.index for e in ledger.entries(dataset="DS-002")] == [6]
    assert [e.index for e in ledger.entries(since="2029-12-31T00:00:00Z")] == [6]
    assert len(list(ledger.entries(until="2029-12-31T00:00:00+00:00"))) == 6
    assert [e.index for e in ledger.entries(2, 4)] == [2, 3]
    assert [e.index for e in ledger.entries(peer="gov", limit=2)] == [0, 1]


def test_append_many_is_atomic(ledger: Ledger) -> None:
    fill(ledger, 2)
    out = ledger.append_many([("job.started", {"job_id": "a"}), ("job.failed", {"job_id": "a"})])
    assert [e.index for e in out] == [2, 3]
    with pytest.raises(InvalidInput):
        ledger.append_many([("job.started", {"job_id": "b"}), ("job.failed", {"bad": 1})])
    assert len(ledger) == 4
    assert ledger.verify().ok


def test_reserved_and_invalid_events(ledger: Ledger) -> None:
    for event in ("checkpoint", "receipt.received", "Job.Started", "job started", ""):
        with pytest.raises(InvalidInput):
            ledger.append(event)


def test_reopen_continues_the_chain(store_url: str, key: Ed25519PrivateKey) -> None:
    with open_store(store_url) as s:
        fill(Ledger(s, key, "bank-a"), 3)
    with open_store(store_url) as s:
        again = Ledger(s, key, "bank-a")
        again.append("job.started", job_id="x")
        again.checkpoint()
        assert again.verify().ok and len(again) == 5


def test_refuses_another_nodes_ledger(store_url: str, key: Ed25519PrivateKey) -> None:
    with open_store(store_url) as s:
        fill(Ledger(s, key, "bank-a"), 1)
    with open_store(store_url) as s:
        with pytest.raises(LedgerError, match="written by node"):
            Ledger(s, key, "bank-b")
        with pytest.raises(LedgerError, match="another key"):
            Ledger(s, Ed25519PrivateKey.generate(), "bank-a")


def test_two_writers_keep_one_chain(store_url: str, key: Ed25519PrivateKey) -> None:
    """Two Ledger objects (think: node + CLI) on two connections to one store."""
    with open_store(store_url) as s1, open_store(store_url) as s2:
        a, b = Ledger(s1, key, "bank-a"), Ledger(s2, key, "bank-a")
        a.append("job.started", job_id="1")
        b.append("job.started", job_id="2")  # b's cached head is stale: it must rebuild
        a.append("job.started", job_id="3")
        cp = b.checkpoint()
        a.append("job.completed", job_id="1")
        assert cp.tree_size == 3
        assert [e.job_id for e in a.entries()] == ["1", "2", "3", None, "1"]
        assert a.inclusion_proof(1).tree_size == 5
        report = verify_store(s1, key.public_key(), cp)
        assert report.ok, report.errors


def test_verify_report(ledger: Ledger, key: Ed25519PrivateKey) -> None:
    fill(ledger, 4)
    cp = ledger.checkpoint()
    report = verify_store(ledger.store, key.public_key(), cp, node="bank-a")
    assert report.ok and report.entries == 5 and report.tree_size == 5
    assert report.checkpoints_checked >= 2  # supplied + stored + the in-log entry
    d = report.to_dict()
    assert d["ok"] and d["errors"] == []
    assert report.first_error is None
    report.raise_if_failed()


def test_wrong_public_key_fails_everything(ledger: Ledger) -> None:
    fill(ledger, 3)
    report = verify_store(ledger.store, Ed25519PrivateKey.generate().public_key())
    assert not report.ok
    assert report.first_error is not None
    assert report.first_error.details["index"] == 0
    assert report.first_error.details["check"] == "signature"


def test_bad_signing_key_type(store: LedgerStore) -> None:
    with pytest.raises(InvalidInput):
        Ledger(store, "not a key", "bank-a")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Ledger(store, Ed25519PrivateKey.generate(), "bad name!")
