"""Results of a joint-statistics query: per-group rows, suppression, and the CSV shape."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ..dp import DpSpec
from .query import StatsQuery, result_columns

Number = Fraction | float | int


@dataclass
class GroupSums:
    """What the requester reconstructs for one group: count, per-column sums, histogram bins."""

    label: str
    count: int = 0
    suppressed: bool = False
    s1: dict[str, Number] = field(default_factory=dict)
    s2: dict[str, Number] = field(default_factory=dict)
    hist: dict[str, list[Number]] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupRow:
    """One output row: the group label, its count and each aggregate (``None`` when suppressed)."""

    group: str
    count: int | None
    values: dict[str, float | int | None]
    suppressed: bool = False


@dataclass
class StatsResult:
    """What the requester learns: per-group aggregates, which groups were suppressed, and why."""

    query: StatsQuery
    backend: str
    k: int
    groups: list[GroupRow]
    intersection_size: int
    dp: DpSpec | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def suppressed(self) -> list[str]:
        """Labels of the groups withheld because their count was below k (or to protect one that was)."""
        return [g.group for g in self.groups if g.suppressed]

    @property
    def columns(self) -> list[str]:
        """CSV header: ``group, count, <one column per aggregate or histogram bin>``."""
        return result_columns(self.query)

    def row(self, label: str) -> GroupRow:
        """The row of one group; KeyError if absent."""
        for g in self.groups:
            if g.group == label:
                return g
        raise KeyError(label)

    def to_rows(self, include_suppressed: bool = True) -> list[dict[str, Any]]:
        """One dict per group in CSV column order; suppressed groups have empty values.

        A final ``suppressed`` column is ``True`` for withheld groups.
        """
        cols = self.columns
        out = []
        for g in self.groups:
            if g.suppressed and not include_suppressed:
                continue
            row: dict[str, Any] = {"group": g.group, "count": g.count}
            for c in cols[2:]:
                row[c] = g.values.get(c)
            row["suppressed"] = g.suppressed
            out.append(row)
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (for ``--json``)."""
        return {
            "backend": self.backend,
            "k": self.k,
            "intersection_size": self.intersection_size,
            "columns": self.columns,
            "rows": self.to_rows(),
            "suppressed": self.suppressed,
            "dp": None if self.dp is None else {"epsilon": self.dp.epsilon,
                                                 "mechanism": self.dp.mechanism.value,
                                                 "delta": self.dp.delta},
        }


def _div(a: Number, b: Number) -> Number:
    if isinstance(a, (Fraction, int)) and isinstance(b, (Fraction, int)):
        return Fraction(a) / Fraction(b)
    return float(a) / float(b)


def finalize(query: StatsQuery, sums: list[GroupSums]) -> list[GroupRow]:
    """Turn reconstructed sums into aggregates (exact rationals stay exact until the final float)."""
    rows = []
    for g in sums:
        if g.suppressed:
            rows.append(GroupRow(g.label, None, dict.fromkeys(result_columns(query)[2:]), True))
            continue
        n = g.count
        values: dict[str, float | int | None] = {}
        for a in query.aggregates:
            if a.kind == "count":
                continue
            col = a.column or ""
            if a.kind == "hist":
                for label, v in zip(a.bin_labels(), g.hist[a.name], strict=True):
                    values[f"hist:{col}:{label}"] = max(0, round(float(v)))
                continue
            s1 = g.s1[col]
            if a.kind == "sum":
                values[a.name] = float(s1)
                continue
            if n <= 0:
                values[a.name] = math.nan
                continue
            mean = _div(s1, n)
            if a.kind == "mean":
                values[a.name] = float(mean)
                continue
            if n - query.ddof <= 0:
                values[a.name] = math.nan
                continue
            s2 = g.s2[col]
            var = _div(s2 - s1 * mean, n - query.ddof)
            var_f = max(0.0, float(var))
            values[a.name] = var_f if a.kind == "var" else math.sqrt(var_f)
        rows.append(GroupRow(g.label, int(n), values, False))
    return rows


def suppress(counts: Mapping[int, int], k: int) -> set[int]:
    """Groups to withhold: those with count < k, plus complementary suppression.

    The requester knows the total intersection size, so a single withheld group's
    count would follow by subtraction; if exactly one group is below ``k``, the
    smallest other group is withheld too.
    """
    primary = {g for g, c in counts.items() if c < k}
    if len(primary) == 1 and len(counts) > 1:
        rest = sorted((c, g) for g, c in counts.items() if g not in primary)
        primary.add(rest[0][1])
    return primary


__all__ = ["GroupRow", "GroupSums", "StatsResult", "finalize", "suppress"]
