"""Intersection-aggregate end to end: agreement with numpy for both backends, grouping, k, DP."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcnode.errors import InvalidInput, PermissionDenied, QuotaExhausted
from protocols.dp import EpsilonAccountant
from protocols.stats import StatsQuery

from .helpers import exact_stats, run_stats

AGG = "count,sum:income,mean:income,var:income,std:income,mean:tax,hist:tax:-50|0|50|100"


def _data(seed, n_s, n_r, overlap, groups):
    rng = np.random.default_rng(seed)
    s_keys = [f"person-{i:05d}".encode() for i in range(n_s)]
    start = n_s - overlap
    r_keys = [f"person-{i:05d}".encode() for i in range(start, start + n_r)]
    income_c = rng.integers(0, 10_000_000, n_s)        # cents, up to 100k
    tax_c = rng.integers(-5_000, 10_000, n_s)           # cents, negative allowed
    grp = np.array([f"d{g}" for g in rng.integers(0, groups, n_s)])
    cols = {"income": income_c / 100, "tax": tax_c / 100}
    member = np.zeros(n_s, bool)
    member[start:n_s] = True
    return s_keys, r_keys, cols, grp, member, income_c, tax_c


def _check_row(row, sel, income_c, tax_c, cols, backend):
    assert row["count"] == int(sel.sum())
    ref = exact_stats(income_c[sel])
    ref_tax = exact_stats(tax_c[sel])
    hist = np.histogram(cols["tax"][sel], [-50, 0, 50, 100])[0]
    got_hist = [row[c] for c in row if c.startswith("hist:")]
    assert got_hist == hist.tolist()
    if backend == "paillier":  # exact (fixed point with 2 decimals)
        assert row["sum:income"] == ref["sum"]
        assert row["mean:income"] == ref["mean"]
        assert row["var:income"] == ref["var"]
        assert row["std:income"] == pytest.approx(ref["std"], rel=1e-15)
        assert row["mean:tax"] == ref_tax["mean"]
    else:
        scale = 2.0**24  # income envelope
        assert row["sum:income"] == pytest.approx(ref["sum"], rel=1e-6, abs=1e-6 * scale)
        assert row["mean:income"] == pytest.approx(ref["mean"], rel=1e-6, abs=1e-6 * scale)
        assert row["var:income"] == pytest.approx(ref["var"], rel=1e-4, abs=1e-4 * scale**2 / len(sel))
        # absolute error ~ envelope x 2^-18 on a sum (docs/STATS.md); tax's envelope is 2^8
        assert row["mean:tax"] == pytest.approx(ref_tax["mean"], rel=1e-5, abs=256 * 2.0**-16)


@pytest.mark.parametrize("backend", ["paillier", "ckks"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_s=st.integers(1, 40), n_r=st.integers(0, 40),
       groups=st.integers(1, 4), data=st.data())
def test_agrees_with_numpy_grouped_by_holder_column(backend, seed, n_s, n_r, groups, data):
    overlap = data.draw(st.integers(0, min(n_s, n_r)))
    s_keys, r_keys, cols, grp, member, income_c, tax_c = _data(seed, n_s, n_r, overlap, groups)
    q = StatsQuery.parse(AGG, group_by="district")
    res, rep = run_stats(q, r_keys, s_keys, cols, group=grp, backend=backend, k=1)
    assert res.intersection_size == overlap == rep.intersection_size
    rows = {r["group"]: r for r in res.to_rows()}
    assert sorted(rows) == sorted(set(grp.tolist()))
    for g, row in rows.items():
        sel = member & (grp == g)
        if row["suppressed"]:
            assert sel.sum() == 0 or len(rows) > 1  # count 0 < k=1, or complementary
            continue
        _check_row(row, sel, income_c, tax_c, cols, backend)


@pytest.mark.parametrize("backend", ["paillier", "ckks"])
def test_ungrouped_and_requester_grouped(backend):
    s_keys, r_keys, cols, _, member, income_c, tax_c = _data(3, 60, 50, 40, 1)
    q = StatsQuery.parse(AGG)
    res, _ = run_stats(q, r_keys, s_keys, cols, backend=backend)
    (row,) = res.to_rows()
    assert row["group"] == "all"
    _check_row(row, member, income_c, tax_c, cols, backend)

    r_group = np.array(["north" if i % 3 else "south" for i in range(len(r_keys))])
    q = StatsQuery.parse(AGG, group_by="region", group_side="requester")
    res, rep = run_stats(q, r_keys, s_keys, cols, r_group=r_group, backend=backend,
                         allow_requester_grouping=True)
    start = len(s_keys) - 40
    for row in res.to_rows():
        sel = np.zeros(len(s_keys), bool)
        for i, g in enumerate(r_group):
            if g == row["group"] and start + i < len(s_keys):
                sel[start + i] = True
        _check_row(row, sel, income_c, tax_c, cols, backend)
    assert sorted(rep.group_counts) == sorted(r["count"] for r in res.to_rows())


def test_requester_grouping_needs_the_grant():
    s_keys, r_keys, cols, *_ = _data(1, 10, 10, 5, 1)
    q = StatsQuery.parse("count", group_by="region", group_side="requester")
    with pytest.raises(PermissionDenied, match="requester column") as e:
        run_stats(q, r_keys, s_keys, cols, r_group=np.array(["a"] * 10))
    assert e.value.details["rule"] == "requester_grouping"


@pytest.mark.parametrize("backend", ["paillier", "ckks"])
def test_groups_below_k_are_suppressed_and_named(backend):
    s_keys, r_keys, cols, *_ = _data(5, 40, 40, 40, 1)
    grp = np.array(["big"] * 20 + ["mid"] * 12 + ["small"] * 3 + ["tiny"] * 5)
    q = StatsQuery.parse("count,mean:income", group_by="district")
    res, rep = run_stats(q, r_keys, s_keys, cols, group=grp, backend=backend, k=10)
    assert res.suppressed == ["small", "tiny"]
    assert res.row("small").count is None and res.row("small").values["mean:income"] is None
    assert res.row("big").count == 20 and res.row("mid").count == 12
    assert rep.suppressed == 2 and rep.intersection_size == 40
    # one group below k: the next smallest is withheld too (its count would follow by subtraction)
    grp = np.array(["big"] * 20 + ["mid"] * 12 + ["small"] * 8)
    res, _ = run_stats(q, r_keys, s_keys, cols, group=grp, backend=backend, k=10)
    assert res.suppressed == ["mid", "small"]
    rows = res.to_rows()
    assert [r["suppressed"] for r in rows] == [False, True, True]
    assert list(rows[0]) == ["group", "count", "mean:income", "suppressed"]


def test_everything_suppressed_when_intersection_is_small():
    s_keys, r_keys, cols, *_ = _data(2, 20, 20, 3, 1)
    res, _ = run_stats(StatsQuery.parse("count,sum:income"), r_keys, s_keys, cols, k=5)
    assert res.suppressed == ["all"] and res.intersection_size == 3


@pytest.mark.parametrize("backend", ["paillier", "ckks"])
def test_dp_noise_is_added_by_the_holder_and_charged(backend):
    s_keys, r_keys, cols, _, _, income_c, _ = _data(4, 200, 200, 200, 1)
    q = StatsQuery.parse("count,sum:income,mean:income", epsilon=1.0, bounds="income=0:100000")
    acc = EpsilonAccountant(budget_epsilon=1.5)
    res, rep = run_stats(q, r_keys, s_keys, cols, backend=backend, accountant=acc)
    assert rep.accountant.spent_epsilon == pytest.approx(1.0)
    (row,) = res.to_rows()
    true_sum = income_c.sum() / 100
    # count: Laplace(3/eps); sum: Laplace(3 * 1e5 / eps): generous 12-sigma-ish bounds
    assert abs(row["count"] - 200) <= 60
    assert abs(row["sum:income"] - true_sum) <= 4e6
    assert row["sum:income"] != true_sum
    with pytest.raises(QuotaExhausted, match="privacy budget exhausted"):
        run_stats(q, r_keys, s_keys, cols, backend=backend, accountant=rep.accountant)


def test_dp_can_be_required_by_the_grant():
    s_keys, r_keys, cols, *_ = _data(1, 10, 10, 5, 1)
    with pytest.raises(PermissionDenied, match="requires differential privacy"):
        run_stats(StatsQuery.parse("count"), r_keys, s_keys, cols, require_dp=True)


def test_the_holder_checks_the_requester_ran_the_authorised_query():
    s_keys, r_keys, cols, *_ = _data(1, 10, 10, 5, 1)
    with pytest.raises(PermissionDenied, match="differs from the authorised"):
        run_stats(StatsQuery.parse("sum:income"), r_keys, s_keys, cols,
                  holder_query=StatsQuery.parse("count"))


def test_missing_column_is_named_at_both_ends():
    s_keys, r_keys, cols, *_ = _data(1, 10, 10, 5, 1)
    with pytest.raises(InvalidInput, match="no column 'salary'"):
        run_stats(StatsQuery.parse("sum:salary"), r_keys, s_keys, cols)


def test_duplicate_keys_and_empty_sides():
    s_keys = [b"a", b"b", b"b", b"c"]
    cols = {"income": np.array([1.0, 2.0, 3.0, 4.0])}
    res, _ = run_stats(StatsQuery.parse("count,sum:income"), [b"b", b"b", b"z"], s_keys, cols)
    assert res.to_rows()[0]["count"] == 2 and res.to_rows()[0]["sum:income"] == 5.0
    assert res.metrics["duplicate_keys"] == 1
    res, _ = run_stats(StatsQuery.parse("count,sum:income"), [], s_keys, cols)
    assert res.intersection_size == 0 and res.suppressed == ["all"]
    res, _ = run_stats(StatsQuery.parse("count,sum:income"), [b"a"], [], {"income": np.zeros(0)},
                       backend="ckks")
    assert res.intersection_size == 0


def test_sample_variance_and_nan_for_single_rows():
    s_keys = [b"a", b"b"]
    cols = {"x": np.array([1.0, 3.0])}
    q = StatsQuery(StatsQuery.parse("var:x").aggregates, ddof=1)
    res, _ = run_stats(q, [b"a", b"b"], s_keys, cols)
    assert res.to_rows()[0]["var:x"] == 2.0
    res, _ = run_stats(q, [b"a"], s_keys, cols)
    assert math.isnan(res.to_rows()[0]["var:x"])


def test_gaussian_mechanism_and_histogram_noise():
    s_keys, r_keys, cols, *_ = _data(8, 300, 300, 300, 1)
    q = StatsQuery.parse("count,var:income,hist:income:0|50000|100000", epsilon=2.0,
                         mechanism="gaussian", bounds="income=0:100000")
    res, rep = run_stats(q, r_keys, s_keys, cols, accountant=EpsilonAccountant(4.0, budget_delta=1e-6))
    assert rep.accountant.spent_delta == pytest.approx(1e-9)
    (row,) = res.to_rows()
    bins = [row[c] for c in res.columns if c.startswith("hist:")]
    assert all(isinstance(b, int) and b >= 0 for b in bins)
    assert abs(sum(bins) - 300) < 100 and row["var:income"] >= 0


@pytest.mark.parametrize("backend", ["paillier", "ckks"])
def test_streams_larger_than_the_link_buffer(backend):
    # Every stream (keys, ciphertexts) is many times a 64 KB link: no step may need
    # the peer to buffer a whole stream.
    s_keys, r_keys, cols, *_ = _data(3, 9000, 6000, 5000, 1)
    q = StatsQuery.parse("count,sum:income")
    res, _ = run_stats(q, r_keys, s_keys, cols, backend=backend, max_buffered_bytes=64 << 10)
    assert res.intersection_size == 5000
