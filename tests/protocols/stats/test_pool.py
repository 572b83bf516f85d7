"""The same protocol with spawn process pools on both sides, over several chunks."""

import numpy as np
import pytest

from protocols.he.pool import START_METHOD, spawn_pool
from protocols.memory import run_local
from protocols.stats import StatsQuery, run_holder, run_requester

from .helpers import shared_key


@pytest.fixture(scope="module")
def pools():
    a, b = spawn_pool(2), spawn_pool(2)
    yield a, b
    a.shutdown()
    b.shutdown()


def test_pools_use_spawn(pools):
    assert START_METHOD == "spawn"
    assert all(p._mp_context.get_start_method() == "spawn" for p in pools)


@pytest.mark.parametrize("backend", ["paillier", "ckks"])
def test_multi_chunk_run_with_pools(pools, backend):
    rng = np.random.default_rng(9)
    n_s = 4500  # > one CKKS chunk (4096 slots) and > one Paillier message (2048 rows)
    s_keys = [f"k{i}".encode() for i in range(n_s)]
    r_keys = [f"k{i}".encode() for i in range(300, 4400)] + [b"nobody"]
    cents = rng.integers(0, 100_000_00, n_s)
    grp = rng.integers(0, 3, n_s)
    q = StatsQuery.parse("count,sum:income,mean:income", group_by="g")
    pr, ps = pools
    kw = {"paillier_key": shared_key()} if backend == "paillier" else {}
    out = run_local({
        "R": lambda ch: run_requester(ch["S"], r_keys, q, pool=pr),
        "S": lambda ch: run_holder(ch["R"], s_keys, {"income": cents / 100}, grp, q, 1, backend,
                                   pool=ps, **kw),
    }, timeout=120)
    res = out["R"]
    assert res.intersection_size == 4100
    member = np.zeros(n_s, bool)
    member[300:4400] = True
    for row in res.to_rows():
        sel = member & (grp.astype(str) == row["group"])
        assert row["count"] == sel.sum()
        expect = int(cents[sel].sum()) / 100
        if backend == "paillier":
            assert row["sum:income"] == expect
        else:
            assert row["sum:income"] == pytest.approx(expect, rel=1e-6)
