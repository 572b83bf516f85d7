"""What a joint-statistics query asks for, parsed from the CLI syntax and sent on the wire.

CLI syntax (``--agg``)::

    count,sum:COL,mean:COL,var:COL,std:COL,hist:COL:EDGES

``EDGES`` are two or more increasing numbers separated by ``|`` (``0|1000|5000``);
bins are ``[e0, e1), ..., [e_{k-1}, e_k]`` as in ``numpy.histogram``, and values
outside ``[e0, e_k]`` fall in no bin. ``count`` is always reported (it is
needed for the k-threshold) whether or not it is listed. ``var`` and ``std``
are population statistics (``ddof = 0``) unless the query sets ``ddof = 1``.

Clipping bounds (``--clip income=0:200000,tax=0:5e4``) are optional, except
that differential privacy needs them for every value column: the sensitivity
of a sum is ``max(|lo|, |hi|)``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pcnode.errors import InvalidInput, ProtocolError

from ..dp import DpSpec, Mechanism

#: Aggregate kinds and the per-column sums each needs.
KINDS: dict[str, tuple[str, ...]] = {
    "count": (),
    "sum": ("sum",),
    "mean": ("sum",),
    "var": ("sum", "sumsq"),
    "std": ("sum", "sumsq"),
    "hist": ("hist",),
}
#: Histogram bins per aggregate: each bin is one packed slot per group.
MAX_BINS = 64
#: Default fixed-point precision: cents for money, a common declared precision.
DEFAULT_DECIMALS = 2
#: Group sides.
HOLDER, REQUESTER = "holder", "requester"
_COLUMN = re.compile(r"^[A-Za-z_\u0080-\uffff][\w.\-\u0080-\uffff]{0,127}$")


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InvalidInput(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise InvalidInput(f"{what}: {text!r} is not a finite number")
    return v


def _check_column(name: str, where: str) -> str:
    if not _COLUMN.match(name):
        raise InvalidInput(f"{where}: {name!r} is not a valid column name",
                           hint="column names are letters, digits, '_', '.', '-'")
    return name


@dataclass(frozen=True)
class Aggregate:
    """One requested statistic: ``kind`` over ``column`` (``edges`` for ``hist``)."""

    kind: str
    column: str | None = None
    edges: tuple[float, ...] | None = None

    @property
    def name(self) -> str:
        """Its name in results and CSV headers, e.g. ``mean:income``."""
        if self.kind == "count":
            return "count"
        if self.kind == "hist":
            return f"hist:{self.column}:{'|'.join(_fmt(e) for e in self.edges or ())}"
        return f"{self.kind}:{self.column}"

    def bin_labels(self) -> list[str]:
        """Labels of a histogram's bins, e.g. ``[0,1000)`` ... ``[1000,5000]``."""
        e = self.edges or ()
        return [f"[{_fmt(a)},{_fmt(b)}{']' if i == len(e) - 2 else ')'}"
                for i, (a, b) in enumerate(itertools.pairwise(e))]

    @classmethod
    def parse(cls, text: str) -> Aggregate:
        """Parse one ``kind[:COL[:EDGES]]`` term."""
        parts = text.strip().split(":")
        kind = parts[0].strip().lower()
        if kind not in KINDS:
            raise InvalidInput(f"unknown aggregate {parts[0]!r}",
                               hint="use count, sum:COL, mean:COL, var:COL, std:COL, hist:COL:EDGES")
        if kind == "count":
            if len(parts) != 1:
                raise InvalidInput("'count' takes no column", hint="write just 'count'")
            return cls("count")
        if kind == "hist":
            if len(parts) != 3 or not parts[2]:
                raise InvalidInput(f"{text!r}: a histogram needs a column and edges",
                                   hint="write hist:COL:0|1000|5000")
            col = _check_column(parts[1].strip(), text)
            edges = tuple(_number(e.strip(), f"edges of {text!r}") for e in parts[2].split("|"))
            if len(edges) < 2 or len(edges) > MAX_BINS + 1:
                raise InvalidInput(f"{text!r}: a histogram needs 2 to {MAX_BINS + 1} edges")
            if any(b <= a for a, b in itertools.pairwise(edges)):
                raise InvalidInput(f"{text!r}: histogram edges must be strictly increasing")
            return cls("hist", col, edges)
        if len(parts) != 2 or not parts[1].strip():
            raise InvalidInput(f"{text!r}: {kind} needs one column", hint=f"write {kind}:COL")
        return cls(kind, _check_column(parts[1].strip(), text))

    def to_json(self) -> list[Any]:
        """Wire form."""
        return [self.kind, self.column, list(self.edges) if self.edges else None]

    @classmethod
    def from_json(cls, d: Any) -> Aggregate:
        """Parse the wire form; ProtocolError if malformed."""
        try:
            kind, col, edges = d
            if kind == "count":
                return cls("count")
            text = f"{kind}:{col}" + (":" + "|".join(repr(float(e)) for e in edges) if edges else "")
            return cls.parse(text)
        except (TypeError, ValueError, InvalidInput) as exc:
            raise ProtocolError(f"peer sent a malformed aggregate: {exc}") from None


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def parse_bounds(spec: str | Mapping[str, tuple[float, float]] | None) -> dict[str, tuple[float, float]]:
    """Parse ``col=lo:hi,...`` (or pass a mapping through, checked)."""
    if spec is None or spec == "":
        return {}
    out: dict[str, tuple[float, float]] = {}
    items: list[tuple[str, Any]]
    if isinstance(spec, str):
        items = []
        for term in spec.split(","):
            if "=" not in term or ":" not in term.split("=", 1)[1]:
                raise InvalidInput(f"bad clipping bound {term!r}",
                                   hint="write COL=LO:HI, e.g. income=0:200000")
            col, rng = term.split("=", 1)
            lo, hi = rng.rsplit(":", 1) if rng.count(":") == 1 else (None, None)
            if lo is None:
                raise InvalidInput(f"bad clipping bound {term!r}", hint="write COL=LO:HI")
            items.append((col.strip(), (lo, hi)))
    else:
        items = list(spec.items())
    for col, (lo, hi) in items:
        _check_column(col, "clipping bounds")
        lo_f, hi_f = _number(str(lo), f"lower bound of {col}"), _number(str(hi), f"upper bound of {col}")
        if hi_f <= lo_f:
            raise InvalidInput(f"clipping bounds of {col!r} must have lo < hi")
        out[col] = (lo_f, hi_f)
    return out


@dataclass(frozen=True)
class StatsQuery:
    """A joint-statistics query over the intersection."""

    aggregates: tuple[Aggregate, ...]
    group_by: str | None = None
    group_side: str = HOLDER
    decimals: int = DEFAULT_DECIMALS
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    dp: DpSpec | None = None
    ddof: int = 0

    def __post_init__(self) -> None:
        if not self.aggregates:
            raise InvalidInput("a query needs at least one aggregate")
        names = [a.name for a in self.aggregates]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise InvalidInput(f"aggregate {dup!r} is listed twice")
        if self.group_side not in (HOLDER, REQUESTER):
            raise InvalidInput(f"group side must be {HOLDER!r} or {REQUESTER!r}")
        if self.group_by is not None:
            _check_column(self.group_by, "--group-by")
        if not 0 <= self.decimals <= 12:
            raise InvalidInput("precision must be 0..12 decimals")
        if self.ddof not in (0, 1):
            raise InvalidInput("ddof must be 0 (population) or 1 (sample)")
        if self.dp is not None:
            missing = [c for c in self.value_columns if c not in self.bounds]
            if missing:
                raise InvalidInput(
                    "differential privacy needs clipping bounds for every value column",
                    hint=f"add --clip {missing[0]}=LO:HI (sensitivity comes from the bounds)",
                    missing=missing,
                )

    @classmethod
    def parse(cls, agg: str, *, group_by: str | None = None, group_side: str = HOLDER,
              decimals: int = DEFAULT_DECIMALS,
              bounds: str | Mapping[str, tuple[float, float]] | None = None,
              epsilon: float | None = None, mechanism: str = "laplace",
              delta: float | None = None, ddof: int = 0) -> StatsQuery:
        """Build a query from CLI-style arguments; InvalidInput says what is wrong."""
        if not isinstance(agg, str) or not agg.strip():
            raise InvalidInput("--agg is empty", hint="e.g. --agg count,mean:income")
        terms = [t for t in agg.split(",") if t.strip()]
        aggs = [Aggregate.parse(t) for t in terms]
        if not any(a.kind == "count" for a in aggs):
            aggs.insert(0, Aggregate("count"))
        dp = DpSpec.make(epsilon, mechanism, delta) if epsilon is not None else None
        return cls(tuple(aggs), group_by, group_side, decimals, parse_bounds(bounds), dp, ddof)

    # -- derived -------------------------------------------------------------------------

    @property
    def value_columns(self) -> list[str]:
        """Holder columns the query reads, in first-use order."""
        out: list[str] = []
        for a in self.aggregates:
            if a.column is not None and a.column not in out:
                out.append(a.column)
        return out

    def needs(self, column: str, what: str) -> bool:
        """Whether ``column`` needs the ``sum`` or ``sumsq`` field."""
        return any(a.column == column and what in KINDS[a.kind] for a in self.aggregates)

    @property
    def histograms(self) -> list[Aggregate]:
        """The histogram aggregates."""
        return [a for a in self.aggregates if a.kind == "hist"]

    # -- wire form ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Wire form."""
        return {
            "aggregates": [a.to_json() for a in self.aggregates],
            "group_by": self.group_by,
            "group_side": self.group_side,
            "decimals": self.decimals,
            "bounds": {k: [v[0], v[1]] for k, v in self.bounds.items()},
            "dp": None if self.dp is None else {"epsilon": self.dp.epsilon,
                                                 "mechanism": self.dp.mechanism.value,
                                                 "delta": self.dp.delta},
            "ddof": self.ddof,
        }

    @classmethod
    def from_json(cls, d: Any) -> StatsQuery:
        """Parse the wire form; ProtocolError if malformed, InvalidInput if invalid."""
        try:
            aggs = tuple(Aggregate.from_json(a) for a in d["aggregates"])
            bounds = {str(k): (float(v[0]), float(v[1])) for k, v in d["bounds"].items()}
            dp = d["dp"]
            spec = None if dp is None else DpSpec(float(dp["epsilon"]), Mechanism.parse(dp["mechanism"]),
                                                  float(dp["delta"]))
            return cls(aggs, d["group_by"], str(d["group_side"]), int(d["decimals"]),
                       parse_bounds(bounds), spec, int(d["ddof"]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise ProtocolError("peer sent a malformed stats query") from None


def result_columns(query: StatsQuery) -> list[str]:
    """CSV header: ``group, count, <aggregate columns...>``; one column per histogram bin."""
    cols = ["group", "count"]
    for a in query.aggregates:
        if a.kind == "count":
            continue
        if a.kind == "hist":
            cols.extend(f"hist:{a.column}:{b}" for b in a.bin_labels())
        else:
            cols.append(a.name)
    return cols


def check_columns(query: StatsQuery, available: Sequence[str], side: str) -> None:
    """InvalidInput naming the first query column ``side`` does not have."""
    for c in query.value_columns:
        if c not in available:
            raise InvalidInput(f"the {side} has no column {c!r}",
                               hint=f"available: {', '.join(sorted(available)) or 'none'}")


__all__ = [
    "DEFAULT_DECIMALS",
    "HOLDER",
    "KINDS",
    "REQUESTER",
    "Aggregate",
    "StatsQuery",
    "check_columns",
    "parse_bounds",
    "result_columns",
]
