"""Canonical encoding: deterministic, documented, and strict when reading."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.encoding import MAX_SAFE_INT, _encoder, canonical_json, encode_checked_value, parse_canonical
from ledger.timefmt import MAX_TIME_US, format_time, parse_canonical_time, to_us
from pcnode.errors import InvalidInput

scalars = st.one_of(st.none(), st.booleans(), st.integers(-MAX_SAFE_INT, MAX_SAFE_INT),
                    st.text())
objects = st.dictionaries(st.text(), st.one_of(scalars, st.lists(scalars, max_size=4),
                                              st.dictionaries(st.text(), scalars, max_size=4)))


def test_known_bytes() -> None:
    value = {"b": 1, "a": "é\n\"\\\x01", "c": [True, None, -5], "A": {}}
    assert canonical_json(value) == (
        b'{"A":{},"a":"\xc3\xa9\\n\\"\\\\\\u0001","b":1,"c":[true,null,-5]}')


@given(objects)
def test_deterministic_and_round_trips(value: dict) -> None:
    data = canonical_json(value)
    assert canonical_json(json.loads(data)) == data
    assert parse_canonical(data) == value
    # insertion order does not matter
    assert canonical_json(dict(reversed(list(value.items())))) == data


@given(objects)
def test_fast_encoder_matches_the_reference_encoder(value: dict) -> None:
    # orjson writes the bytes only when they need no escape; the reference
    # (standard-library) encoder must agree byte for byte on every value.
    assert encode_checked_value(value) == _encoder.encode(value).encode("utf-8")


@pytest.mark.parametrize("text", ["\x7f", "\u2028\u2029", "\U0001f600", "\x00\x1f", "</script>",
                                  "\\", '"', "\ufeff", "é" * 3])
def test_fast_encoder_edge_strings(text: str) -> None:
    value = {"k": text, "z": [text], "a": {text: 1}}
    assert encode_checked_value(value) == _encoder.encode(value).encode("utf-8")


@pytest.mark.parametrize("value", [{"x": 1.5}, {"x": float("nan")}, {"x": 2**53},
                                   {"x": -(2**53)}, {"x": b"bytes"}, {1: "int key"},
                                   {"x": "\ud800"}, {"x": {1, 2}}])
def test_rejects_values_without_canonical_form(value: dict) -> None:
    with pytest.raises(InvalidInput):
        canonical_json(value)


@pytest.mark.parametrize("data", [b'{"b":1,"a":2}', b'{"a": 1}', b'{"a":1.0}', b'{"a":1,"a":1}',
                                  b'{"a":"\\u00e9"}', b"[1]", b'{"a":NaN}', b"\xff",
                                  b'{"a":1}\n', b'{"a":9007199254740993}'])
def test_parse_rejects_non_canonical(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_canonical(data)


def test_time_format() -> None:
    assert format_time(0) == "1970-01-01T00:00:00.000000Z"
    assert format_time(1_700_000_000_123_456) == "2023-11-14T22:13:20.123456Z"
    assert parse_canonical_time("2023-11-14T22:13:20.123456Z") == 1_700_000_000_123_456
    assert to_us("2023-11-15T06:13:20.123456+08:00") == 1_700_000_000_123_456
    for bad in ("2023-11-14T22:13:20Z", "2023-11-14 22:13:20.123456Z",
                "2023-11-14T22:13:20.123456+00:00", "2023-02-30T00:00:00.000000Z"):
        with pytest.raises(InvalidInput):
            parse_canonical_time(bad)
    with pytest.raises(InvalidInput):
        to_us("2023-11-14T22:13:20")  # no zone
    with pytest.raises(InvalidInput):
        format_time(-1)
    with pytest.raises(InvalidInput):
        format_time(MAX_TIME_US + 1)
    with pytest.raises(InvalidInput):
        format_time(True)  # type: ignore[arg-type]
    assert format_time(MAX_TIME_US) == "9999-12-31T23:59:59.999999Z"


def test_time_format_matches_datetime() -> None:
    """The per-second cache of format_time gives datetime's spelling, second boundaries too."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rng = random.Random(7)
    samples = [0, 999_999, 1_000_000, 1_700_000_000_999_999, 1_700_000_001_000_000,
               MAX_TIME_US, *(rng.randrange(MAX_TIME_US) for _ in range(2000))]
    for us in samples + samples[::-1]:
        reference = (epoch + timedelta(microseconds=us)).isoformat(timespec="microseconds")
        assert format_time(us) == reference[:-6] + "Z", us
        assert parse_canonical_time(format_time(us)) == us
