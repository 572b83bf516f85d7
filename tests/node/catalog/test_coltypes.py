"""Declared-type checks, numpy conversion and the key hash used by the profile."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from node.catalog.coltypes import to_numpy, valid_mask
from node.catalog.profile import compute_profile, hash_strings
from node.catalog.sources import sanitize


def test_valid_mask_per_type() -> None:
    values = pa.array(["12", " -3 ", "1.5", "abc", None, "2024-02-30", "2024-02-29", "true", ""])
    assert valid_mask(values, "integer").tolist() == [True, True, False, False, True, False,
                                                      False, False, False]
    assert valid_mask(values, "float").tolist()[:4] == [True, True, True, False]
    assert valid_mask(values, "date").tolist()[5:7] == [False, True]
    assert valid_mask(values, "boolean").tolist()[7] is True
    assert valid_mask(values, "string").all()


def test_to_numpy() -> None:
    ints = to_numpy(pa.array(["1", "2", "3"]), "integer")
    assert ints.dtype == np.int64 and ints.tolist() == [1, 2, 3]
    mixed = to_numpy(pa.array(["1", None, "x"]), "integer")
    assert mixed.dtype == np.float64 and mixed[0] == 1 and np.isnan(mixed[1:]).all()
    assert to_numpy(pa.array(["1.5", "bad"]), "float")[0] == 1.5
    assert to_numpy(pa.array(["yes", "0", None]), "boolean")[:2].tolist() == [1.0, 0.0]
    assert to_numpy(pa.array(["a", None]), "string").tolist() == ["a", None]


@given(st.lists(st.text(max_size=12), max_size=60))
def test_hash_strings_is_consistent_with_equality(items: list[str]) -> None:
    h = hash_strings(pa.array(items, pa.string()))
    assert len(h) == len(items)
    for i, a in enumerate(items):
        for j, b in enumerate(items):
            if a == b:
                assert h[i] == h[j]
    # distinct strings practically never collide
    assert len(set(h.tolist())) == len(set(items))


def test_hash_strings_on_a_sliced_array() -> None:
    arr = pa.array(["x", "ab", "ba", "ab", "", "c"])
    assert hash_strings(arr.slice(1, 3)).tolist() == hash_strings(
        pa.array(["ab", "ba", "ab"])).tolist()


def test_profile_of_an_empty_source() -> None:
    p = compute_profile([], "id", {"id": "string"})
    assert p["rows"] == 0 and p["key"]["unique_rate"] == 0.0


def test_sanitize_drops_values() -> None:
    assert sanitize("CSV parse error: Expected 3 columns, got 2: 1101,abc") == \
        "CSV parse error: Expected 3 columns, got 2"
    assert "secret" not in sanitize("invalid value 'secret' in row 3")
