"""Larger runs over a real spawn pool (``-m slow``): correctness at scale, bounded chunks."""

import numpy as np
import pytest

from protocols.psi import ItemSource
from protocols.psi.stream import MAX_CHUNK_POINTS

from .helpers import run_psi

N = 200_000


def ids(start: int, count: int) -> ItemSource:
    def chunks():
        for lo in range(start, start + count, 50_000):
            yield [f"{i:018d}" for i in range(lo, min(lo + 50_000, start + count))]

    return ItemSource.from_chunks(chunks, total=count)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["intersection", "cardinality"])
def test_200k_by_200k_over_a_process_pool(mode):
    sizes = []

    def tap(direction, peer, tag, payload):
        if isinstance(payload, np.ndarray):
            sizes.append(len(payload))

    r, s = run_psi(ids(0, N), ids(N // 2, N), mode, workers=2, taps={"r": [tap]},
                   timeout=600)
    assert r.size == N // 2
    assert r.own_size == s.own_size == N and r.peer_size == N
    assert max(sizes) <= MAX_CHUNK_POINTS
    if mode == "intersection":
        assert r.rows.tolist() == list(range(N // 2, N))
        assert r.intersection[0] == f"{N // 2:018d}"
