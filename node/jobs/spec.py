"""The job spec: what the initiator asks every party to run, signed with its node key."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from node.config import validate_name
from pcnode.errors import AuthenticationError, InvalidInput

#: Domain separator so a job signature can never be confused with a ledger
#: entry, receipt or checkpoint signature made by the same key.
SIGNATURE_DOMAIN = b"pcnode/job/v1\x00"

#: 128 random bits: job ids are unguessable, so a third party cannot attach
#: a stream to someone else's job even before authentication is considered.
JOB_ID_BYTES = 16

#: A spec older than this (or this far in the future) is refused: it limits
#: replay of a captured request and tolerates modest clock skew.
MAX_SPEC_AGE_S = 300.0


def new_job_id() -> str:
    """A fresh unguessable job id (32 hex characters)."""
    return secrets.token_hex(JOB_ID_BYTES)


@dataclass(frozen=True)
class JobSpec:
    """A job: id, kind, initiator, parties (name -> role), parameters and receive timeout."""

    job_id: str
    kind: str
    initiator: str
    parties: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    timeout: float = 300.0
    #: The exact bytes a peer sent, when parsed from the wire: the signature
    #: covers these, never a re-serialisation (3600 and 3600.0 differ as JSON).
    wire: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "created", float(self.created))
        object.__setattr__(self, "timeout", float(self.timeout))

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace); the received bytes for a parsed spec."""
        if self.wire is not None:
            return self.wire
        return json.dumps(
            {"job_id": self.job_id, "kind": self.kind, "initiator": self.initiator,
             "parties": self.parties, "params": self.params, "created": self.created,
             "timeout": self.timeout},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> JobSpec:
        """Parse and validate a spec received from a peer."""
        try:
            raw = json.loads(data)
            spec = cls(job_id=str(raw["job_id"]), kind=str(raw["kind"]),
                       initiator=str(raw["initiator"]), parties=dict(raw["parties"]),
                       params=dict(raw.get("params", {})), created=float(raw["created"]),
                       timeout=float(raw.get("timeout", 300.0)), wire=bytes(data))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"malformed job spec: {exc}",
                               hint="the initiator runs an incompatible pcnode") from None
        spec.validate()
        return spec

    def validate(self) -> None:
        """Structural checks: id shape, names, initiator among the parties."""
        if len(self.job_id) != 2 * JOB_ID_BYTES or any(c not in "0123456789abcdef" for c in self.job_id):
            raise InvalidInput("malformed job id")
        for name in self.parties:
            validate_name(name, "party name")
        if self.initiator not in self.parties:
            raise InvalidInput("the initiator must be one of the job's parties")
        if len(self.parties) < 2:
            raise InvalidInput("a joint job needs at least two parties")
        if not 1.0 <= self.timeout <= 24 * 3600:
            raise InvalidInput("job timeout must be between 1 s and 24 h")

    def sign(self, key: ed25519.Ed25519PrivateKey) -> bytes:
        """Ed25519 signature over the domain-separated canonical bytes."""
        return key.sign(SIGNATURE_DOMAIN + self.to_bytes())

    def verify(self, signature: bytes, key: ed25519.Ed25519PublicKey, now: float | None = None) -> None:
        """Check the initiator's signature and the freshness window."""
        try:
            key.verify(signature, SIGNATURE_DOMAIN + self.to_bytes())
        except InvalidSignature:
            raise AuthenticationError("job request signature does not verify with the "
                                      "initiator's certified signing key") from None
        now = time.time() if now is None else now
        if abs(now - self.created) > MAX_SPEC_AGE_S:
            raise AuthenticationError(
                "job request is stale or from the future",
                hint="check that both nodes' clocks are synchronised (NTP)",
                skew_seconds=round(now - self.created, 1),
            )

    @property
    def params_digest(self) -> str:
        """SHA-256 of the canonical parameters (what the ledger records, not the values)."""
        body = json.dumps(self.params, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(body).hexdigest()

    def others(self, me: str) -> list[str]:
        """The parties other than ``me``, sorted."""
        return sorted(p for p in self.parties if p != me)


def dials(a: str, b: str, initiator: str) -> bool:
    """Whether party ``a`` opens the link to ``b``: the initiator dials everyone;
    among the others the lexicographically smaller name dials."""
    if a == initiator:
        return True
    if b == initiator:
        return False
    return a < b
