"""ECDH-PSI end to end over the memory channel: every mode equals Python's set intersection."""

import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcnode.errors import ProtocolError
from protocols.psi import MODES, ItemSource, Normalization, PsiParams

from .helpers import check, run_psi

keys = st.text(alphabet=string.ascii_letters[:6] + " é京", min_size=0, max_size=4)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=st.lists(keys, max_size=30), y=st.lists(keys, max_size=30))
def test_random_sets_equal_python_intersection(mode, x, y):
    r, s = run_psi(x, y, mode)
    check(r, s, x, y, mode)


EDGE_CASES = {
    "both empty": ([], []),
    "requester empty": ([], ["a", "b"]),
    "holder empty": (["a", "b"], []),
    "identical": (["a", "b", "c"], ["c", "b", "a"]),
    "disjoint": (["a", "b"], ["c", "d"]),
    "all duplicates": (["x"] * 50, ["x", " x ", "x\t"] * 20),
    "unicode": (["北京", "Ünïcødé", "😀", "e\u0301", "é"], ["😀", "é", "上海", " 北京"]),
    "single item": (["only"], ["only"]),
    "single miss": (["only"], ["other"]),
    "bytes": ([b"\x00\xff", b"a", b""], [b"", b"\x00\xff", b"b"]),
    "empty strings": (["", " ", "a"], ["", "b"]),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases(mode, case):
    x, y = EDGE_CASES[case]
    r, s = run_psi(x, y, mode)
    check(r, s, x, y, mode)


def test_duplicates_are_dropped_and_reported():
    x = ["a", "a", " a", "b", "c", "c"]
    r, s = run_psi(x, ["a", "c", "c", "z"], "both")
    assert r.duplicates_dropped == 3 and r.own_size == 3 and r.own_rows == 6
    assert s.duplicates_dropped == 1 and s.own_size == 3
    assert r.intersection == ["a", "c"] and r.rows.tolist() == [0, 4]
    assert s.intersection == ["a", "c"] and s.rows.tolist() == [0, 1]


@pytest.mark.parametrize("mode", MODES)
def test_normalisation_options_apply_on_both_sides(mode):
    norm = Normalization(nfkc=True, casefold=True, resident_id=True, skip_empty=True)
    x = ["11010519491231002x", "\uff21\uff22\uff23", "   ", "Foo", "bar"]
    y = ["11010519491231002X ", "abc", "", "foo", "baz"]
    r, s = run_psi(x, y, mode, normalization=norm)
    check(r, s, x, y, mode, norm)
    assert r.skipped == 1 and s.skipped == 1
    if mode in ("intersection", "both"):
        assert r.intersection == ["11010519491231002x", "\uff21\uff22\uff23", "Foo"]


def test_resident_id_check_skips_invalid_ids():
    norm = Normalization(resident_id=True, resident_id_check=True)
    x = ["11010519491231002x", "110105194912310021", "not an id"]
    y = ["11010519491231002X", "110105194912310021"]
    r, s = run_psi(x, y, "both", normalization=norm)
    check(r, s, x, y, "both", norm)
    assert (r.skipped, s.skipped) == (2, 1)
    assert r.intersection == ["11010519491231002x"]


def test_streaming_sources_larger_than_one_chunk():
    rnd = random.Random(7)
    x = [f"user-{rnd.randrange(6000)}" for _ in range(5000)]
    y = [f"user-{rnd.randrange(6000)}" for _ in range(4000)]

    def chunks_of(items, n):
        return lambda: (items[i : i + n] for i in range(0, len(items), n))

    for mode in ("intersection", "both", "cardinality"):
        r, s = run_psi(ItemSource.from_chunks(chunks_of(x, 777)), iter(y), mode,
                       chunk_size=1000, task_items=300)
        check(r, s, x, y, mode)
        assert r.rows_out == r.own_size and r.rows_in == s.own_size + r.own_size


def test_progress_reports_every_stage():
    seen = {}

    def progress(stage, done, total):
        seen[stage] = (done, total)

    from protocols.memory import run_local
    from protocols.psi import run_holder, run_requester

    p = PsiParams(workers=0)
    run_local({"r": lambda ch: run_requester(ch["s"], ["a", "b", "c"], p, progress=progress),
               "s": lambda ch: run_holder(ch["r"], ["b", "c", "d", "e"], p)})
    assert seen["hashed"] == (3, 3)
    assert seen["blinded"][0] == 3 + 4
    assert seen["sent"] == (3, 3)
    assert seen["received"][0] == 4 + 3


def test_mode_mismatch_is_refused_at_both_ends():
    with pytest.raises(ProtocolError, match="mode 'both' asked, this job allows 'cardinality'"):
        run_psi(["a"], ["a"], "both", holder_params=PsiParams(mode="cardinality", workers=0))


def test_normalisation_and_salt_mismatch_are_refused():
    with pytest.raises(ProtocolError, match="normalisation differs"):
        run_psi(["a"], ["a"], holder_params=PsiParams(normalization=Normalization(nfkc=True),
                                                      workers=0))
    with pytest.raises(ProtocolError, match="salt differs"):
        run_psi(["a"], ["a"], salt=b"1" * 32,
                holder_params=PsiParams(salt=b"2" * 32, workers=0))


def test_agreed_job_salt_works():
    r, _ = run_psi(["a", "b"], ["b"], salt=b"j" * 32)
    assert r.intersection == ["b"]


def test_bad_params_are_refused():
    from pcnode.errors import InvalidInput

    for bad in (dict(mode="everything"), dict(chunk_size=0), dict(salt=b"short"),
                dict(workers=-1), dict(task_items=0)):
        with pytest.raises(InvalidInput):
            PsiParams(**bad).validate()


def test_join_handles_align_without_revealing_rows():
    x = [f"k{i}" for i in range(0, 300, 2)]
    y = [f"k{i}" for i in range(0, 300, 3)] + ["k0"]
    r, s = run_psi(x, y, "join")
    assert r.join.alignment_digest == s.join.alignment_digest
    assert r.intersection is None and s.intersection is None and s.size is None
    assert r.size == len(set(x) & set(y))
    # Combining both handles (which no party can do alone) gives the holder's matching rows.
    matched_rows = s.join.stream_rows[r.join.holder_positions]
    assert {y[i] for i in matched_rows} == set(x) & set(y)
    assert s.join.row_positions[-1] == s.join.row_positions[0]  # duplicate "k0" shares a handle
    assert set(r.join.describe()) >= {"alignment_digest", "matched_positions"}


def test_real_process_pool_gives_the_same_answer():
    rnd = random.Random(3)
    x = [f"p{rnd.randrange(3000)}" for _ in range(2500)]
    y = [f"p{rnd.randrange(3000)}" for _ in range(2500)]
    r, s = run_psi(x, y, "both", workers=2, task_items=500)
    check(r, s, x, y, "both")


def test_a_shared_pool_can_be_passed_in():
    from protocols.memory import run_local
    from protocols.psi import make_pool, run_holder, run_requester

    p = PsiParams()
    with make_pool(1) as pool:
        out = run_local({
            "r": lambda ch: run_requester(ch["s"], ["a", "b"], p, pool=pool),
            "s": lambda ch: run_holder(ch["r"], ["b", "c"], p, pool=pool),
        })
    assert out["r"].intersection == ["b"]


def test_rows_without_collecting_items():
    r, s = run_psi(["a", "b", "c"], ["c", "a"], "both", collect_items=False)
    assert r.intersection is None and r.rows.tolist() == [0, 2] and r.size == 2
    assert s.intersection is None and s.rows.tolist() == [0, 1]


@pytest.mark.parametrize("mode", MODES)
def test_streams_larger_than_the_link_buffer(mode):
    # 4,000 points per side is 128 KB per stream against a 16 KB link: a party that
    # sent its whole stream before reading the peer's would block both ends.
    x = [f"k{i}" for i in range(4000)]
    y = [f"k{i}" for i in range(2000, 6000)]
    r, s = run_psi(x, y, mode, chunk_size=256, max_buffered_bytes=16 << 10, timeout=10.0)
    check(r, s, x, y, mode)
