#!/usr/bin/env python3
"""Benchmark joint statistics (intersection-aggregate) with both HE backends.

Shape (defaults): the holder S has 120,000 rows (key, income, tax, district with
20 values); the requester R has 100,000 keys, all of which S also holds. The
query is ``count,sum:income,mean:income,sum:tax,mean:tax`` grouped by S's
``district``. Values have two decimals (income < 1e6, tax < 1e5), so the
Paillier backend (2 decimals of fixed point) must be exact.

Each party gets its own spawn process pool of ``--workers`` processes, as two
nodes would; both run on this machine. Reported per backend:

* end-to-end wall time (R's first message to R's result), targets on 2 cores:
  Paillier <= 60 s exact, CKKS <= 5 s with relative error <= 1e-6;
* the ECDH part alone (hash-to-curve + blinding for both sets, shared with PSI),
  timed separately with the same pools, so the HE share can be read off;
* bytes each way, and the error against plain numpy on the joined plaintext,
  which is also timed as the reference.

The transport is pluggable: ``TRANSPORTS`` maps a name to a callable that runs
``requester(channel)`` and ``holder(channel)`` against each other and returns
both results. ``memory`` is built in; the node adds ``grpc``.

    .venv/bin/python scripts/bench_stats.py            # both backends, writes bench-results/stats.json
    .venv/bin/python scripts/bench_stats.py --backends ckks --rows-holder 12000 --rows-requester 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocols.channel import Channel
from protocols.he.paillier import LARGE_JOB_ENCRYPTIONS, PaillierSecretKey, fast_encrypt
from protocols.he.pool import PROTOCOL_MODULES, imap_chunks, spawn_pool, warm_up
from protocols.memory import run_local
from protocols.stats import (
    StatsQuery,
    ecdh,
    run_holder,
    run_requester,
)
from protocols.stats.protocol import KEY_CHUNK

TARGETS = {"paillier": {"seconds": 60.0, "max_rel_error": 0.0},
           "ckks": {"seconds": 5.0, "max_rel_error": 1e-6}}
QUERY = "count,sum:income,mean:income,sum:tax,mean:tax"

Party = Callable[[Channel], Any]
Transport = Callable[[Party, Party], tuple[Any, Any]]


def memory_transport(requester: Party, holder: Party) -> tuple[Any, Any]:
    """Both parties in this process, over the in-memory channel (encoded as on the wire)."""
    out = run_local({"R": lambda ch: requester(ch["S"]), "S": lambda ch: holder(ch["R"])},
                    timeout=3600)
    return out["R"], out["S"]


TRANSPORTS: dict[str, Transport] = {"memory": memory_transport}


def make_data(n_s: int, n_r: int, groups: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(10**17, 10**18, int(n_s * 1.01) + 16))[:n_s]  # distinct ids
    ids = rng.permutation(ids)
    s_keys = [f"{i:018d}".encode() for i in ids.tolist()]
    r_idx = rng.choice(n_s, size=n_r, replace=False)
    r_keys = [s_keys[i] for i in r_idx.tolist()]
    income_c = rng.integers(0, 100_000_000, n_s)  # cents < 1e6
    tax_c = rng.integers(0, 10_000_000, n_s)      # cents < 1e5
    district = np.array([f"district-{g:02d}" for g in rng.integers(0, groups, n_s)])
    return {"s_keys": s_keys, "r_keys": r_keys, "income_c": income_c, "tax_c": tax_c,
            "income": income_c / 100, "tax": tax_c / 100, "district": district}


def numpy_reference(d: dict[str, Any]) -> tuple[float, dict[str, dict[str, Any]]]:
    """Plain numpy on the joined plaintext: join by key, group by district. Returns (seconds, stats)."""
    t0 = time.perf_counter()
    s_keys = np.array(d["s_keys"])
    member = np.isin(s_keys, np.array(d["r_keys"]))
    labels, gidx = np.unique(d["district"], return_inverse=True)
    g = gidx[member]
    count = np.bincount(g, minlength=len(labels))
    out = {}
    sums = {c: np.bincount(g, weights=d[c][member], minlength=len(labels)) for c in ("income", "tax")}
    elapsed = time.perf_counter() - t0
    exact = {c: np.bincount(g, weights=d[f"{c}_c"][member], minlength=len(labels)) for c in ("income", "tax")}
    for i, lab in enumerate(labels.tolist()):
        row: dict[str, Any] = {"count": int(count[i])}
        for c in ("income", "tax"):
            cents = int(exact[c][i])  # exact: < 2^53
            row[f"sum:{c}"] = float(Fraction(cents, 100))
            row[f"mean:{c}"] = float(Fraction(cents, 100 * int(count[i])))
            row[f"numpy_sum:{c}"] = float(sums[c][i])
        out[lab] = row
    return elapsed, out


def ecdh_only(d: dict[str, Any], pr: Any, ps: Any) -> float:
    """Wall time of the ECDH part alone: both sets hashed and blinded, then re-blinded."""
    salt = b"bench-salt"
    a, b = ecdh.new_scalar(), ecdh.new_scalar()

    def chunks(keys: list[bytes], s: bytes) -> list[tuple[Any, ...]]:
        return [(keys[i:i + KEY_CHUNK], salt, s) for i in range(0, len(keys), KEY_CHUNK)]

    res: dict[str, Any] = {}
    t0 = time.perf_counter()

    def side(name: str, keys: list[bytes], s: bytes, pool: Any) -> None:
        res[name] = list(imap_chunks(ecdh.hash_and_blind, chunks(keys, s), pool))

    th = [threading.Thread(target=side, args=("r", d["r_keys"], a, pr)),
          threading.Thread(target=side, args=("s", d["s_keys"], b, ps))]
    for t in th:
        t.start()
    for t in th:
        t.join()

    def again(name: str, parts: list[np.ndarray], s: bytes, pool: Any) -> None:
        res[name] = list(imap_chunks(ecdh.reblind, [(p, s) for p in parts], pool))

    th = [threading.Thread(target=again, args=("rs", res["s"], a, pr)),
          threading.Thread(target=again, args=("sr", res["r"], b, ps))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return time.perf_counter() - t0


def encryption_rates(seconds: float = 2.0) -> dict[str, float]:
    """Paillier-2048 encryptions per CPU-second (one core): plain phe vs the owner's CRT+DJN path.

    CPU time, not wall time, so that a busy machine does not distort the ratio.
    """
    from phe import paillier

    pub, _ = paillier.generate_paillier_keypair(n_length=2048)
    n, t0 = 0, time.process_time()
    while time.process_time() - t0 < seconds:
        pub.raw_encrypt(12345)
        n += 1
    out = {"phe_per_cpu_s": n / (time.process_time() - t0)}
    sk = PaillierSecretKey.generate()
    msgs = [2**2000 + i for i in range(2000)]
    for name, size in (("fast_w8_per_cpu_s", 0), ("fast_w12_per_cpu_s", LARGE_JOB_ENCRYPTIONS)):
        km = sk.material(encryptions=size)
        fast_encrypt(km, msgs[:1])  # build the fixed-base table first
        n, t0 = 0, time.process_time()
        while time.process_time() - t0 < seconds:
            fast_encrypt(km, msgs)
            n += len(msgs)
        out[name] = n / (time.process_time() - t0)
    return out


def cpu_seconds() -> float:
    """CPU seconds used by this process and its finished children (pool workers after shutdown)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def with_pools(workers: int, fn: Callable[[Any, Any], Any]) -> tuple[Any, float, float]:
    """Run ``fn(pool_r, pool_s)`` with fresh warm pools; returns (result, wall s, CPU s).

    Warm as in a node after its first job: workers started, protocol modules imported.
    """
    pr, ps = spawn_pool(workers, PROTOCOL_MODULES), spawn_pool(workers, PROTOCOL_MODULES)
    try:
        warm_up(pr)
        warm_up(ps)
        c0, t0 = cpu_seconds(), time.perf_counter()
        out = fn(pr, ps)
        wall = time.perf_counter() - t0
    finally:
        pr.shutdown()
        ps.shutdown()
    return out, wall, cpu_seconds() - c0


def run_backend(backend: str, d: dict[str, Any], ref: dict[str, dict[str, Any]], pr: Any, ps: Any,
                transport: Transport) -> dict[str, Any]:
    q = StatsQuery.parse(QUERY, group_by="district")
    cols = {"income": d["income"], "tax": d["tax"]}
    t0 = time.perf_counter()
    res, rep = transport(
        lambda ch: run_requester(ch, d["r_keys"], q, pool=pr),
        lambda ch: run_holder(ch, d["s_keys"], cols, d["district"], q, 5, backend, pool=ps),
    )
    wall = time.perf_counter() - t0
    max_rel, max_rel_numpy, exact = 0.0, 0.0, True
    for row in res.to_rows():
        r = ref[row["group"]]
        if row["count"] != r["count"]:
            exact = False
            max_rel = float("inf")
        for c in ("sum:income", "mean:income", "sum:tax", "mean:tax"):
            rel = abs(row[c] - r[c]) / abs(r[c])
            max_rel = max(max_rel, rel)
            exact &= row[c] == r[c]
        for c in ("income", "tax"):
            max_rel_numpy = max(max_rel_numpy, abs(row[f"sum:{c}"] - r[f"numpy_sum:{c}"]) / r[f"sum:{c}"])
    target = TARGETS[backend]
    ok_err = exact if backend == "paillier" else max_rel <= target["max_rel_error"]
    return {
        "backend": backend, "seconds": wall, "intersection": res.intersection_size,
        "groups": len(res.groups), "suppressed": res.suppressed,
        "max_rel_error_vs_exact": max_rel, "max_rel_diff_vs_numpy_float": max_rel_numpy,
        "exact": exact, "bytes_r_to_s": res.metrics["bytes_out"], "bytes_s_to_r": res.metrics["bytes_in"],
        "requester_phases_s": {k: res.metrics[k]
                               for k in ("setup_s", "exchange_s", "aggregate_s", "release_s")},
        "holder_phases_s": {k: rep.metrics[k] for k in ("setup_s", "exchange_s", "release_s")},
        "target_seconds": target["seconds"], "meets_time": wall <= target["seconds"],
        "meets_accuracy": bool(ok_err),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows-holder", type=int, default=120_000)
    ap.add_argument("--rows-requester", type=int, default=100_000)
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2, help="pool processes per party")
    ap.add_argument("--backends", default="paillier,ckks")
    ap.add_argument("--transport", default="memory", choices=sorted(TRANSPORTS))
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--skip-rates", action="store_true", help="skip the Paillier encryption-rate probe")
    ap.add_argument("--out", default="bench-results/stats.json")
    args = ap.parse_args(argv)
    if args.rows_requester > args.rows_holder:
        ap.error("--rows-requester must not exceed --rows-holder (R's keys are drawn from S's)")

    load_before = os.getloadavg()
    d = make_data(args.rows_holder, args.rows_requester, args.groups, args.seed)
    np_s, ref = numpy_reference(d)
    t0 = time.perf_counter()
    with_pools(args.workers, lambda pr, ps: None)  # first spawn pays the imports
    warm = time.perf_counter() - t0
    _, ecdh_s, ecdh_cpu = with_pools(args.workers, lambda pr, ps: ecdh_only(d, pr, ps))
    results = []
    for b in [b for b in args.backends.split(",") if b]:
        r, _, cpu = with_pools(args.workers, lambda pr, ps, b=b: run_backend(
            b, d, ref, pr, ps, TRANSPORTS[args.transport]))
        r["cpu_s"] = cpu
        r["ecdh_only_s"] = ecdh_s
        r["ecdh_only_cpu_s"] = ecdh_cpu
        r["he_share_s"] = max(0.0, r["seconds"] - ecdh_s)
        r["he_share_cpu_s"] = max(0.0, cpu - ecdh_cpu)
        results.append(r)
    rates = {} if args.skip_rates else encryption_rates()
    report = {
        "benchmark": "stats intersection-aggregate",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
                    "processor": _cpu_model(), "python": platform.python_version(),
                    "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
        "shape": {"holder_rows": args.rows_holder, "requester_rows": args.rows_requester,
                  "intersection": args.rows_requester, "groups": args.groups, "query": QUERY,
                  "group_by": "district (holder)", "k": 5, "workers_per_party": args.workers,
                  "transport": args.transport},
        "pool_start_and_warmup_s": warm,
        "numpy_reference_s": np_s,
        "ecdh_only_s": ecdh_s,
        "paillier_encryption": rates,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    _print_table(report)
    print(f"\nwrote {out}")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _print_table(rep: dict[str, Any]) -> None:
    sh = rep["shape"]
    print(f"intersection-aggregate: S {sh['holder_rows']:,} rows, R {sh['requester_rows']:,} keys, "
          f"{sh['groups']} holder groups, {sh['workers_per_party']} workers/party, "
          f"load {rep['machine']['load_avg_before'][0]:.1f}")
    print(f"numpy on the joined plaintext: {rep['numpy_reference_s']:.3f} s;  "
          f"ECDH part alone (shared with PSI): {rep['ecdh_only_s']:.1f} s wall, "
          f"{rep['results'][0]['ecdh_only_cpu_s'] if rep['results'] else 0:.1f} s CPU")
    if rep["paillier_encryption"]:
        pe = rep["paillier_encryption"]
        print(f"Paillier-2048 encryptions per CPU-second: phe {pe['phe_per_cpu_s']:.0f}, "
              f"CRT+DJN {pe['fast_w8_per_cpu_s']:.0f} (8-bit window), "
              f"{pe['fast_w12_per_cpu_s']:.0f} (12-bit window, jobs >= 100k encryptions)")
    head = f"{'backend':9} {'total s':>8} {'ECDH s':>7} {'HE s':>6} {'CPU s':>6} {'target':>7} " \
           f"{'max rel err':>12} {'exact':>6} {'R->S MB':>8} {'S->R MB':>8}  met"
    print(head)
    print("-" * len(head))
    for r in rep["results"]:
        met = "yes" if r["meets_time"] and r["meets_accuracy"] else "NO"
        print(f"{r['backend']:9} {r['seconds']:8.1f} {r['ecdh_only_s']:7.1f} {r['he_share_s']:6.1f} "
              f"{r['cpu_s']:6.1f} "
              f"{r['target_seconds']:7.0f} {r['max_rel_error_vs_exact']:12.2e} {r['exact']!s:>6} "
              f"{r['bytes_r_to_s'] / 1e6:8.1f} {r['bytes_s_to_r'] / 1e6:8.1f}  {met}")


if __name__ == "__main__":
    raise SystemExit(main())
