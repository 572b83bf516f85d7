"""Parallel verification (spawned worker processes) agrees with the in-process verifier."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import Ledger, open_store, verify_store
from ledger.ed25519 import available_backends, make_checker
from ledger.merkle import hash_leaf

from .conftest import raw_sql

N = 2400
CHUNK = 500


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Ed25519PrivateKey]:
    url = f"sqlite:///{tmp_path_factory.mktemp('par') / 'ledger.db'}?synchronous=NORMAL"
    key = Ed25519PrivateKey.generate()
    with open_store(url) as store:
        ledger = Ledger(store, key, "bank-a")
        for start in range(0, N, 600):
            ledger.append_many(("job.completed", {"job_id": f"j{i}", "rows_in": i})
                               for i in range(start, start + 600))
            ledger.checkpoint()
    return url, key


def test_parallel_matches_serial(big: tuple[str, Ed25519PrivateKey]) -> None:
    url, key = big
    with open_store(url) as store:
        serial = verify_store(store, key.public_key(), workers=1)
        parallel = verify_store(store, key.public_key(), workers=2, chunk_rows=CHUNK)
    assert serial.ok and parallel.ok, parallel.errors[:3]
    assert parallel.workers == 2
    assert (parallel.entries, parallel.root_hash) == (serial.entries, serial.root_hash)
    assert parallel.checkpoints_checked == serial.checkpoints_checked > 0


def test_parallel_finds_tampering_at_chunk_edges(big: tuple[str, Ed25519PrivateKey],
                                                 tmp_path: Path) -> None:
    url, key = big
    copy = tmp_path / "copy.db"
    with open_store(url) as src:  # work on a copy so the module fixture stays intact
        src._conn.execute(f"VACUUM INTO '{copy}'")  # type: ignore[attr-defined]
    curl = f"sqlite:///{copy}"
    body = bytes(raw_sql(curl, "SELECT body FROM ledger_entries WHERE idx = 499")[0][0])
    edited = body.replace(b'"rows_in":', b'"rows_in":1')
    raw_sql(curl, "UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE idx = 499",
            (edited, hash_leaf(edited)))
    raw_sql(curl, "UPDATE ledger_entries SET body = ? WHERE idx = 999",  # edit, no re-hash
            (bytes(raw_sql(curl, "SELECT body FROM ledger_entries WHERE idx = 998")[0][0]),))
    raw_sql(curl, "DELETE FROM ledger_entries WHERE idx = 1200")
    raw_sql(curl, "DELETE FROM ledger_entries WHERE idx >= 1500 AND idx < 2000")  # a whole range
    raw_sql(curl, "DELETE FROM ledger_entries WHERE idx >= 2000 AND idx < 2050")  # a range start
    with open_store(curl) as store:
        report = verify_store(store, key.public_key(), workers=2, chunk_rows=CHUNK)
        serial = verify_store(store, key.public_key(), workers=1)
    got = [(e.details["index"], e.details["check"]) for e in report.errors]
    assert got[0] == (499, "signature")
    assert report.errors[0].details["expected"] == hash_leaf(body).hex()  # from entry 500
    assert (999, "content") in got
    assert (1000, "link") not in got  # the edit is reported once, at 999, as in serial mode
    assert {(1200, "index"), (1500, "index"), (2000, "index")} <= set(got)
    want = [(e.details["index"], e.details["check"]) for e in serial.errors]
    assert want[0] == got[0] and (1000, "link") not in want
    assert {(999, "content"), (1200, "index"), (1500, "index")} <= set(want)


def test_backends_agree() -> None:
    key = Ed25519PrivateKey.generate()
    message = b"pcnode/ledger/entry/v1\x00" + bytes(32)
    good = key.sign(message)
    bad = bytes([good[0] ^ 1]) + good[1:]
    for backend in available_backends():
        check = make_checker(key.public_key(), backend)
        assert check(good, message)
        assert not check(bad, message)
        assert not check(good[:63], message)
        assert not check(good, message + b"x")
