"""Test doubles: a ledger that records appends, a peer client, and small data files."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.catalog import Catalog, CsvSource
from pcnode.errors import InvalidInput, NotFound

#: Fields the real ledger accepts (the authorising operator under either name).
FIELDS = {"user", "grant_id", "operator", "authorised_by", "peer", "dataset", "operation", "mode",
          "purpose", "rows_in", "rows_out", "bytes_in", "bytes_out", "params_digest",
          "result_digest", "transcript_hash", "job_id", "status", "error", "extra"}


@dataclass
class FakeEntry:
    """One recorded append."""

    index: int
    event: str
    fields: dict[str, Any]
    time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event": self.event, **self.fields}


class FakeJson:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_json(self) -> str:
        return json.dumps(self.data)


class FakeLedger:
    """Records ``append(event, **fields)`` and checks fields like the real ledger."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.entries_: list[FakeEntry] = []
        self.fail_on = fail_on

    def append(self, event: str, **fields: Any) -> FakeEntry:
        unknown = set(fields) - FIELDS
        assert not unknown, f"unknown ledger fields {unknown}"
        for key, value in (fields.get("extra") or {}).items():
            assert not isinstance(value, (float, list, dict)), f"extra[{key}] is not a scalar"
        assert all(v is not None for k, v in fields.items() if k != "extra")
        if event == self.fail_on:
            raise InvalidInput("ledger refused the entry (test)")
        entry = FakeEntry(len(self.entries_), event, dict(fields))
        self.entries_.append(entry)
        return entry

    # regulator API
    def entries(self, start: int = 0, stop: int | None = None, *, limit: int | None = None,
                **filters: Any) -> Any:
        for e in self.entries_[start:stop]:
            if all(e.event == v if k == "event" else e.fields.get(k) == v
                   for k, v in filters.items() if k not in ("since", "until")):
                yield e

    def latest_checkpoint(self) -> FakeJson | None:
        if not self.entries_:
            return None
        return FakeJson({"tree_size": len(self.entries_), "root": "00" * 32})

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> FakeJson:
        if index >= len(self.entries_):
            raise NotFound(f"no entry {index}")
        return FakeJson({"index": index, "tree_size": tree_size or len(self.entries_),
                         "path": []})

    def consistency_proof(self, old: int, new: int) -> FakeJson:
        return FakeJson({"old": old, "new": new, "path": []})

    # helpers for assertions
    def events(self) -> list[str]:
        return [e.event for e in self.entries_]

    def last(self, event: str) -> FakeEntry:
        return [e for e in self.entries_ if e.event == event][-1]


class FakePeerClient:
    """Stands in for node.transport's PeerClient: calls the provider's Catalog directly,
    passing this node's name as the (mTLS-verified) peer identity."""

    def __init__(self, provider_catalog: Any, me: str) -> None:
        self.provider = provider_catalog
        self.me = me

    def list_catalog(self) -> list[dict[str, Any]]:
        return json.loads(json.dumps(self.provider.public_listing(self.me)))

    def submit_application(self, body: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(self.provider.receive_application(self.me, body)))

    def application_status(self, app_id: str) -> dict[str, Any]:
        return json.loads(json.dumps(self.provider.application_status(self.me, app_id)))


RESIDENT_IDS = [
    "11010519491231002X",  # the GB 11643 standard's example
    "440524188001010014",
    "510104199001010011",
]


def write_csv(path: Path, rows: list[list[Any]], header: list[str]) -> Path:
    """Write a small CSV."""
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def residents_csv(path: Path) -> Path:
    """A 6-row tax-like file: a duplicate key, a null, a bad integer."""
    return write_csv(path, [
        ["r1", "锦江区", 100000, 5000, 120],
        ["r2", "青羊区", 80000, 2000, ""],
        ["r3", "武侯区", 120000, 9000, 200],
        ["r3", "武侯区", 120000, 9000, 200],
        ["r4", "", 50000, 0, "abc"],
        ["r5", "金牛区", 65000.5, 150, 36],
    ], ["id", "district", "income", "tax_paid", "si_months"])


def register(cat: Catalog, path: Path, *, code: str = "residents", share: str = "conditional",
             key: str = "id", level: str = "L3", **kw: object) -> dict:
    """Register ``path`` as a dataset."""
    return cat.register_dataset(code=code, name="Residents", source=CsvSource(path), key=key,
                                level=level, share=share, user="alice", **kw)  # type: ignore[arg-type]
