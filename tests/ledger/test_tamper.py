"""Tamper matrix: every kind of tampering is detected, naming the entry, with evidence.

Each test writes a ledger, saves a checkpoint "off-site" (as an auditor would
with ``pcnode ledger checkpoint --out``), tampers with the database directly,
and runs the verifier with the node's public key.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import Checkpoint, Ledger, LedgerStore, VerifyReport, open_store, verify_store
from ledger.encoding import canonical_json
from ledger.entry import make_body, sign_leaf
from ledger.merkle import hash_leaf

from .conftest import fill

N = 30
Sql = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def written(ledger: Ledger) -> tuple[Ledger, Checkpoint]:
    """30 entries with a checkpoint after 20; returns the ledger and the saved checkpoint."""
    fill(ledger, 20)
    saved = ledger.checkpoint()  # covers 0..19; its own entry is 20
    fill(ledger, N - 21, start=20)
    assert len(ledger) == N
    return ledger, Checkpoint.from_json(saved.to_json())


def check(store: LedgerStore, key: Ed25519PrivateKey, cp: Checkpoint | None) -> VerifyReport:
    report = verify_store(store, key.public_key(), cp, node="bank-a")
    assert not report.ok
    return report


def first(report: VerifyReport) -> dict[str, Any]:
    assert report.first_error is not None
    return report.first_error.details


def body(sql: Sql, i: int) -> bytes:
    return bytes(sql("SELECT body FROM ledger_entries WHERE idx = ?", (i,))[0][0])


def test_intact_ledger_verifies(written: tuple[Ledger, Checkpoint], key: Ed25519PrivateKey) -> None:
    ledger, cp = written
    report = verify_store(ledger.store, key.public_key(), cp, node="bank-a")
    assert report.ok, [e.to_dict() for e in report.errors]
    assert report.entries == N


def test_single_byte_edit_of_every_entry(written: tuple[Ledger, Checkpoint],
                                         key: Ed25519PrivateKey, sql: Sql) -> None:
    """Flip one random bit of each entry in turn: verify names exactly that entry."""
    ledger, cp = written
    rng = random.Random(1234)
    for i in range(N):
        original = body(sql, i)
        data = bytearray(original)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        sql("UPDATE ledger_entries SET body = ? WHERE idx = ?", (bytes(data), i))
        d = first(check(ledger.store, key, cp))
        assert (d["index"], d["check"]) == (i, "content")
        assert d["expected"] == hash_leaf(original).hex()
        assert d["actual"] == hash_leaf(bytes(data)).hex()
        sql("UPDATE ledger_entries SET body = ? WHERE idx = ?", (original, i))
    assert verify_store(ledger.store, key.public_key(), cp).ok


def test_edit_field_value(written: tuple[Ledger, Checkpoint], key: Ed25519PrivateKey,
                          sql: Sql) -> None:
    ledger, cp = written
    original = body(sql, 7)
    edited = original.replace(b'"rows_out":7', b'"rows_out":9')
    assert edited != original
    sql("UPDATE ledger_entries SET body = ? WHERE idx = ?", (edited, 7))
    report = check(ledger.store, key, cp)
    d = first(report)
    assert (d["index"], d["check"]) == (7, "content")
    assert d["expected"] == hash_leaf(original).hex()
    assert d["actual"] == hash_leaf(edited).hex()
    assert "entry 7" in report.first_error.message  # type: ignore[union-attr]


def test_edit_and_rehash(written: tuple[Ledger, Checkpoint], key: Ed25519PrivateKey,
                         sql: Sql) -> None:
    """The attacker also updates the stored hash: the signature and the next link give it away."""
    ledger, cp = written
    original = body(sql, 4)
    edited = original.replace(b'"rows_in":104', b'"rows_in":999')
    sql("UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE idx = ?",
        (edited, hash_leaf(edited), 4))
    report = check(ledger.store, key, cp)
    d = first(report)
    assert (d["index"], d["check"]) == (4, "signature")
    assert d["expected"] == hash_leaf(original).hex()  # what entry 5 links to
    assert d["actual"] == hash_leaf(edited).hex()
    assert {(e.details["index"], e.details["check"]) for e in report.errors} >= {
        (4, "signature"), (5, "link")}


def test_edit_filter_column(written: tuple[Ledger, Checkpoint], key: Ed25519PrivateKey,
                            sql: Sql) -> None:
    ledger, cp = written
    sql("UPDATE ledger_entries SET dataset = ? WHERE idx = ?", ("DS-OTHER", 12))
    d = first(check(ledger.store, key, cp))
    assert (d["index"], d["check"]) == (12, "columns")
    assert "DS-OTHER" in d["actual"] and "DS-001" in d["expected"]


def test_edit_signature(written: tuple[Ledger, Checkpoint], key: Ed25519PrivateKey,
                        sql: Sql) -> None:
    ledger, cp = written
    sig = bytearray(sql("SELECT signature FROM ledger_entries WHERE idx = 3")[0][0])
    sig[10] ^= 0x40
    sql("UPDATE ledger_entries SET signature = ? WHERE idx = 3", (bytes(sig),))
    d = first(check(ledger.store, key, cp))
    assert (d["index"], d["check"]) == (3, "signature")


def test_delete_entry(written: tuple[Ledger, Checkpoint], key: Ed25519PrivateKey,
                      sql: Sql) -> None:
    ledger, cp = written
    sql("DELETE FROM ledger_entries WHERE idx = 9")
    report = check(ledger.store, key, cp)
    d = first(report)
    assert (d["index"], d["check"], d["expected"], d["actual"]) == (9, "index", "9", "10")
    assert any(e.details["check"] == "root" for e in report.errors)


def test_delete_and_renumber(written: tuple[Ledger, Checkpoint], key: Ed25519PrivateKey,
                             sql: Sql) -> None:
    """Rows after the deleted one are shifted down so there is no gap."""
    ledger, cp = written
    sql("DELETE FROM ledger_entries WHERE idx = 9")
    for i in range(10, N):
        sql("UPDATE ledger_entries SET idx = ? WHERE idx = ?", (i - 1, i))
    report = check(ledger.store, key, cp)
    d = first(report)
    assert d["index"] == 9 and d["check"] in ("position", "link")
    assert {e.details["check"] for e in report.errors if e.details["index"] == 9} >= {
        "position", "link"}


def test_reorder(written: tuple[Ledger, Checkpoint], key: Ed25519PrivateKey, sql: Sql) -> None:
    ledger, cp = written
    sql("UPDATE ledger_entries SET idx = -1 WHERE idx = 14")
    sql("UPDATE ledger_entries SET idx = 14 WHERE idx = 15")
    sql("UPDATE ledger_entries SET idx = 15 WHERE idx = -1")
    report = check(ledger.store, key, cp)
    d = first(report)
    assert d["index"] == 14
    checks = {e.details["check"] for e in report.errors if e.details["index"] == 14}
    assert "position" in checks
    pos = next(e for e in report.errors if e.details["index"] == 14
               and e.details["check"] == "position")
    assert (pos.details["expected"], pos.details["actual"]) == ("14", "15")


def test_insert_forged_entry(written: tuple[Ledger, Checkpoint], key: Ed25519PrivateKey,
                             sql: Sql) -> None:
    """A forger without the node key inserts a well-formed entry and shifts the rest up."""
    ledger, cp = written
    prev = ledger.entry(5).entry_hash
    forger = Ed25519PrivateKey.generate()
    forged = canonical_json(make_body(6, prev, "job.completed", 1_700_000_000_000_000, "bank-a",
                                      {"job_id": "fake"}, {}))
    leaf = hash_leaf(forged)
    for i in range(N - 1, 5, -1):
        sql("UPDATE ledger_entries SET idx = ? WHERE idx = ?", (i + 1, i))
    sql("INSERT INTO ledger_entries (idx, body, leaf_hash, signature, event, time_us, job_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (6, forged, leaf, sign_leaf(forger, leaf), "job.completed", 1_700_000_000_000_000,
         "fake"))
    report = check(ledger.store, key, cp)
    d = first(report)
    assert (d["index"], d["check"]) == (6, "signature")
    assert any(e.details["index"] == 7 for e in report.errors)  # old entry 6 now at 7


def test_truncate_below_checkpoint(written: tuple[Ledger, Checkpoint], key: Ed25519PrivateKey,
                                   sql: Sql) -> None:
    ledger, cp = written
    sql("DELETE FROM ledger_entries WHERE idx >= 15")
    sql("DELETE FROM ledger_checkpoints")  # a careful attacker removes these too
    report = check(ledger.store, key, cp)
    d = first(report)
    assert (d["index"], d["check"]) == (15, "truncation")
    assert d["expected"] == cp.root_hash.hex()
    assert "15" in report.first_error.message and "20" in report.first_error.message  # type: ignore[union-attr]
    # without the saved checkpoint a clean truncation cannot be seen: that is what it is for
    assert verify_store(ledger.store, key.public_key()).ok


def test_truncate_then_rewrite_by_the_node(written: tuple[Ledger, Checkpoint],
                                           key: Ed25519PrivateKey, sql: Sql,
                                           store_url: str) -> None:
    """Even the node itself cannot rewrite history below a checkpoint it gave out."""
    _ledger, cp = written
    sql("DELETE FROM ledger_entries WHERE idx >= 10")
    sql("DELETE FROM ledger_checkpoints")
    with open_store(store_url) as s:
        fill(Ledger(s, key, "bank-a"), 20, start=500)
        report = check(s, key, cp)
    d = first(report)
    assert (d["index"], d["check"]) == (20, "root")
    assert d["expected"] == cp.root_hash.hex() and d["actual"] != d["expected"]


def test_forged_checkpoint_file(written: tuple[Ledger, Checkpoint],
                                key: Ed25519PrivateKey) -> None:
    ledger, cp = written
    forged = Checkpoint(cp.node, cp.tree_size, bytes(32), cp.time, cp.signature)
    d = first(check(ledger.store, key, forged))
    assert d["check"] == "checkpoint_signature"


def test_append_refuses_tampered_head(written: tuple[Ledger, Checkpoint],
                                      key: Ed25519PrivateKey, sql: Sql, store_url: str) -> None:
    last = N - 1
    edited = body(sql, last).replace(b'"status":"completed"', b'"status":"cancelled"')
    sql("UPDATE ledger_entries SET body = ? WHERE idx = ?", (edited, last))
    with open_store(store_url) as s, pytest.raises(Exception) as err:
        Ledger(s, key, "bank-a")
    assert err.value.details["index"] == last  # type: ignore[attr-defined]


def test_checkpoint_entry_with_a_wrong_root(ledger: Ledger, key: Ed25519PrivateKey) -> None:
    """A (buggy) node records a checkpoint entry whose root is not the log's: verify says so."""
    fill(ledger, 5)
    size, prev = ledger.store.head()
    wrong = Checkpoint.create(key, "bank-a", size, bytes(32), 1_700_000_000_000_000)
    record, _ = ledger._seal(size, prev, "checkpoint", wrong.time, {},
                             {"tree_size": size, "root": wrong.root_hash.hex(),
                              "signature": wrong.signature.hex()})
    ledger.store.append([record], prev_hash=prev)
    report = verify_store(ledger.store, key.public_key())
    d = first(report)
    assert (d["index"], d["check"]) == (5, "root")
    assert d["expected"] == bytes(32).hex()
