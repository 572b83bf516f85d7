"""Secure sum of integer vectors by pairwise masking (Bonawitz et al. 2017, without dropouts).

Every pair of parties (i, j) agrees on a fresh 256-bit seed, sent by the
smaller name to the larger. Party i adds, modulo 2^64, the SHAKE-256 stream of
each seed it shares: ``+`` for peers with a larger name, ``-`` for smaller.
Each party sends its masked vector to every other party; all masks cancel in
the total, which every party then knows.

What each party learns: the sum, and nothing else about any single other
party's vector as long as no two others collude against it (every masked
vector contains a mask the observer does not know). With two parties the sum
reveals the other's vector, as any sum must.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping

import numpy as np

from pcnode.errors import InvalidInput

from .channel import Channel

SEED_BYTES = 32  # 256-bit seeds: masks indistinguishable from uniform


def _mask(seed: bytes, n: int) -> np.ndarray:
    return np.frombuffer(hashlib.shake_256(seed).digest(8 * n), dtype=np.uint64).copy()


def secure_sum(me: str, channels: Mapping[str, Channel], value: np.ndarray) -> np.ndarray:
    """Return the element-wise sum (mod 2^64, as int64) of every party's ``value``."""
    if value.ndim != 1 or value.dtype.kind not in "iu":
        raise InvalidInput("secure_sum takes a 1-D integer vector")
    n = value.shape[0]
    masked = value.astype(np.int64).view(np.uint64).copy()
    seeds: dict[str, bytes] = {}
    for peer, ch in sorted(channels.items()):
        if me < peer:
            seeds[peer] = secrets.token_bytes(SEED_BYTES)
            ch.send("sum/seed", seeds[peer])
    for peer, ch in sorted(channels.items()):
        if peer < me:
            seeds[peer] = ch.recv_bytes("sum/seed")
            if len(seeds[peer]) != SEED_BYTES:
                raise InvalidInput(f"{peer} sent a {len(seeds[peer])}-byte seed")
    for peer, seed in seeds.items():
        m = _mask(seed, n)
        masked = masked + m if me < peer else masked - m
    for ch in channels.values():
        ch.send("sum/masked", masked)
    total = masked.copy()
    for ch in channels.values():
        total += ch.recv_array("sum/masked", dtype=np.uint64, shape=(n,))
    return total.view(np.int64)
