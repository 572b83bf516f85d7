"""Shared helpers: run both parties over the memory channel, and plaintext references."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from protocols.he.paillier import PaillierSecretKey
from protocols.memory import MemoryNetwork, run_local
from protocols.stats import StatsQuery, run_holder, run_requester


def run_stats(query: StatsQuery, r_keys, s_keys, columns, *, group=None, r_group=None, k=1,
              backend="paillier", holder_query: Any = "same", r_tamper: Callable | None = None,
              s_tamper: Callable | None = None, taps=(), max_buffered_bytes: int | None = None,
              **holder_kw):
    """Run R and S; returns (StatsResult, HolderReport). Tamper hooks rewrite (tag, payload) on send."""
    hq = query if holder_query == "same" else holder_query
    if backend == "paillier":
        holder_kw.setdefault("paillier_key", shared_key())

    def requester(ch):
        c = ch["S"]
        if r_tamper:
            _hook(c, r_tamper)
        return run_requester(c, r_keys, query, group=r_group)

    def holder(ch):
        c = ch["R"]
        if s_tamper:
            _hook(c, s_tamper)
        c.taps.extend(taps)
        return run_holder(c, s_keys, columns, group, hq, k, backend, **holder_kw)

    net = MemoryNetwork(["R", "S"], timeout=60, max_buffered_bytes=max_buffered_bytes)
    out = run_local({"R": requester, "S": holder}, network=net)
    return out["R"], out["S"]


def _hook(ch, fn):
    orig = ch.send

    def send(tag, payload):
        orig(tag, fn(tag, payload))

    ch.send = send


def cents(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    """Values with exactly two decimals (as integer cents)."""
    return rng.integers(lo, hi, n)


def exact_stats(cents_vals: np.ndarray, ddof: int = 0) -> dict[str, float]:
    """Sum, mean, var, std from integer cents with exact rational arithmetic."""
    n = len(cents_vals)
    s1 = Fraction(int(cents_vals.sum()), 100)
    s2 = Fraction(int(sum(int(v) * int(v) for v in cents_vals)), 10000)
    out = {"sum": float(s1)}
    if n:
        mean = s1 / n
        out["mean"] = float(mean)
        if n - ddof > 0:
            var = (s2 - s1 * mean) / (n - ddof)
            out["var"] = float(var)
            out["std"] = float(var) ** 0.5
    return out


_KEY: list[PaillierSecretKey] = []


def shared_key() -> PaillierSecretKey:
    """One 2048-bit key for the whole test session (key generation is the slow part)."""
    if not _KEY:
        _KEY.append(PaillierSecretKey.generate())
    return _KEY[0]
