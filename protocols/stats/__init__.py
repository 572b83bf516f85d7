"""Joint statistics over the intersection: Paillier (exact) and CKKS (fast) intersection-aggregate.

Entry points for the node::

    run_requester(channel, keys, query, *, group=None, pool=None) -> StatsResult
    run_holder(channel, keys, columns, group, query, k, backend, *,
               allow_requester_grouping=False, accountant=None, require_dp=False,
               pool=None, ...) -> HolderReport

``StatsQuery.parse("count,sum:income,mean:income,hist:income:0|1000|5000",
group_by="district")`` builds a query from the CLI syntax. See docs/STATS.md
for the protocol, what each party learns, and the bit budgets.
"""

from .protocol import BACKENDS, HolderReport, run_holder, run_requester
from .query import Aggregate, StatsQuery
from .result import GroupRow, StatsResult

__all__ = [
    "BACKENDS",
    "Aggregate",
    "GroupRow",
    "HolderReport",
    "StatsQuery",
    "StatsResult",
    "run_holder",
    "run_requester",
]
