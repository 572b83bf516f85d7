"""Regulator routes: read the ledger, its latest signed checkpoint, and Merkle proofs.

Read-only; they need no access to any data. The ledger is ``services().ledger``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from flask import Blueprint, request

from node.http.api import Param, api_route, query_int, query_time, services
from pcnode.errors import InvalidInput, NotFound

bp = Blueprint("ledger", __name__)

AUDITORS = ("regulator", "operator")
#: Most entries returned by one request.
MAX_ENTRIES = 1000


def _json(obj: Any) -> Any:
    """A ledger object's ``to_json()``, as parsed JSON whether it returns text or a dict."""
    value = obj.to_json()
    return json.loads(value) if isinstance(value, (str, bytes)) else value


@api_route(bp, "/api/v1/ledger/entries", "GET", roles=AUDITORS, summary="List ledger entries",
           query=[Param("start", "integer", "first index (default 0)"),
                  Param("stop", "integer", "index after the last"),
                  Param("limit", "integer", f"at most this many (default 100, max {MAX_ENTRIES})"),
                  Param("event", "string"), Param("job_id", "string"),
                  Param("dataset", "string"), Param("peer", "string"),
                  Param("since", "string", "ISO-8601 time"),
                  Param("until", "string", "ISO-8601 time")])
def entries() -> dict[str, Any]:
    """Entries in index order, filtered."""
    start = query_int("start", 0)
    stop = query_int("stop")
    limit = query_int("limit", 100, minimum=1)
    assert limit is not None
    if limit > MAX_ENTRIES:
        raise InvalidInput(f"limit must be at most {MAX_ENTRIES}")
    if stop is not None and start is not None and stop < start:
        raise InvalidInput("stop must not be smaller than start")
    filters: dict[str, Any] = {k: request.args[k] for k in ("event", "job_id", "dataset", "peer")
                               if request.args.get(k)}
    for key in ("since", "until"):
        value = query_time(key)
        if value is not None:
            filters[key] = value
    found = services().ledger.entries(start, stop, limit=limit, **filters)
    items = [e.to_dict() for e in itertools.islice(found, limit)]
    return {"entries": items, "count": len(items), "limit": limit}


@api_route(bp, "/api/v1/ledger/checkpoint", "GET", roles=AUDITORS,
           summary="Latest signed checkpoint (tree size and root)")
def checkpoint() -> Any:
    """The node's latest signed checkpoint."""
    cp = services().ledger.latest_checkpoint()
    if cp is None:
        raise NotFound("the ledger has no checkpoint yet")
    return _json(cp)


@api_route(bp, "/api/v1/ledger/proofs/inclusion", "GET", roles=AUDITORS,
           summary="Merkle inclusion proof of one entry",
           query=[Param("index", "integer", "entry index", required=True),
                  Param("tree_size", "integer", "tree size (default: latest)")])
def inclusion() -> Any:
    """Proof that entry ``index`` is in the tree of ``tree_size``."""
    index = query_int("index")
    if index is None:
        raise InvalidInput("missing query parameter 'index'")
    return _json(services().ledger.inclusion_proof(index, tree_size=query_int("tree_size")))


@api_route(bp, "/api/v1/ledger/proofs/consistency", "GET", roles=AUDITORS,
           summary="Merkle consistency proof between two tree sizes",
           query=[Param("old", "integer", "older tree size", required=True),
                  Param("new", "integer", "newer tree size", required=True)])
def consistency() -> Any:
    """Proof that the tree of size ``old`` is a prefix of the tree of size ``new``."""
    old, new = query_int("old"), query_int("new")
    if old is None or new is None:
        raise InvalidInput("missing query parameter 'old' or 'new'")
    if old > new:
        raise InvalidInput("old must not be larger than new")
    return _json(services().ledger.consistency_proof(old, new))
