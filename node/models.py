"""The node's model registry: each party's part of a split model, versioned, on disk.

Layout under the node's home::

    models/
      index.json               # {model_id: {"latest": v, "versions": [...summaries]}}
      .lock                    # flock(2) serialises writers (serve and CLI processes)
      <model_id>/<version>.json

A version file is a JSON envelope (``format: pcnode.model/1``) holding the
party's model part (``protocols.fl`` canonical JSON, never pickle), its SHA-256
``digest``, the role and party, the job that produced it and metadata
(dataset code, feature names, label name, the other parties, metrics). Files
and the index are written atomically (temp file, fsync, rename). The version
files are the truth; the index is rebuilt from them if it is missing.

Every save appends a ``model.saved`` ledger entry carrying the digest (as
``result_digest``), the model id, version and role, so a part can later be
checked against the ledger. Loading recomputes the digest and refuses a part
whose bytes no longer match it.

A model id is the id of the job that trained it; saving the same id again
makes the next version.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.files import atomic_write
from pcnode.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from node.services import NodeServices
    from protocols.fl import GuestModel, HorizontalModel, HostModel

#: Directory under the node home.
MODELS_DIR = "models"
INDEX_NAME = "index.json"
LOCK_NAME = ".lock"
#: Format tag of a version file.
FORMAT = "pcnode.model/1"
#: Model ids: letters, digits, ``_ . -``, not starting with a dot (no path tricks).
MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
#: Ledger event written for every saved version.
MODEL_SAVED = "model.saved"
#: Model files hold weights: readable by the node's owner only.
MODEL_FILE_MODE = 0o600


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no whitespace): what the digest covers."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(part: bytes) -> str:
    """SHA-256 (hex) of a model part's canonical bytes."""
    return hashlib.sha256(part).hexdigest()


def check_model_id(model_id: str) -> str:
    """Return ``model_id`` if it is a valid registry id, else raise InvalidInput."""
    if not isinstance(model_id, str) or not MODEL_ID_PATTERN.fullmatch(model_id):
        raise InvalidInput(f"model id {model_id!r} is not valid",
                           hint="use the id printed by `pcnode fl train` or `pcnode fl models`")
    return model_id


@dataclass(frozen=True)
class ModelRecord:
    """One saved version of this node's part of a model."""

    model_id: str
    version: int
    kind: str
    role: str
    party: str
    job_id: str
    created: str
    digest: str
    part: bytes
    meta: dict[str, Any] = field(default_factory=dict)

    def guest_model(self) -> GuestModel:
        """The part as a :class:`protocols.fl.GuestModel` (InvalidInput if it is not one)."""
        from protocols.fl import GuestModel

        return GuestModel.from_bytes(self.part)

    def host_model(self) -> HostModel:
        """The part as a :class:`protocols.fl.HostModel` (InvalidInput if it is not one)."""
        from protocols.fl import HostModel

        return HostModel.from_bytes(self.part)

    def horizontal_model(self) -> HorizontalModel:
        """The part as a :class:`protocols.fl.HorizontalModel`."""
        from protocols.fl import HorizontalModel

        return HorizontalModel.from_bytes(self.part)

    def summary(self) -> dict[str, Any]:
        """Everything but the weights: for listings, the index and ``--json``."""
        return {"model_id": self.model_id, "version": self.version, "kind": self.kind,
                "role": self.role, "party": self.party, "job_id": self.job_id,
                "created": self.created, "digest": self.digest, "meta": dict(self.meta)}

    def to_file(self) -> bytes:
        """The version file's bytes."""
        return canonical({"format": FORMAT, **self.summary(),
                          "part": json.loads(self.part)})


class ModelRegistry:
    """The models of one node (see the module docstring).

    ``ledger`` (optional) receives a ``model.saved`` entry for every save.
    """

    def __init__(self, root: str | Path, ledger: Any = None) -> None:
        self.root = Path(root)
        self.ledger = ledger

    @classmethod
    def for_services(cls, services: NodeServices) -> ModelRegistry:
        """The registry under ``services``' home, recording saves in its ledger."""
        return cls(services.config.home / MODELS_DIR, ledger=services.ledger)

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.root / LOCK_NAME, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def save(self, model_id: str, *, role: str, party: str, part: bytes, kind: str,
             job_id: str = "", meta: Mapping[str, Any] | None = None,
             ledger_fields: Mapping[str, Any] | None = None) -> ModelRecord:
        """Store ``part`` (canonical JSON bytes) as the next version of ``model_id``.

        Returns the record. Writes the version file and the index atomically,
        then appends ``model.saved`` to the ledger (with ``ledger_fields``,
        e.g. the job's common fields, merged in).
        """
        check_model_id(model_id)
        try:
            parsed = json.loads(part)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InvalidInput("a model part must be JSON bytes") from None
        part = canonical(parsed)
        meta = json.loads(canonical(dict(meta or {})))  # JSON-only metadata, detached copy
        with self._locked():
            version = max(self._versions_on_disk(model_id), default=0) + 1
            record = ModelRecord(
                model_id=model_id, version=version, kind=kind, role=role, party=party,
                job_id=job_id, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                digest=digest_of(part), part=part, meta=meta)
            atomic_write(self._path(model_id, version), record.to_file(), mode=MODEL_FILE_MODE)
            index = self._read_index()
            entry = index.setdefault(model_id, {"latest": 0, "versions": []})
            entry["versions"] = [v for v in entry["versions"] if v.get("version") != version]
            entry["versions"].append(_index_row(record))
            entry["latest"] = max(int(v["version"]) for v in entry["versions"])
            self._write_index(index)
        if self.ledger is not None:
            fields = dict(ledger_fields or {})
            extra = {**dict(fields.pop("extra", {}) or {}), "model_id": model_id,
                     "model_version": version, "model_role": role, "model_kind": kind}
            fields.setdefault("job_id", job_id or None)
            fields = {k: v for k, v in fields.items() if v not in (None, "")}
            self.ledger.append(MODEL_SAVED, status="saved", result_digest=record.digest,
                               extra=extra, **fields)
        return record

    # -- reading ---------------------------------------------------------------------------

    def get(self, model_id: str, version: int | None = None) -> ModelRecord:
        """Version ``version`` (default: the latest) of ``model_id``; NotFound if absent.

        The part's digest is recomputed and compared with the file and the
        index; a mismatch is InvalidInput (the file was changed or corrupted).
        """
        check_model_id(model_id)
        versions = self._versions_on_disk(model_id)
        if not versions:
            raise NotFound(f"no model {model_id!r} in this node's registry",
                           hint="list models with: pcnode fl models HOME")
        if version is None:
            version = max(versions)
        if version not in versions:
            raise NotFound(f"model {model_id!r} has no version {version}",
                           hint=f"versions: {', '.join(map(str, sorted(versions)))}")
        record = self._load(self._path(model_id, version))
        indexed = self._read_index().get(model_id, {}).get("versions", [])
        known = {int(v["version"]): v.get("digest") for v in indexed if "version" in v}
        if version in known and known[version] != record.digest:
            raise InvalidInput(f"model {model_id!r} version {version} differs from the index",
                               hint="the model file was replaced; restore it or retrain")
        return record

    def list(self) -> list[dict[str, Any]]:
        """Every model: its latest version's summary plus ``versions`` (all version numbers)."""
        index = self._read_index()
        out = []
        for model_id in sorted(index):
            entry = index[model_id]
            rows = sorted(entry.get("versions", []), key=lambda v: int(v["version"]))
            if not rows:
                continue
            latest = dict(rows[-1])
            latest["versions"] = [int(v["version"]) for v in rows]
            out.append(latest)
        out.sort(key=lambda r: (r.get("created", ""), r["model_id"]))
        return out

    def versions(self, model_id: str) -> list[int]:
        """The version numbers stored for ``model_id`` (ascending)."""
        return sorted(self._versions_on_disk(check_model_id(model_id)))

    # -- files ---------------------------------------------------------------------------------

    def _path(self, model_id: str, version: int) -> Path:
        return self.root / model_id / f"{version}.json"

    def _versions_on_disk(self, model_id: str) -> list[int]:
        d = self.root / model_id
        if not d.is_dir():
            return []
        return [int(p.stem) for p in d.glob("*.json") if p.stem.isdigit()]

    def _load(self, path: Path) -> ModelRecord:
        try:
            doc = json.loads(path.read_bytes())
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError("not a pcnode model file")
            part = canonical(doc["part"])
            record = ModelRecord(
                model_id=str(doc["model_id"]), version=int(doc["version"]),
                kind=str(doc["kind"]), role=str(doc["role"]), party=str(doc["party"]),
                job_id=str(doc.get("job_id", "")), created=str(doc["created"]),
                digest=str(doc["digest"]), part=part, meta=dict(doc.get("meta") or {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"model file {path.name} under {path.parent.name} is unreadable: "
                               f"{type(exc).__name__}",
                               hint="restore it from a backup or retrain") from None
        if digest_of(part) != record.digest:
            raise InvalidInput(f"model {record.model_id!r} version {record.version} does not "
                               "match its recorded digest",
                               hint="the model file was modified; restore it or retrain")
        return record

    def _read_index(self) -> dict[str, Any]:
        path = self.root / INDEX_NAME
        try:
            index = json.loads(path.read_bytes())
            if isinstance(index, dict):
                return index
        except (OSError, ValueError):
            pass
        return self._rebuild_index()

    def _rebuild_index(self) -> dict[str, Any]:
        index: dict[str, Any] = {}
        if not self.root.is_dir():
            return index
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if not MODEL_ID_PATTERN.fullmatch(d.name):
                continue
            rows = []
            for v in sorted(self._versions_on_disk(d.name)):
                try:
                    rows.append(_index_row(self._load(self._path(d.name, v))))
                except InvalidInput:
                    continue
            if rows:
                index[d.name] = {"latest": max(r["version"] for r in rows), "versions": rows}
        return index

    def _write_index(self, index: dict[str, Any]) -> None:
        atomic_write(self.root / INDEX_NAME, canonical(index), mode=MODEL_FILE_MODE)


def _index_row(record: ModelRecord) -> dict[str, Any]:
    return record.summary()


__all__ = ["FORMAT", "MODEL_SAVED", "ModelRecord", "ModelRegistry", "canonical", "check_model_id",
           "digest_of"]
