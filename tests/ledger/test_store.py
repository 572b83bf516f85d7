"""The storage interface, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
import threading

import pytest

from ledger import open_store
from ledger.store import CheckpointRecord, EntryRecord, HeadMoved, LedgerStore, ReceiptRecord
from ledger.store.url import redact
from pcnode.errors import LedgerError, NotFound

ZERO = bytes(32)


def rec(i: int, **kw: object) -> EntryRecord:
    base = dict(index=i, body=f'{{"i":{i}}}'.encode(), leaf_hash=bytes([i % 256]) * 32,
                signature=b"s" * 64, event="job.started", time_us=1_000 + i,
                job_id=f"j{i % 3}", dataset="DS" if i % 2 else None, peer="gov")
    base.update(kw)
    return EntryRecord(**base)  # type: ignore[arg-type]


def test_append_read_and_head(store: LedgerStore) -> None:
    assert store.head() == (0, ZERO)
    assert store.size() == 0 and store.count() == 0 and store.index_bounds() is None
    assert store.last() is None
    store.append([rec(0), rec(1)], prev_hash=ZERO)
    store.append([rec(2)], prev_hash=rec(1).leaf_hash)
    assert store.head() == (3, rec(2).leaf_hash)
    assert store.size() == 3 and store.count() == 3 and store.index_bounds() == (0, 2)
    assert store.get(1) == rec(1)
    assert store.last() == rec(2)
    assert list(store.read()) == [rec(0), rec(1), rec(2)]
    assert list(store.read(1, 2)) == [rec(1)]
    assert list(store.leaf_hashes(1)) == [rec(1).leaf_hash, rec(2).leaf_hash]
    with pytest.raises(NotFound):
        store.get(3)


def test_append_refuses_a_fork(store: LedgerStore) -> None:
    store.append([rec(0)], prev_hash=ZERO)
    with pytest.raises(HeadMoved):
        store.append([rec(0)], prev_hash=ZERO)  # same index again
    with pytest.raises(HeadMoved):
        store.append([rec(1)], prev_hash=b"x" * 32)  # wrong prev
    with pytest.raises(HeadMoved):
        store.append([rec(2)], prev_hash=rec(0).leaf_hash)  # gap
    with pytest.raises(LedgerError):
        store.append([rec(1), rec(3)], prev_hash=rec(0).leaf_hash)  # not contiguous
    assert store.size() == 1


def test_a_refused_batch_writes_nothing(store: LedgerStore) -> None:
    """Multi-row appends (one guarded INSERT on SQLite) are all or none, and the head check
    sees the head as it was before the statement, not after its first row."""
    store.append([rec(i) for i in range(5)], prev_hash=ZERO)
    with pytest.raises(HeadMoved):
        store.append([rec(i) for i in range(4, 9)], prev_hash=rec(3).leaf_hash)  # overlaps
    with pytest.raises(HeadMoved):
        store.append([rec(i) for i in range(5, 9)], prev_hash=rec(3).leaf_hash)  # wrong prev
    assert store.head() == (5, rec(4).leaf_hash)
    big = [rec(i) for i in range(5, 205)]  # more rows than one INSERT statement carries
    store.append(big, prev_hash=rec(4).leaf_hash)
    assert store.head() == (205, rec(204).leaf_hash) and store.count() == 205
    assert list(store.read(5, 205)) == big


def test_streaming_many_rows(store: LedgerStore) -> None:
    rows = [rec(i) for i in range(12_345)]
    store.append(rows, prev_hash=ZERO)
    assert sum(1 for _ in store.read()) == 12_345
    assert sum(1 for _ in store.leaf_hashes()) == 12_345
    assert [r.index for r in store.find(start=12_000, limit=3)] == [12_000, 12_001, 12_002]


def test_find_filters(store: LedgerStore) -> None:
    store.append([rec(i) for i in range(30)], prev_hash=ZERO)
    assert [r.index for r in store.find(job_id="j1")] == list(range(1, 30, 3))
    assert [r.index for r in store.find(dataset="DS", job_id="j0")] == [3, 9, 15, 21, 27]
    assert [r.index for r in store.find(since_us=1_010, until_us=1_013)] == [10, 11, 12]
    assert [r.index for r in store.find(start=5, stop=8, peer="gov")] == [5, 6, 7]
    assert list(store.find(event="job.completed")) == []
    assert len(list(store.find(limit=7))) == 7


def test_checkpoints_and_receipts_are_written_atomically(store: LedgerStore) -> None:
    store.append([rec(0)], prev_hash=ZERO, checkpoint=CheckpointRecord(0, '{"a":1}', 0))
    store.append([rec(1)], prev_hash=rec(0).leaf_hash,
                 receipts=[ReceiptRecord("j1", "gov", '{"r":1}', 1)])
    with pytest.raises(LedgerError):  # duplicate checkpoint size: the whole append rolls back
        store.append([rec(2)], prev_hash=rec(1).leaf_hash,
                     checkpoint=CheckpointRecord(0, "{}", 2))
    assert store.size() == 2
    assert store.latest_checkpoint() == CheckpointRecord(0, '{"a":1}', 0)
    assert store.receipts() == [ReceiptRecord("j1", "gov", '{"r":1}', 1)]
    assert store.receipts("nope") == []


def test_reopen_keeps_everything(store_url: str) -> None:
    with open_store(store_url) as s:
        s.append([rec(0)], prev_hash=ZERO)
    with open_store(store_url, create=False) as s:
        assert s.get(0) == rec(0)


def test_threads_share_one_store(store: LedgerStore) -> None:
    store.append([rec(0)], prev_hash=ZERO)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(50):
                assert store.get(0) == rec(0)
                store.head()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_closed_store_says_so(store: LedgerStore) -> None:
    store.close()
    with pytest.raises(LedgerError, match="closed"):
        store.size()


@pytest.mark.parametrize("url", ["mysql://x@y/z", "nonsense", "sqlite:relative.db",
                                 "sqlite:////nonexistent-dir/ledger.db",
                                 "sqlite:///x.db?synchronous=OFF", "sqlite:///x.db?foo=1"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(LedgerError) as err:
        open_store(url)
    assert err.value.hint


def test_unreachable_postgres_is_a_clear_error() -> None:
    with pytest.raises(LedgerError) as err:
        open_store("postgresql://u:secret@127.0.0.1:1/db")
    assert "secret" not in str(err.value)
    assert "cannot connect" in err.value.message


def test_redact() -> None:
    assert redact("postgresql://u:pw@h:5/d") == "postgresql://u:***@h:5/d"
    assert redact("sqlite:///x") == "sqlite:///x"


def test_sqlite_is_wal_and_full(tmp_path: os.PathLike[str]) -> None:
    s = open_store(f"sqlite:///{tmp_path}/l.db")
    assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # type: ignore[attr-defined]
    assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # type: ignore[attr-defined]  # FULL
    s.close()


def test_sqlite_missing_ledger_without_create(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(LedgerError):
        open_store(f"sqlite:///{tmp_path}/none.db", create=False)
