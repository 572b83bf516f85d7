"""Entry fields, validation, canonical body, hash and signature."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import Entry, Ledger, open_store
from ledger.encoding import canonical_json
from ledger.entry import (
    ENTRY_SIGNING_DOMAIN,
    OPTIONAL_FIELDS,
    ZERO_HASH,
    decode_body,
    make_body,
    validate_fields,
)
from ledger.events import format_parties, parse_parties
from ledger.merkle import hash_leaf
from pcnode.errors import InvalidInput

ALL_FIELDS = {
    "user": "alice", "grant_id": "G-1", "authorised_by": "officer-7", "peer": "gov",
    "dataset": "DS-001", "operation": "stats", "mode": "sum", "purpose": "信用评估",
    "job_id": "j-1", "status": "completed", "error": "none", "rows_in": 10, "rows_out": 2,
    "bytes_in": 1000, "bytes_out": 20, "params_digest": "aa" * 32, "result_digest": "bb" * 32,
    "transcript_hash": "cc" * 32,
}


def test_every_audit_field_round_trips() -> None:
    assert set(ALL_FIELDS) == set(OPTIONAL_FIELDS)
    key = Ed25519PrivateKey.generate()
    ledger = Ledger(open_store("sqlite:///:memory:"), key, "bank-a")
    entry = ledger.append("job.completed", **ALL_FIELDS,
                          extra={"epsilon": "0.5", "k": 5, "ok": True, "none": None,
                                 "parties": ["gov", "bank-a"]})
    again = ledger.entry(0)
    assert again == entry
    for name, value in ALL_FIELDS.items():
        assert getattr(again, name) == value
    assert dict(again.extra) == {"epsilon": "0.5", "k": 5, "ok": True, "none": None,
                                 "parties": "bank-a,gov"}
    assert again.parties == ["bank-a", "gov"]
    # hash and signature are exactly as documented
    assert again.entry_hash == hashlib.sha256(b"\x00" + again.body()).digest()
    assert again.prev_hash == ZERO_HASH
    key.public_key().verify(again.signature, ENTRY_SIGNING_DOMAIN + again.entry_hash)
    d = again.to_dict()
    assert d["time"].endswith("Z") and d["entry_hash"] == again.entry_hash.hex()


def test_body_is_canonical_and_binds_prev() -> None:
    fields, extra = validate_fields({"job_id": "j", "rows_in": 3, "extra": {"b": 1, "a": "x"}})
    body = make_body(7, b"\x11" * 32, "job.started", 1_700_000_000_000_000, "bank-a", fields,
                     extra)
    raw = canonical_json(body)
    assert raw == (b'{"event":"job.started","extra":{"a":"x","b":1},"index":7,"job_id":"j",'
                   b'"node":"bank-a","prev":"' + b"11" * 32 + b'","rows_in":3,'
                   b'"time":"2023-11-14T22:13:20.000000Z","v":1}')
    entry = Entry.from_body(raw, b"")
    assert entry.body() == raw
    other = make_body(7, b"\x12" * 32, "job.started", 1_700_000_000_000_000, "bank-a", fields,
                      extra)
    assert hash_leaf(canonical_json(other)) != hash_leaf(raw)


@pytest.mark.parametrize("fields", [
    {"nope": 1}, {"rows_in": -1}, {"rows_in": True}, {"rows_in": "3"}, {"user": 5},
    {"user": "x" * 257}, {"peer": "bad name"}, {"peer": "a,,b"}, {"params_digest": "XYZ"},
    {"transcript_hash": "ab"}, {"extra": {"Bad": 1}}, {"extra": {"x": 0.5}},
    {"extra": {"x": [1]}}, {"extra": {"x": 2**60}}, {"extra": "nope"},
    {"extra": {f"k{i}": i for i in range(65)}},
])
def test_invalid_fields_are_refused(fields: dict) -> None:
    with pytest.raises(InvalidInput):
        validate_fields(fields)


def test_digest_bytes_become_hex() -> None:
    fields, _ = validate_fields({"params_digest": b"\x01" * 32, "peer": "a,b"})
    assert fields == {"params_digest": "01" * 32, "peer": "a,b"}


def test_float_error_says_how_to_fix() -> None:
    with pytest.raises(InvalidInput) as err:
        validate_fields({"extra": {"epsilon": 0.1}})
    assert "decimal string" in err.value.hint


@pytest.mark.parametrize("mutate", [
    lambda b: b.pop("node"), lambda b: b.update(extra={}), lambda b: b.update(v=2),
    lambda b: b.update(index=True), lambda b: b.update(rows_in=1.0), lambda b: b.update(x=1),
    lambda b: b.update(prev="AB" * 32), lambda b: b.update(time="2024-01-01T00:00:00Z"),
    lambda b: b.update(extra={"parties": "b,a"}), lambda b: b.update(event="Job"),
])
def test_decode_rejects_bad_bodies(mutate) -> None:
    body = make_body(0, ZERO_HASH, "job.started", 0, "bank-a", {"rows_in": 1}, {})
    mutate(body)
    with pytest.raises(InvalidInput):
        decode_body(body, b"", b"")


def test_parties_helpers() -> None:
    assert format_parties(["b", "a", "b"]) == "a,b"
    assert parse_parties('["x", "y"]') == ["x", "y"]
    assert parse_parties("y, x") == ["x", "y"]
    assert parse_parties(None) == []
    with pytest.raises(InvalidInput):
        parse_parties("a b")
