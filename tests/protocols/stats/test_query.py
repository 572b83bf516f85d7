"""The query syntax: what parses, what is refused and how the refusal reads."""

import pytest

from pcnode.errors import InvalidInput, ProtocolError
from protocols.stats.query import Aggregate, StatsQuery, parse_bounds, result_columns


def test_parse_full_syntax():
    q = StatsQuery.parse("count,sum:income,mean:income,var:income,std:tax,hist:income:0|1000|5000",
                         group_by="district")
    assert [a.name for a in q.aggregates] == [
        "count", "sum:income", "mean:income", "var:income", "std:tax", "hist:income:0|1000|5000"]
    assert q.value_columns == ["income", "tax"]
    assert q.needs("income", "sumsq") and not q.needs("tax", "hist")
    assert result_columns(q) == ["group", "count", "sum:income", "mean:income", "var:income", "std:tax",
                                 "hist:income:[0,1000)", "hist:income:[1000,5000]"]


def test_count_is_always_reported():
    assert StatsQuery.parse("mean:x").aggregates[0] == Aggregate("count")


@pytest.mark.parametrize("agg,msg", [
    ("", "empty"),
    ("median:x", "unknown aggregate"),
    ("sum", "needs one column"),
    ("count:x", "takes no column"),
    ("hist:x", "needs a column and edges"),
    ("hist:x:5", "2 to"),
    ("hist:x:5|1", "strictly increasing"),
    ("hist:x:a|b", "not a number"),
    ("sum:x,sum:x", "listed twice"),
    ("sum:bad name", "not a valid column"),
])
def test_invalid_syntax_is_named(agg, msg):
    with pytest.raises(InvalidInput, match=msg):
        StatsQuery.parse(agg)


def test_dp_needs_bounds_for_every_value_column():
    with pytest.raises(InvalidInput, match="clipping bounds") as e:
        StatsQuery.parse("sum:income,mean:tax", epsilon=1.0, bounds="income=0:10")
    assert "--clip tax" in str(e.value)
    q = StatsQuery.parse("sum:income", epsilon=1.0, bounds="income=0:1e6")
    assert q.bounds == {"income": (0.0, 1e6)} and q.dp is not None


@pytest.mark.parametrize("spec", ["income", "income=5", "income=5:1", "income=a:b"])
def test_bad_bounds(spec):
    with pytest.raises(InvalidInput):
        parse_bounds(spec)


def test_wire_round_trip_and_malformed():
    q = StatsQuery.parse("count,mean:x,hist:x:-1.5|0|2.25", group_by="g", group_side="requester",
                         bounds="x=-2:3", epsilon=0.5, mechanism="gaussian", decimals=3)
    assert StatsQuery.from_json(q.to_json()) == q
    with pytest.raises(ProtocolError):
        StatsQuery.from_json({"aggregates": "nope"})
