"""Datasets: registration, listing, retirement, staleness and read handles.

Registration reads the whole source once (schema, quality profile, content
digest) *before* anything is written, then inserts the entry and writes the
ledger entry in one transaction. Any error (unknown key column, duplicate
code, unreadable or malformed file, bad level/share) therefore leaves no
half-written entry.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import exc, insert, select, update

from node.catalog import meta as meta_mod
from node.catalog import store as st
from node.catalog.coltypes import to_numpy
from node.catalog.profile import compute_profile
from node.catalog.sources import DEFAULT_CHUNK_ROWS, Source, stored_source
from pcnode.errors import AlreadyExists, InvalidInput, NotFound, StaleDataset

if TYPE_CHECKING:
    from node.catalog.catalog import Catalog

#: Dataset states.
ACTIVE, STALE, RETIRED = "active", "stale", "retired"


class DatasetHandle:
    """Read access to one registered dataset's rows, for the job code on the provider.

    Rows whose key is null are skipped everywhere, so :meth:`read_keys` and
    :meth:`read_columns` stay aligned row for row.
    """

    def __init__(self, source: Source, code: str, key_column: str,
                 columns: list[dict[str, str]], row_count: int) -> None:
        self._source = source
        self.code = code
        self.key_column = key_column
        #: Information items: ``[{"name", "type", "description"}, ...]``.
        self.columns = columns
        #: Rows at registration (including any with a null key).
        self.row_count = row_count
        self._types = {c["name"]: c["type"] for c in columns}

    def column_names(self) -> list[str]:
        """Names of all columns, in source order."""
        return [c["name"] for c in self.columns]

    def _check(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in self._types]
        if unknown:
            raise InvalidInput(
                f"dataset {self.code!r} has no column(s) {', '.join(map(repr, unknown))}",
                hint=f"columns: {', '.join(self.column_names())}",
            )

    def _batches(self, names: Sequence[str], chunk_rows: int) -> Iterator[pa.Table]:
        wanted = [self.key_column, *[n for n in names if n != self.key_column]]
        for batch in self._source.batches(wanted, chunk_rows):
            key = batch.column(self.key_column)
            if key.null_count:
                batch = batch.filter(pc.is_valid(key))
            yield batch

    def iter_key_chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[list[str]]:
        """Stream the key column as lists of at most ``chunk_rows`` strings (bounded memory)."""
        for batch in self._batches([], chunk_rows):
            yield batch.column(self.key_column).to_pylist()

    def read_keys(self) -> list[str]:
        """All keys, in source order."""
        out: list[str] = []
        for chunk in self.iter_key_chunks():
            out.extend(chunk)
        return out

    def read_columns(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Values of ``names`` converted by declared type, aligned with :meth:`read_keys`.

        integer -> int64 (float64 with NaN when values are missing), float and
        boolean -> float64, other types -> object arrays of str/None.
        """
        names = list(names)
        self._check(names)
        parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for batch in self._batches(names, DEFAULT_CHUNK_ROWS):
            for n in names:
                parts[n].append(to_numpy(batch.column(n), self._types[n]))
        out: dict[str, np.ndarray] = {}
        for n in names:
            arrays = parts[n]
            if not arrays:
                out[n] = np.zeros(0, dtype=object if self._types[n] not in
                                  ("integer", "float", "boolean") else np.float64)
            elif any(a.dtype != arrays[0].dtype for a in arrays):
                out[n] = np.concatenate([a.astype(np.float64) for a in arrays])
            else:
                out[n] = np.concatenate(arrays)
        return out


class DatasetsMixin:
    """Dataset operations of :class:`node.catalog.Catalog`."""

    def register_dataset(
        self: Catalog,
        *,
        code: str,
        name: str,
        source: Source,
        key: str,
        level: str,
        share: str,
        user: str,
        meta: dict[str, Any] | None = None,
        reason: str = "",
        replace: bool = False,
    ) -> dict[str, Any]:
        """Register (or with ``replace``, re-register) a dataset; return its entry.

        Writes ``dataset.registered`` (or ``dataset.changed``) to the ledger.
        """
        code = meta_mod.validate_code(code)
        level = meta_mod.validate_level(level)
        share = meta_mod.validate_share(share)
        meta = meta_mod.validate_meta(meta or {}, "metadata")
        name = (name or meta.get("name") or "").strip()
        if not name:
            raise InvalidInput("a dataset needs a name", hint="pass --name NAME or set name in --meta")
        existing = self._dataset_row(code)
        if existing is not None and not replace:
            raise AlreadyExists(
                f"dataset {code!r} is registered already",
                hint="choose another --code, or pass --replace to re-register a changed source",
            )
        if existing is not None and existing["state"] == RETIRED:
            raise AlreadyExists(f"dataset {code!r} was retired; its code cannot be reused",
                                hint="register it under a new code")
        if existing is None and replace:
            raise NotFound(f"no dataset {code!r} to re-register", hint="drop --replace")

        schema = source.schema()
        names = [n for n, _ in schema]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidInput(f"{source.display()}: duplicate column name(s): {', '.join(dupes)}")
        if key not in names:
            raise InvalidInput(
                f"unknown key column {key!r} in {source.display()}",
                hint=f"columns are: {', '.join(names)}",
            )
        declared = {c["name"]: c for c in meta.get("columns", [])}
        unknown = [c for c in declared if c not in names]
        if unknown:
            raise InvalidInput(
                f"metadata describes column(s) not in the source: {', '.join(unknown)}",
                hint=f"columns are: {', '.join(names)}",
            )
        columns = [
            {
                "name": n,
                "type": declared[n]["type"] if n in declared else inferred,
                "description": declared[n]["description"] if n in declared else "",
            }
            for n, inferred in schema
        ]
        before = source.fingerprint()
        profile = compute_profile(source.batches(names), key, {c["name"]: c["type"] for c in columns})
        digest = source.digest()
        after = source.fingerprint()
        if before != after:
            raise InvalidInput(f"{source.display()} changed while it was being registered",
                               hint="register it again once it is no longer being written")
        core = meta_mod.core_metadata(code=code, name=name, share=share, fmt=source.format,
                                      meta=meta, provider=self.node)
        now = st.utcnow()
        values = {
            "name": name,
            "level": level,
            "share": share,
            "key_column": key,
            "source_kind": source.kind,
            "source_location": source.location,
            "source_table": source.table,
            "content_digest": digest,
            "fingerprint": after,
            "columns": columns,
            "meta": core,
            "profile": profile,
            "state": ACTIVE,
            "updated_at": now,
            "reason": reason,
        }
        event = "dataset.changed" if replace else "dataset.registered"
        try:
            with self.store.write() as conn:
                if replace:
                    result = conn.execute(
                        update(st.datasets)
                        .where(st.datasets.c.code == code, st.datasets.c.state != RETIRED)
                        .values(**values, version=st.datasets.c.version + 1)
                    )
                    if result.rowcount != 1:
                        raise NotFound(f"no dataset {code!r} to re-register")
                    version = conn.execute(select(st.datasets.c.version)
                                           .where(st.datasets.c.code == code)).scalar_one()
                else:
                    version = 1
                    conn.execute(insert(st.datasets).values(
                        code=code, version=version, registered_at=now, registered_by=user, **values))
                self._audit(
                    event, user=user, dataset=code, rows_in=profile["rows"],
                    extra={"version": version, "level": level, "share": share,
                           "digest": digest, "source": source.kind, "reason": reason},
                )
        except exc.IntegrityError:
            raise AlreadyExists(f"dataset {code!r} is registered already",
                                hint="choose another --code") from None
        return self.get_dataset(code)

    def _dataset_row(self: Catalog, code: str) -> dict[str, Any] | None:
        with self.store.read() as conn:
            row = conn.execute(select(st.datasets).where(st.datasets.c.code == code)).mappings().first()
        return dict(row) if row is not None else None

    def _require_dataset(self: Catalog, code: str) -> dict[str, Any]:
        row = self._dataset_row(code)
        if row is None:
            raise NotFound(f"no dataset {code!r} in the catalog of {self.node}",
                           hint="list datasets with: pcnode dataset list HOME")
        return row

    def get_dataset(self: Catalog, code: str) -> dict[str, Any]:
        """The full entry of dataset ``code``: metadata, columns, profile, source, state."""
        return _dataset_dict(self._require_dataset(code))

    def list_datasets(self: Catalog, include_retired: bool = False) -> list[dict[str, Any]]:
        """All datasets (retired ones only with ``include_retired``), by code."""
        stmt = select(st.datasets).order_by(st.datasets.c.code)
        if not include_retired:
            stmt = stmt.where(st.datasets.c.state != RETIRED)
        with self.store.read() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [_dataset_dict(dict(r)) for r in rows]

    def retire_dataset(self: Catalog, code: str, *, user: str, reason: str = "") -> dict[str, Any]:
        """Withdraw a dataset: it stays in the catalog for audit, and every call is refused."""
        self._require_dataset(code)
        now = st.utcnow()
        with self.store.write() as conn:
            result = conn.execute(
                update(st.datasets)
                .where(st.datasets.c.code == code, st.datasets.c.state != RETIRED)
                .values(state=RETIRED, retired_at=now, retired_by=user, updated_at=now,
                        reason=reason)
            )
            if result.rowcount != 1:
                raise InvalidInput(f"dataset {code!r} is retired already")
            self._audit("dataset.retired", user=user, dataset=code, extra={"reason": reason})
        return self.get_dataset(code)

    def check_stale(self: Catalog, code: str) -> bool:
        """Whether dataset ``code``'s source changed since registration.

        The first time a change is seen the entry is marked stale (and
        ``dataset.changed`` with ``status="stale"`` is written); it stays stale
        until re-registered with ``replace=True``.
        """
        row = self._require_dataset(code)
        if row["state"] == STALE:
            return True
        if row["state"] == RETIRED:
            return False
        source = stored_source(row["source_kind"], row["source_location"], row["source_table"])
        try:
            changed, fingerprint = source.changed(row["content_digest"], row["fingerprint"] or {})
        except InvalidInput:
            changed, fingerprint = True, {"unreadable": True}
        if not changed:
            if fingerprint != row["fingerprint"]:
                with self.store.write() as conn:  # touched but identical: remember the new stat
                    conn.execute(update(st.datasets).where(st.datasets.c.code == code)
                                 .values(fingerprint=fingerprint))
            return False
        with self.store.write() as conn:
            result = conn.execute(
                update(st.datasets)
                .where(st.datasets.c.code == code, st.datasets.c.state == ACTIVE)
                .values(state=STALE, updated_at=st.utcnow())
            )
            if result.rowcount == 1:
                self._audit("dataset.changed", user=self.system_user, dataset=code,
                            status="stale",
                            extra={"status": "stale", "registered_digest": row["content_digest"]})
        return True

    def open_dataset(self: Catalog, code: str) -> DatasetHandle:
        """A read handle on an active dataset; StaleDataset if its source changed."""
        row = self._require_dataset(code)
        if row["state"] == RETIRED:
            raise NotFound(f"dataset {code!r} is retired")
        if self.check_stale(code):
            raise StaleDataset(
                f"dataset {code!r} changed since it was registered and is refused until re-registered",
                hint=f"check the source, then: pcnode dataset register HOME --code {code} ... --replace",
            )
        source = stored_source(row["source_kind"], row["source_location"], row["source_table"])
        return DatasetHandle(source, code, row["key_column"], list(row["columns"]),
                             int(row["profile"].get("rows", 0)))

    def public_listing(self: Catalog, peer: str) -> list[dict[str, Any]]:
        """What peer ``peer`` may see of this catalog: metadata of shareable datasets.

        Never rows, never source locations, never datasets shared as ``none``
        nor retired ones. Each entry also lists the peer's own active grants.
        """
        out = []
        now = st.utcnow()
        mine: dict[str, list[str]] = {}
        for g in self.list_grants(peer=peer):
            if g.status(now) == "active":
                mine.setdefault(g.dataset, []).append(g.id)
        for d in self.list_datasets():
            if d["share"] == "none":
                continue
            out.append(public_view(d) | {"your_grants": mine.get(d["code"], [])})
        return out


def public_view(d: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a dataset entry that may leave the node."""
    m = d["meta"]
    profile = d["profile"]
    return {
        "code": d["code"],
        "name": d["name"],
        "classification": m.get("classification", ""),
        "provider": m.get("provider", ""),
        "provider_code": m.get("provider_code", ""),
        "summary": m.get("summary", ""),
        "format": m.get("format", ""),
        "columns": d["columns"],
        "share": d["share"],
        "share_condition": m.get("share_condition", ""),
        "open": m.get("open", "none"),
        "update_cycle": m.get("update_cycle", ""),
        "publish_date": m.get("publish_date", ""),
        "related": m.get("related", []),
        "level": d["level"],
        "key_column": d["key_column"],
        "rows": profile.get("rows", 0),
        "key_unique_rate": profile.get("key", {}).get("unique_rate", 0.0),
        "state": d["state"],
        "version": d["version"],
    }


def _dataset_dict(row: dict[str, Any]) -> dict[str, Any]:
    source = stored_source(row["source_kind"], row["source_location"], row["source_table"])
    return {
        "code": row["code"],
        "name": row["name"],
        "level": row["level"],
        "share": row["share"],
        "key_column": row["key_column"],
        "source": {"kind": row["source_kind"], "location": source.display(),
                   "table": row["source_table"]},
        "content_digest": row["content_digest"],
        "columns": list(row["columns"]),
        "meta": dict(row["meta"]),
        "profile": dict(row["profile"]),
        "state": row["state"],
        "version": row["version"],
        "registered_at": st.iso(row["registered_at"]),
        "registered_by": row["registered_by"],
        "updated_at": st.iso(row["updated_at"]),
        "retired_at": st.iso(row["retired_at"]),
        "retired_by": row["retired_by"],
        "reason": row["reason"],
    }
