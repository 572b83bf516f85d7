"""Concurrency: many threads appending keep one valid chain, and group commit
(requests sealed and written together) never lets one request's failure or a
batch boundary show in another request's result."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import Entry, Ledger, open_store, verify_store
from pcnode.errors import InvalidInput, LedgerError

THREADS = 8
PER_THREAD = 200


def _run_all(work: Callable[[int], None], n: int) -> None:
    """Run ``work(0..n-1)`` in ``n`` threads and wait for all of them."""
    threads = [threading.Thread(target=work, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def test_threads_keep_one_chain(ledger: Ledger, key: Ed25519PrivateKey) -> None:
    errors: list[BaseException] = []
    returned: list[list[int]] = [[] for _ in range(THREADS)]
    barrier = threading.Barrier(THREADS)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(PER_THREAD):
                entry = ledger.append("job.completed", job_id=f"t{t}-{i:03d}", rows_in=i)
                returned[t].append(entry.index)
                if t == 0 and i % 50 == 49:
                    ledger.checkpoint()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    _run_all(work, THREADS)
    assert not errors, errors
    checkpoints = PER_THREAD // 50
    assert len(ledger) == THREADS * PER_THREAD + checkpoints

    entries = list(ledger.entries())
    jobs = Counter(e.job_id for e in entries if e.event == "job.completed")
    assert len(jobs) == THREADS * PER_THREAD and set(jobs.values()) == {1}
    # each thread saw its own appends in order, at the indexes the ledger holds
    for t in range(THREADS):
        assert returned[t] == sorted(returned[t])
        for i, index in enumerate(returned[t]):
            assert entries[index].job_id == f"t{t}-{i:03d}"
    report = verify_store(ledger.store, key.public_key(), ledger.checkpoint(), node="bank-a")
    assert report.ok, [e.to_dict() for e in report.errors[:3]]


def test_two_processes_worth_of_writers(store_url: str, key: Ed25519PrivateKey) -> None:
    """Two Ledger objects on separate connections, each with threads, still one chain."""
    with open_store(store_url) as s1, open_store(store_url) as s2:
        ledgers = [Ledger(s1, key, "bank-a"), Ledger(s2, key, "bank-a")]
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(50):
                    ledgers[n % 2].append("job.started", job_id=f"{n}-{i}")
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        assert s1.size() == 200
        assert verify_store(s1, key.public_key(), ledgers[1].checkpoint()).ok


def test_every_returned_entry_is_durable(store_url: str, key: Ed25519PrivateKey) -> None:
    """Concurrent append, append_many and record_receipt: every entry returned is, after a
    reopen on a new connection, stored exactly as returned (hash, signature, chain)."""
    from ledger import Receipt, make_receipt
    from ledger.checkpoint import Checkpoint

    peer_key = Ed25519PrivateKey.generate()
    receipt = make_receipt(peer_key, "gov", "job-r", "ab" * 32,
                           Checkpoint.create(peer_key, "gov", 0, bytes(32), 1_700_000_000_000_000))
    store = open_store(store_url)
    ledger = Ledger(store, key, "bank-a")
    returned: list[list[Entry]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(60):
                if i % 20 == 7:
                    returned[t].extend(ledger.append_many(
                        ("job.completed", {"job_id": f"t{t}-{i}-{k}"}) for k in range(3)))
                elif t == 1 and i == 30:
                    returned[t].append(ledger.record_receipt(Receipt.from_json(receipt.to_json())))
                else:
                    returned[t].append(ledger.append("job.started", job_id=f"t{t}-{i}",
                                                     user="\u00e9l\u00e8ve"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    _run_all(work, THREADS)
    assert not errors, errors
    stats = ledger.commit_stats()
    store.close()

    every = sorted((e for entries in returned for e in entries), key=lambda e: e.index)
    assert [e.index for e in every] == list(range(len(every)))  # no gaps, no duplicates
    assert stats["entries"] == len(every) and stats["transactions"] <= len(every)
    for t in range(THREADS):  # each thread's own appends in call order
        assert [e.index for e in returned[t]] == sorted(e.index for e in returned[t])
    with open_store(store_url) as again:
        reopened = Ledger(again, key, "bank-a")
        for e in every:
            stored = reopened.entry(e.index)
            assert stored == e, e.index
            assert again.get(e.index).signature == e.signature
        for prev, nxt in itertools.pairwise(every):
            assert nxt.prev_hash == prev.entry_hash
        assert [r.job_id for r in reopened.receipts()] == ["job-r"]
        assert verify_store(again, key.public_key(), reopened.checkpoint(), node="bank-a").ok


def _run_queued(ledger: Ledger, *groups: list[Callable[[], Any]]) -> list[Any]:
    """Run every call in its own thread while nothing is sealed, group after group once the
    previous one is queued, then let the pipeline go: the queued requests are sealed and
    written together (a checkpoint ends a batch). Returns each result or exception."""
    calls = [call for group in groups for call in group]
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            results[i] = exc

    with ledger._mutex:
        ledger._sealer_on = True  # as if a sealer were busy: requests queue up
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    started = 0
    for group in groups:
        for th in threads[started:started + len(group)]:
            th.start()
        started += len(group)
        deadline = time.monotonic() + 10
        while len(ledger._pending) + sum(isinstance(r, BaseException) for r in results) \
                < started:
            assert time.monotonic() < deadline, "the requests did not queue up"
            time.sleep(0.001)
    with ledger._mutex:
        ledger._sealer_on = False
        ledger._roles_locked(None)
    for th in threads:
        th.join()
    return results


def test_an_invalid_request_fails_alone(ledger: Ledger, key: Ed25519PrivateKey) -> None:
    """A value that only fails when encoded (a lone surrogate), among concurrent appends."""
    calls: list[Callable[[], Any]] = [lambda i=i: ledger.append("job.completed", job_id=f"ok-{i}")
                                      for i in range(THREADS - 1)]
    calls.insert(4, lambda: ledger.append("job.completed", job_id="bad", user="bad \ud800"))
    results = _run_queued(ledger, calls)
    assert isinstance(results[4], InvalidInput)
    good = [r for i, r in enumerate(results) if i != 4]
    assert all(isinstance(r, Entry) for r in good), good
    assert len(ledger) == len(good)
    assert sorted(e.job_id for e in ledger.entries()) == sorted(e.job_id for e in good)
    assert verify_store(ledger.store, key.public_key(), node="bank-a").ok


def test_a_request_the_store_refuses_fails_alone(ledger: Ledger,
                                                 key: Ed25519PrivateKey) -> None:
    """The store rejects the batch because of one request's rows: the batch is retried one
    request per transaction, so only that request fails, and the chain has no hole."""
    real = ledger.store.append

    def picky(records: Any, **kwargs: Any) -> None:
        if any(r.job_id == "poison" for r in records):
            raise LedgerError("the store refuses the poison row")
        real(records, **kwargs)

    ledger.store.append = picky  # type: ignore[method-assign]
    calls: list[Callable[[], Any]] = [lambda i=i: ledger.append("job.completed", job_id=f"ok-{i}")
                                      for i in range(THREADS - 1)]
    calls.insert(3, lambda: ledger.append("job.completed", job_id="poison"))
    results = _run_queued(ledger, calls)
    assert isinstance(results[3], LedgerError) and "poison" in str(results[3])
    good = [r for i, r in enumerate(results) if i != 3]
    assert all(isinstance(r, Entry) for r in good), good
    # one refused batch of all, then one transaction per request
    assert ledger.commit_stats() == {"entries": len(good), "transactions": len(good)}
    assert sorted(e.index for e in good) == list(range(len(good)))
    assert verify_store(ledger.store, key.public_key(), node="bank-a").ok


def test_checkpoint_waits_for_appends_queued_before_it(ledger: Ledger) -> None:
    appends: list[Callable[[], Any]] = [lambda i=i: ledger.append("job.started", job_id=f"j{i}")
                                        for i in range(THREADS - 1)]
    results = _run_queued(ledger, appends[:3], [ledger.checkpoint], appends[3:])
    cp = results[3]
    assert cp.tree_size == 3  # the appends queued before it, and only those
    assert ledger.entry(3).event == "checkpoint"
    assert sorted(e.index for e in results[:3]) == [0, 1, 2]
    assert sorted(e.index for e in results[4:]) == list(range(4, THREADS))
    assert ledger.commit_stats() == {"entries": THREADS, "transactions": 3}
