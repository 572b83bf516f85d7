"""Concurrency: many threads appending keep one valid chain."""

from __future__ import annotations

import threading
from collections import Counter

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import Ledger, open_store, verify_store

THREADS = 8
PER_THREAD = 200


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

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
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
