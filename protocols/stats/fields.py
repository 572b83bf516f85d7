"""The per-row quantities a query sums, and how the holder computes them from its columns.

Every query becomes a list of *fields*, each summed per group over the matched rows:

* ``count`` - 1 per row (always first; the k-threshold needs it);
* ``sum:C`` - ``x'`` where ``x' = clip(x) - lo_C`` is the column shifted to be >= 0;
* ``sumsq:C`` - ``x'^2`` (for var/std);
* ``hist:C:EDGES#i`` - 1 if the (clipped) value falls in bin ``i``.

Shifting by ``lo_C`` keeps packed integers non-negative; the requester undoes it:
``sum x = S1 + n lo`` and ``sum x^2 = S2 + 2 lo S1 + n lo^2``. ``lo_C`` is the
declared lower clipping bound, or else the power-of-two envelope of the data
(0 for a non-negative column, ``-2^k`` otherwise), which is all the requester
learns about the column's range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pcnode.errors import InvalidInput

from .query import StatsQuery

COUNT, SUM, SUMSQ, HIST = "count", "sum", "sumsq", "hist"


@dataclass(frozen=True)
class Field:
    """One summed quantity: kind, column index into ``columns``, histogram index and bin."""

    name: str
    kind: str
    column: int = -1
    hist: int = -1
    bin: int = -1


def field_plan(query: StatsQuery) -> list[Field]:
    """Fields of ``query`` in wire order: count, per column sum/sumsq, then histogram bins."""
    cols = query.value_columns
    out = [Field(COUNT, COUNT)]
    for ci, c in enumerate(cols):
        if query.needs(c, SUM):
            out.append(Field(f"sum:{c}", SUM, ci))
        if query.needs(c, SUMSQ):
            out.append(Field(f"sumsq:{c}", SUMSQ, ci))
    for hi, h in enumerate(query.histograms):
        ci = cols.index(h.column or "")
        for b in range(len(h.edges or ()) - 1):
            out.append(Field(f"{h.name}#{b}", HIST, ci, hi, b))
    return out


def prepare_columns(query: StatsQuery, columns: Mapping[str, np.ndarray],
                    n_rows: int) -> dict[str, np.ndarray]:
    """The query's value columns as float64, clipped to declared bounds; InvalidInput if unusable."""
    out = {}
    for c in query.value_columns:
        if c not in columns:
            raise InvalidInput(f"the holder has no column {c!r}",
                               hint=f"available: {', '.join(sorted(columns)) or 'none'}")
        try:
            x = np.asarray(columns[c], dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInput(f"column {c!r} is not numeric") from None
        if x.shape != (n_rows,):
            raise InvalidInput(f"column {c!r} has {x.shape[0] if x.ndim else 0} values for {n_rows} keys")
        if not np.all(np.isfinite(x)):
            raise InvalidInput(f"column {c!r} has missing or non-finite values",
                               hint="drop or impute them before a joint statistic")
        if c in query.bounds:
            lo, hi = query.bounds[c]
            x = np.clip(x, lo, hi)
        out[c] = x
    return out


def hist_bins(query: StatsQuery, prepared: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Per histogram, each row's bin index (-1 outside the edges), numpy.histogram semantics."""
    out = []
    for h in query.histograms:
        edges = np.asarray(h.edges, dtype=np.float64)
        x = prepared[h.column or ""]
        idx = np.searchsorted(edges, x, side="right") - 1
        idx[x == edges[-1]] = len(edges) - 2  # the last bin is closed
        idx[(x < edges[0]) | (x > edges[-1])] = -1
        out.append(idx.astype(np.int32))
    return out


def group_index(group: np.ndarray | None, n_rows: int,
                max_groups: int) -> tuple[list[str], np.ndarray]:
    """Sorted distinct labels (as text) and each row's index; one group ``all`` when ``group`` is None."""
    if group is None:
        return ["all"], np.zeros(n_rows, dtype=np.int32)
    g = np.asarray(group)
    if g.shape != (n_rows,):
        raise InvalidInput(f"the group column has {g.shape[0] if g.ndim else 0} values for {n_rows} keys")
    labels = np.array([str(v) for v in g.tolist()], dtype=object)
    uniq, idx = np.unique(labels, return_inverse=True)
    if len(uniq) > max_groups:
        raise InvalidInput(f"the group column has {len(uniq)} distinct values; "
                           f"at most {max_groups} are allowed", hint="group by a coarser column")
    return [str(u) for u in uniq.tolist()], idx.astype(np.int32)


__all__ = ["COUNT", "HIST", "SUM", "SUMSQ", "Field", "field_plan", "group_index", "hist_bins",
           "prepare_columns"]
