"""Ledger benchmarks: append throughput, full verify of 10^6 entries, proof sizes.

    .venv/bin/python scripts/bench_ledger.py                 # everything (1M entries)
    .venv/bin/python scripts/bench_ledger.py --entries 100000 --skip-backends

Writes bench-results/ledger.json and prints a table. Targets (issue 3):
append >= 5,000 entries/s on SQLite; full verify of 1,000,000 entries <= 60 s;
proof sizes growing as log2(n).

Append is measured on SQLite, side by side in one run, because with
``synchronous=FULL`` every commit waits for an fsync and the fsync latency of
the disk bounds one sequential writer:

* ``sqlite_floor``: bare SQLite on the same schema and disk, one ``INSERT`` of
  a ready-made row per transaction, no hashing, signing or encoding. No single
  sequential writer of one-entry transactions can beat it;
* one thread, FULL: one transaction per append (its mean latency is shown);
* N concurrent appender threads (``--threads``, default 4, 8, 16), FULL: the
  threads share commits (group commit) and every append still returns only
  after its own entry is durable; the mean batch (entries per transaction,
  i.e. per fsync) and the per-append latency (p50/p99) are reported. This is
  the headline "append throughput" figure: the target is a throughput target,
  met by concurrent appenders sharing fsyncs;
* the same with NORMAL (WAL: survives a killed process, not a power cut), and
  ``append_many`` batches of 1,000 in one transaction, FULL.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cryptography
from cryptography.hazmat.backends.openssl import backend as openssl_backend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import Ledger, MerkleTree, open_store, verify_store
from ledger.ed25519 import available_backends, make_checker
from ledger.merkle import hash_leaf

FIELDS: dict[str, Any] = {
    "peer": "gov-data", "dataset": "DS-0001", "user": "analyst-1", "grant_id": "G-2024-0001",
    "authorised_by": "officer-7", "operation": "psi", "mode": "intersection",
    "purpose": "credit risk assessment", "rows_in": 100_000, "rows_out": 12_345,
    "bytes_in": 3_200_000, "bytes_out": 400_000, "params_digest": "ab" * 32,
    "result_digest": "cd" * 32, "transcript_hash": "ef" * 32, "status": "completed",
    "extra": {"parties": "bank-a,gov-data", "kind": "psi"},
}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "cryptography": cryptography.__version__,
            "openssl": openssl_backend.openssl_version_text(),
            "sqlite": sqlite3.sqlite_version, "ed25519_backends": available_backends(),
            "load_average_at_start": os.getloadavg()}


def fsync_latency_us(directory: Path, n: int = 200) -> float:
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, b"x" * 128)
            os.fsync(fd)
        return (time.perf_counter() - start) / n * 1e6
    finally:
        os.close(fd)
        path.unlink()


def bench_append(directory: Path, sync: str, threads: int, n: int, batch: int = 0) -> dict[str, Any]:
    path = directory / f"append-{sync}-{threads}-{batch}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    if sync != "FULL":
        url += f"?synchronous={sync}"
    store = open_store(url)
    ledger = Ledger(store, Ed25519PrivateKey.generate(), "bank-a")
    ledger.append("job.started", job_id="warm-up")
    before = ledger.commit_stats()
    per_thread = n // threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    started = time.perf_counter()
    if batch:
        for start in range(0, n, batch):
            ledger.append_many(("job.completed", dict(FIELDS, job_id=f"j{i}"))
                               for i in range(start, min(n, start + batch)))
    else:
        gate = threading.Barrier(threads + 1)

        def work(t: int) -> None:
            own = latencies[t]
            clock = time.perf_counter
            gate.wait()
            for i in range(per_thread):
                t0 = clock()
                ledger.append("job.completed", job_id=f"t{t}-{i}", **FIELDS)
                own.append(clock() - t0)

        pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for th in pool:
            th.start()
        gate.wait()
        started = time.perf_counter()
        for th in pool:
            th.join()
    seconds = time.perf_counter() - started
    count = n if batch else per_thread * threads
    after = ledger.commit_stats()
    transactions = after["transactions"] - before["transactions"]
    assert after["entries"] - before["entries"] == count
    assert ledger.verify().ok
    store.close()
    how = f"append_many({batch})" if batch else f"{threads} thread{'s' * (threads > 1)}"
    out: dict[str, Any] = {"synchronous": sync, "mode": how, "threads": threads,
                           "entries": count, "seconds": round(seconds, 3),
                           "entries_per_s": round(count / seconds),
                           "transactions": transactions,
                           "mean_batch": round(count / transactions, 2)}
    if not batch:
        every = sorted(x for own in latencies for x in own)
        out["latency_us_mean"] = round(sum(every) / len(every) * 1e6)
        out["latency_us_p50"] = round(every[len(every) // 2] * 1e6)
        out["latency_us_p99"] = round(every[min(len(every) - 1, len(every) * 99 // 100)] * 1e6)
    return out


def sqlite_floor(directory: Path, sync: str, n: int) -> dict[str, Any]:
    """Bare SQLite: one prepared row per transaction, the ledger's schema, no ledger work."""
    from ledger.store.sqlite import SqliteStore

    path = directory / f"floor-{sync}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = SqliteStore(f"sqlite:///{path}?synchronous={sync}")
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    body, leaf, sig = os.urandom(770), os.urandom(32), os.urandom(64)
    started = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO ledger_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (i, body, leaf, sig, "job.completed", 1_700_000_000_000_000 + i, f"j{i}",
                      "DS-0001", "gov-data"))
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return {"synchronous": sync, "mode": "bare SQLite insert", "threads": 1, "entries": n,
            "seconds": round(seconds, 3), "entries_per_s": round(n / seconds),
            "transactions": n, "mean_batch": 1.0, "latency_us_mean": round(seconds / n * 1e6)}


def build_big(path: Path, n: int) -> tuple[str, Ed25519PrivateKey, dict[str, Any]]:
    """Generate ``n`` entries at ``path`` (reused, with its key file, if already there)."""
    key_path = path.with_suffix(".key")
    url = f"sqlite:///{path}"
    if path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, Ed25519PrivateKey)
        with open_store(url) as store:
            if store.size() >= n:
                return url, key, {"generated_entries": store.size(), "reused": True}
        path.unlink()
    key = Ed25519PrivateKey.generate()
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    store = open_store(url + "?synchronous=NORMAL")
    ledger = Ledger(store, key, "bank-a")
    started = time.perf_counter()
    batch = 5000
    for start in range(0, n, batch):
        ledger.append_many(("job.completed", dict(FIELDS, job_id=f"job-{i:08d}"))
                           for i in range(start, min(n, start + batch)))
        if (start // batch) % 40 == 39:
            print(f"  generated {start + batch:,} entries", flush=True)
    gen_s = time.perf_counter() - started
    t0 = time.perf_counter()
    first_cp = ledger.checkpoint()  # builds the tree from the stored leaf hashes
    first_cp_s = time.perf_counter() - t0
    ledger.append("job.started", job_id="one-more")
    t0 = time.perf_counter()
    ledger.checkpoint()  # incremental: no rehash of the log
    next_cp_s = time.perf_counter() - t0
    store.close()
    info = {"generated_entries": n, "generate_seconds": round(gen_s, 1),
            "generate_entries_per_s": round(n / gen_s),
            "first_checkpoint_seconds": round(first_cp_s, 3),
            "next_checkpoint_seconds": round(next_cp_s, 4),
            "first_checkpoint_tree_size": first_cp.tree_size,
            "file_mb": round(path.stat().st_size / 2**20, 1)}
    return url, key, info


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_verify(url: str, key: Ed25519PrivateKey, backend: str | None,
                 workers: int | None) -> dict[str, Any]:
    """One full verify; CPU seconds include the worker processes (reaped at pool exit)."""
    store = open_store(url)
    cp = Ledger(store, key, "bank-a").latest_checkpoint()
    load0 = os.getloadavg()[0]
    cpu0 = _cpu()
    report = verify_store(store, key.public_key(), cp, node="bank-a", backend=backend,
                          workers=workers)
    cpu = _cpu() - cpu0
    store.close()
    assert report.ok, report.errors[:3]
    cores = min(report.workers, os.cpu_count() or 1)
    return {"entries": report.entries, "seconds": round(report.seconds, 2),
            "entries_per_s": round(report.entries / report.seconds), "backend": report.backend,
            "workers": report.workers, "cpu_seconds": round(cpu, 1),
            "cpu_us_per_entry": round(cpu / report.entries * 1e6, 1),
            "idle_machine_estimate_s": round(cpu / cores, 1),
            "load_average_before": round(load0, 2)}


def signature_cost_us(n: int = 5000) -> dict[str, float]:
    key = Ed25519PrivateKey.generate()
    msg = b"pcnode/ledger/entry/v1\x00" + bytes(32)
    sig = key.sign(msg)
    out = {}
    t0 = time.perf_counter()
    for _ in range(n):
        key.sign(msg)
    out["sign_cryptography"] = round((time.perf_counter() - t0) / n * 1e6, 1)
    for backend in available_backends():
        check = make_checker(key.public_key(), backend)
        t0 = time.perf_counter()
        for _ in range(n):
            check(sig, msg)
        out[f"verify_{backend}"] = round((time.perf_counter() - t0) / n * 1e6, 1)
    return out


def proof_sizes(url: str | None, n_max: int) -> list[dict[str, Any]]:
    """Inclusion and consistency proof lengths for n = 10 .. n_max (powers of ten)."""
    sizes = [10**k for k in range(1, int(math.log10(n_max)) + 1)]
    if url is not None:
        store = open_store(url)
        tree = MerkleTree(store.leaf_hashes(0, n_max))
        store.close()
    else:
        tree = MerkleTree(hash_leaf(i.to_bytes(8, "big")) for i in range(n_max))
    rows = []
    for n in sizes:
        samples = sorted({0, n // 3, n // 2, n - 1})
        incl = [len(tree.inclusion_proof(i, n)) for i in samples]
        cons = [len(tree.consistency_proof(m, n)) for m in sorted({1, n // 2, n - 1}) if m]
        rows.append({"n": n, "log2_n": round(math.log2(n), 2),
                     "inclusion_hashes_max": max(incl), "inclusion_bytes_max": 32 * max(incl),
                     "consistency_hashes_max": max(cons), "consistency_bytes_max": 32 * max(cons)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="size of the verify test")
    parser.add_argument("--append-n", type=int, default=4000, help="appends per append test")
    parser.add_argument("--threads", default="4,8,16",
                        help="comma-separated counts of concurrent appender threads (FULL)")
    parser.add_argument("--out", default="bench-results/ledger.json")
    parser.add_argument("--workdir", help="keep the databases here and reuse the big ledger "
                        "(default: a temp dir, removed afterwards)")
    parser.add_argument("--skip-backends", action="store_true",
                        help="verify only with the default Ed25519 backend")
    parser.add_argument("--parts", default="append,verify,proofs",
                        help="comma-separated subset of append,verify,proofs")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for the 1-minute load average to "
                             "drop below 1.0 (other work on the machine skews every figure)")
    args = parser.parse_args()

    parts = set(args.parts.split(","))
    deadline = time.monotonic() + args.wait_idle
    while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
        time.sleep(5)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-ledger-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "machine": machine()}
    try:
        results["fsync_latency_us"] = round(fsync_latency_us(work), 1)
        results["signature_us"] = signature_cost_us()
        if "append" in parts:
            print("append throughput (SQLite) ...", flush=True)
            counts = [int(x) for x in args.threads.split(",") if x.strip()]
            results["append"] = [
                sqlite_floor(work, "FULL", args.append_n),
                sqlite_floor(work, "NORMAL", args.append_n),
                bench_append(work, "FULL", 1, args.append_n),
                *(bench_append(work, "FULL", t, args.append_n * 2) for t in counts),
                bench_append(work, "NORMAL", 1, args.append_n),
                bench_append(work, "NORMAL", max(counts), args.append_n * 2),
                bench_append(work, "FULL", 1, args.append_n * 5, batch=1000),
            ]
        url = key = None
        if parts & {"verify", "proofs"}:
            print(f"generating {args.entries:,} entries (or reusing them) ...", flush=True)
            url, key, info = build_big(work / "big.db", args.entries)
            results["big_ledger"] = info
        if "verify" in parts:
            assert url is not None and key is not None
            print("full verify ...", flush=True)
            verifies = [bench_verify(url, key, None, None)]
            if not args.skip_backends:
                verifies.append(bench_verify(url, key, None, 1))
                if verifies[0]["backend"] != "cryptography":
                    verifies.append(bench_verify(url, key, "cryptography", None))
            results["verify"] = verifies
        if "proofs" in parts:
            print("proof sizes ...", flush=True)
            results["proof_sizes"] = proof_sizes(url, args.entries)
        results["machine"]["load_average_at_end"] = os.getloadavg()
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {out}")


def print_table(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"\n{r['date']}  {m['cpu']}  {m['cores']} cores  Python {m['python']}  "
          f"SQLite {m['sqlite']}  {m['openssl']}")
    print(f"load average at start {m['load_average_at_start']}, at end "
          f"{m.get('load_average_at_end')}")
    print(f"fsync latency: {r['fsync_latency_us']} µs; signature µs: {r['signature_us']}")
    appends = r.get("append", [])
    if appends:
        print("\nappend (SQLite)              entries/s  entries/fsync  latency µs mean/p50/p99")
        for a in appends:
            lat = "/".join(str(a[k]) for k in ("latency_us_mean", "latency_us_p50",
                                                 "latency_us_p99") if k in a)
            print(f"  {a['synchronous']:<7} {a['mode']:<18} {a['entries_per_s']:>9,} "
                  f"{a['mean_batch']:>10}      {lat}")
        concurrent = [a for a in appends if a["synchronous"] == "FULL" and a["threads"] > 1
                      and a["mode"].endswith("threads")]
        single = next(a for a in appends if a["synchronous"] == "FULL" and a["mode"] == "1 thread")
        if concurrent:
            best = max(concurrent, key=lambda a: a["entries_per_s"])
            print(f"\nAPPEND THROUGHPUT (SQLite WAL, synchronous=FULL, every append durable when it "
                  f"returns), {best['threads']} concurrent appender threads: "
                  f"{best['entries_per_s']:,} entries/s ({best['mean_batch']} entries per fsync; "
                  f"target 5,000) — 1 thread: {single['entries_per_s']:,}/s, "
                  f"{single['latency_us_mean']} µs per append")
    b = r.get("big_ledger")
    if b and not b.get("reused"):
        print(f"\nbuilt {b['generated_entries']:,} entries in {b['generate_seconds']} s "
              f"({b['generate_entries_per_s']:,}/s); first checkpoint "
              f"{b['first_checkpoint_seconds']} s, next {b['next_checkpoint_seconds']} s")
    if r.get("verify"):
        print("\nfull verify              seconds  entries/s  CPU µs/entry  CPU-bound estimate"
              "   (target <= 60 s)")
    for v in r.get("verify") or []:
        print(f"  {v['backend']:<12} w={v['workers']:<2} {v['seconds']:>8} "
              f"{v['entries_per_s']:>10,} {v['cpu_us_per_entry']:>12}  "
              f"{v['idle_machine_estimate_s']:>8} s")
    if r.get("proof_sizes"):
        print("\nproof sizes (hashes)   n       log2 n   inclusion   consistency")
    for p in r.get("proof_sizes", []):
        print(f"  {p['n']:>12,}   {p['log2_n']:>6}   {p['inclusion_hashes_max']:>9}   "
              f"{p['consistency_hashes_max']:>11}")


if __name__ == "__main__":
    main()
