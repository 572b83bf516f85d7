"""Key normalisation, deduplication/membership tables and the item-source abstraction."""

import numpy as np
import pytest

from pcnode.errors import InvalidInput, ProtocolError
from protocols.psi.normalize import Normalization, encode_item, normalize, resident_id_valid
from protocols.psi.source import ItemSource, as_source
from protocols.psi.table import KeyTable, OrderChecker, dedupe, sort_points

# -- normalisation ------------------------------------------------------------------


def test_default_only_strips():
    assert normalize("  Ab c \t", Normalization()) == "Ab c"


def test_nfkc_then_strip_then_casefold():
    norm = Normalization(nfkc=True, casefold=True)
    # an ideographic space and full-width letters and digits
    assert normalize("\u3000\uff21\uff22\uff23\uff11\uff12\uff13 ", norm) == "abc123"
    assert normalize("Straße", Normalization(casefold=True)) == "strasse"


def test_resident_id_trailing_x_becomes_upper_even_after_casefold():
    norm = Normalization(nfkc=True, casefold=True, resident_id=True)
    assert normalize(" 11010519491231002x ", norm) == "11010519491231002X"
    full_width = "".join(chr(0xFF10 + int(c)) for c in "11010519491231002") + "\uff58"
    assert normalize(full_width, norm) == "11010519491231002X"
    # only an 18-character value is touched
    assert normalize("abcx", Normalization(resident_id=True)) == "abcx"


def test_resident_id_check_digit():
    assert resident_id_valid("11010519491231002X")
    assert not resident_id_valid("110105194912310021")
    assert not resident_id_valid("1101051949123100")
    norm = Normalization(resident_id=True, resident_id_check=True)
    assert normalize("11010519491231002x", norm) == "11010519491231002X"
    assert normalize("110105194912310021", norm) is None


def test_skip_empty_and_bytes_verbatim():
    assert normalize("   ", Normalization(skip_empty=True)) is None
    assert normalize("   ", Normalization()) == ""
    assert encode_item(b" raw ", Normalization()) == b" raw "
    with pytest.raises(InvalidInput, match="str or bytes"):
        encode_item(42, Normalization())  # type: ignore[arg-type]


def test_parse_and_round_trip():
    norm = Normalization.parse("strip, nfkc,casefold,resident-id")
    assert norm == Normalization(strip=True, nfkc=True, casefold=True, resident_id=True)
    assert Normalization.parse("none") == Normalization(strip=False)
    assert Normalization.from_dict(norm.to_dict()) == norm
    with pytest.raises(InvalidInput, match="unknown normalisation"):
        Normalization.parse("strip,lowercase")
    with pytest.raises(ProtocolError):
        Normalization.from_dict({"strip": "yes"})


# -- tables ----------------------------------------------------------------------------


def pts(rows):
    return np.array([list(r) + [0] * (32 - len(r)) for r in rows], dtype=np.uint8)


def test_dedupe_keeps_first_occurrence_in_key_order_and_counts():
    p = pts([[5], [1], [5], [3], [1], [9]])
    valid = np.array([True, True, True, True, True, False])
    d = dedupe(p, valid)
    assert d.rows.tolist() == [1, 3, 0]  # keys 1, 3, 5 (first rows 1, 3, 0)
    assert d.duplicates == 2
    assert d.inverse.tolist() == [2, 0, 2, 1, 0, -1]


def test_dedupe_empty():
    d = dedupe(np.zeros((0, 32), np.uint8), np.zeros(0, bool))
    assert d.rows.size == 0 and d.duplicates == 0


def test_key_table_membership_including_shared_high_words():
    rows = [[0] * 7 + [1] + [0] * 7 + [k] for k in (1, 5, 9)] + [[2], [3]]
    table = KeyTable(pts(rows))
    query = pts([[0] * 7 + [1] + [0] * 7 + [5], [0] * 7 + [1] + [0] * 7 + [6], [3], [4]])
    assert table.contains(query).tolist() == [True, False, True, False]
    assert KeyTable(pts([])[:0]).contains(query).tolist() == [False] * 4


def test_order_checker_spans_chunks():
    c = OrderChecker()
    assert c.ok(pts([[1], [2]])) and c.ok(pts([[3]]))
    assert not c.ok(pts([[3]]))  # repeat across chunks
    assert not OrderChecker().ok(pts([[2], [1]]))
    assert not OrderChecker().ok(pts([[2], [2]]))


def test_sort_points_is_byte_order():
    p = pts([[0, 2], [0, 1], [1, 0]])
    assert sort_points(p)[:, :2].tolist() == [[0, 1], [0, 2], [1, 0]]


# -- sources ---------------------------------------------------------------------------


def test_list_source_chunks_and_take():
    src = as_source([f"k{i}" for i in range(10)])
    assert [len(c) for c in src.chunks(4)] == [4, 4, 2]
    assert src.take(np.array([1, 7])) == ["k1", "k7"]


def test_factory_source_is_read_again_for_take():
    calls = []

    def factory():
        calls.append(1)
        return ([f"k{i}" for i in range(j, j + 3)] for j in range(0, 9, 3))

    src = ItemSource.from_chunks(factory)
    assert sum(len(c) for c in src.chunks(2)) == 9
    assert src.take(np.array([0, 4, 8])) == ["k0", "k4", "k8"]
    assert len(calls) == 2


def test_one_shot_source_retains_only_when_asked():
    src = as_source(f"k{i}" for i in range(5))
    list(src.chunks(2, retain=True))
    assert src.take(np.array([3])) == ["k3"]
    src2 = as_source(iter(["a"]))
    list(src2.chunks(2))
    with pytest.raises(InvalidInput):
        src2.take(np.array([0]))
    with pytest.raises(InvalidInput, match="already read"):
        list(src2.chunks(2))


def test_bad_sources_are_refused():
    with pytest.raises(InvalidInput):
        as_source("a string")
    with pytest.raises(InvalidInput):
        as_source(42)
    with pytest.raises(InvalidInput, match="single item"):
        list(ItemSource.from_chunks(lambda: ["abc"]).chunks(2))
