"""Receipts: signed (job, transcript, checkpoint) statements exchanged after a joint job."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import Ledger, Receipt, make_receipt, open_store, verify_receipt
from pcnode.errors import InvalidInput, LedgerIntegrityError

T = "ab" * 32


@pytest.fixture
def pair() -> tuple[Ledger, Ledger]:
    return (Ledger(open_store("sqlite:///:memory:"), Ed25519PrivateKey.generate(), "bank-a"),
            Ledger(open_store("sqlite:///:memory:"), Ed25519PrivateKey.generate(), "gov"))


def test_round_trip_and_record(pair: tuple[Ledger, Ledger]) -> None:
    a, b = pair
    a.append("job.completed", job_id="j1", peer="gov", transcript_hash=T)
    receipt = a.make_receipt("j1", T)
    assert receipt.checkpoint.tree_size == 1  # pins a's job.completed entry
    wire = Receipt.from_json(receipt.to_json())
    assert wire == receipt and Receipt.from_dict(receipt.to_dict()) == receipt
    verify_receipt(wire, a.public_key, job_id="j1", transcript_hash=T)
    entry = b.record_receipt(wire, a.public_key)
    assert (entry.event, entry.job_id, entry.peer, entry.transcript_hash) == (
        "receipt.received", "j1", "bank-a", T)
    assert Receipt.from_json(entry.extra["receipt"]) == receipt
    assert b.receipts("j1") == [receipt]
    assert b.verify().ok


def test_bad_receipts_are_refused(pair: tuple[Ledger, Ledger]) -> None:
    a, b = pair
    receipt = a.make_receipt("j1", T)
    with pytest.raises(LedgerIntegrityError):
        verify_receipt(receipt, b.public_key)  # wrong key
    with pytest.raises(LedgerIntegrityError):
        b.record_receipt(dataclasses.replace(receipt, transcript_hash="cd" * 32), a.public_key)
    with pytest.raises(LedgerIntegrityError):
        verify_receipt(receipt, a.public_key, transcript_hash="cd" * 32)
    with pytest.raises(LedgerIntegrityError):
        verify_receipt(receipt, a.public_key, job_id="j2")
    other_cp = b.checkpoint()
    with pytest.raises(InvalidInput):
        make_receipt(a._key, "bank-a", "j1", T, other_cp)  # another node's checkpoint
    with pytest.raises(InvalidInput):
        a.record_receipt(receipt)  # its own receipt
    assert len(b) == 1  # only b's checkpoint entry; nothing was recorded


@pytest.mark.parametrize("text", ["{}", "[]", "nope", '{"kind":"pcnode.receipt","v":1}'])
def test_malformed_receipt_json(text: str) -> None:
    with pytest.raises(InvalidInput):
        Receipt.from_json(text)
