"""Fixed point and slot packing: exactness, the bit budget, and layout validation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcnode.errors import InvalidInput, ProtocolError
from protocols.he.packing import (
    CARRY_BITS,
    MASK_BITS,
    ColumnEncoding,
    FieldSpec,
    FixedPoint,
    SlotLayout,
    bits_for_count,
)


def test_fixed_point_is_exact_for_declared_decimals():
    fp = FixedPoint(2)
    assert fp.encode(np.array([1.23, -0.07, 1e6])).tolist() == [123, -7, 100000000]
    with pytest.raises(InvalidInput, match="non-finite"):
        fp.encode(np.array([np.nan]))
    with pytest.raises(InvalidInput, match="too large"):
        fp.encode(np.array([1e17]))
    with pytest.raises(InvalidInput):
        FixedPoint(13)


def test_column_encoding_discloses_only_a_power_of_two_envelope():
    enc = ColumnEncoding.covering("x", np.array([3, 1000, 17]))
    assert (enc.lo, enc.value_bits) == (0, 10)
    neg = ColumnEncoding.covering("x", np.array([-5, 1000]))
    assert neg.lo == -1024 and neg.value_bits == 11
    assert neg.shift(np.array([-5, 1000])).tolist() == [1019, 2024]
    bounded = ColumnEncoding.from_bounds("x", -100, 100)
    with pytest.raises(InvalidInput, match="outside its declared bounds"):
        bounded.shift(np.array([300]))


def test_widths_follow_the_documented_budget():
    assert FieldSpec("count", 17, masked=False).width == 17
    assert FieldSpec("sum:x", 27 + 17, masked=True).width == 27 + 17 + MASK_BITS + CARRY_BITS


def test_twenty_groups_of_count_and_two_sums_fit_in_two_2048_bit_plaintexts():
    lb = bits_for_count(120_000)
    fields = [FieldSpec("count", lb, False), FieldSpec("sum:a", 27 + lb, True),
              FieldSpec("sum:b", 24 + lb, True)]
    layout = SlotLayout(fields, 20, 2047)
    assert layout.n_ciphertexts == 2


@settings(max_examples=40, deadline=None)
@given(bits=st.lists(st.integers(1, 60), min_size=1, max_size=5),
       groups=st.integers(1, 12), rows=st.integers(1, 50), data=st.data())
def test_sums_plus_masks_never_carry_between_slots(bits, groups, rows, data):
    lb = bits_for_count(rows)
    fields = [FieldSpec("count", lb, False)] + [
        FieldSpec(f"sum:{i}", b + lb, True) for i, b in enumerate(bits)]
    layout = SlotLayout(fields, groups, 1023)
    total = [0] * layout.n_ciphertexts
    expect = {}
    for _ in range(rows):
        g = data.draw(st.integers(0, groups - 1))
        vals = [1] + [data.draw(st.integers(0, 2**b - 1)) for b in bits]
        for t, m in enumerate(layout.pack(g, vals)):
            total[t] += m
        for f, v in enumerate(vals):
            expect[(g, f)] = expect.get((g, f), 0) + v
    per_ct, per_slot = layout.random_masks()
    masked = [a + b for a, b in zip(total, per_ct, strict=True)]
    assert all(m < 2**1023 for m in masked)
    for g in range(groups):
        for f in range(len(fields)):
            got = layout.slot_value(masked, g, f) - per_slot.get((g, f), 0)
            assert got == expect.get((g, f), 0)


def test_layout_round_trip_and_validation():
    fields = [FieldSpec("count", 8, False), FieldSpec("sum:x", 20, True)]
    layout = SlotLayout(fields, 3, 2047)
    back = SlotLayout.from_json(layout.to_json(), 2047)
    assert back.slots == layout.slots
    with pytest.raises(ProtocolError, match="key size"):
        SlotLayout.from_json(layout.to_json(), 3071)
    bad = layout.to_json()
    bad["slots"][1][3] = bad["slots"][0][3]  # overlap
    with pytest.raises(ProtocolError, match=r"overlapping|twice"):
        SlotLayout.from_json(bad, 2047)
    with pytest.raises(InvalidInput, match="more than a plaintext"):
        SlotLayout([FieldSpec("sum:x", 3000, True)], 1, 2047)
