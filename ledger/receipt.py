"""Receipts: a party's signed statement about a finished joint job.

At the end of a joint job every party signs (job id, transcript hash, its own
latest checkpoint) and sends the receipt to the others, who record it with
``Ledger.record_receipt``. A party that later deletes, edits or withholds the
job is contradicted by the receipt the others hold: the receipt's checkpoint
pins that party's ledger root at a size that includes the job.

Canonical body::

    {"checkpoint":{...checkpoint.to_dict()...},"job_id":...,"kind":"pcnode.receipt",
     "node":<issuer>,"time":...,"transcript_hash":<hex>,"v":1}

signature = Ed25519(issuer key, "pcnode/ledger/receipt/v1" || 0x00 || body).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcnode.errors import InvalidInput, LedgerIntegrityError

from .checkpoint import Checkpoint
from .ed25519 import make_checker
from .encoding import canonical_json
from .entry import TEXT_FIELDS, validate_fields
from .events import check_node
from .keys import PublicKeyLike, key_id
from .timefmt import format_time, now_us, parse_canonical_time

RECEIPT_FORMAT_VERSION = 1
RECEIPT_KIND = "pcnode.receipt"
#: Domain separator: a receipt signature is never valid as any other signature.
RECEIPT_SIGNING_DOMAIN = b"pcnode/ledger/receipt/v1\x00"


@dataclass(frozen=True)
class Receipt:
    """A signed (issuer, job id, transcript hash, issuer's checkpoint, time)."""

    node: str
    job_id: str
    transcript_hash: str
    checkpoint: Checkpoint
    time: int
    signature: bytes

    def _fields(self) -> dict[str, Any]:
        return {"v": RECEIPT_FORMAT_VERSION, "kind": RECEIPT_KIND, "node": self.node,
                "job_id": self.job_id, "transcript_hash": self.transcript_hash,
                "checkpoint": self.checkpoint.to_dict(), "time": format_time(self.time)}

    def body(self) -> bytes:
        """The canonical bytes the signature covers (after the domain separator)."""
        return canonical_json(self._fields())

    def is_valid(self, public_key: PublicKeyLike) -> bool:
        """True iff the receipt and its embedded checkpoint verify under ``public_key``."""
        check = make_checker(public_key)
        return (self.checkpoint.node == self.node
                and check(self.signature, RECEIPT_SIGNING_DOMAIN + self.body())
                and self.checkpoint.is_valid(public_key))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: body fields plus the signature (hex)."""
        return self._fields() | {"signature": self.signature.hex()}

    def to_json(self) -> str:
        """Canonical JSON text of :meth:`to_dict` (what is sent and recorded)."""
        return canonical_json(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, data: Any) -> Receipt:
        """Read :meth:`to_dict` output; raise InvalidInput if malformed."""
        if not isinstance(data, dict) or data.get("kind") != RECEIPT_KIND \
                or data.get("v") != RECEIPT_FORMAT_VERSION:
            raise InvalidInput("not a pcnode receipt (kind/v)")
        fields, _ = validate_fields({"job_id": data.get("job_id"),
                                     "transcript_hash": data.get("transcript_hash")})
        if "job_id" not in fields or "transcript_hash" not in fields:
            raise InvalidInput("receipt lacks job_id or transcript_hash")
        sig = data.get("signature")
        try:
            signature = bytes.fromhex(sig) if isinstance(sig, str) else None
        except ValueError:
            signature = None
        if signature is None:
            raise InvalidInput("receipt signature is missing or not hex")
        return cls(node=check_node(data.get("node")), job_id=fields["job_id"],
                   transcript_hash=fields["transcript_hash"],
                   checkpoint=Checkpoint.from_dict(data.get("checkpoint")),
                   time=parse_canonical_time(data.get("time")), signature=signature)

    @classmethod
    def from_json(cls, text: str | bytes) -> Receipt:
        """Read :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidInput("receipt is not valid JSON") from None
        return cls.from_dict(data)


def make_receipt(signing_key: Ed25519PrivateKey, node: str, job_id: str, transcript_hash: str,
                 checkpoint: Checkpoint, *, time_us: int | None = None) -> Receipt:
    """Sign a receipt for ``job_id`` as ``node``; ``checkpoint`` must be this node's own."""
    check_node(node)
    if checkpoint.node != node:
        raise InvalidInput(f"receipt by {node} embeds a checkpoint of {checkpoint.node}",
                           hint="pass this node's own checkpoint (Ledger.checkpoint())")
    fields, _ = validate_fields({"job_id": job_id, "transcript_hash": transcript_hash})
    if "job_id" not in fields or "transcript_hash" not in fields:
        raise InvalidInput("a receipt needs a job id and a transcript hash")
    if len(fields["job_id"]) > TEXT_FIELDS["job_id"]:
        raise InvalidInput("job id is too long")
    unsigned = Receipt(node, fields["job_id"], fields["transcript_hash"], checkpoint,
                       now_us() if time_us is None else time_us, b"")
    signature = signing_key.sign(RECEIPT_SIGNING_DOMAIN + unsigned.body())
    return Receipt(unsigned.node, unsigned.job_id, unsigned.transcript_hash, checkpoint,
                   unsigned.time, signature)


def verify_receipt(receipt: Receipt, public_key: PublicKeyLike, *, job_id: str | None = None,
                   transcript_hash: str | None = None) -> None:
    """Raise LedgerIntegrityError unless ``receipt`` is valid under the issuer's key.

    Optionally also require a given job id and transcript hash.
    """
    if not receipt.is_valid(public_key):
        raise LedgerIntegrityError(
            f"receipt from {receipt.node} for job {receipt.job_id} does not verify",
            hint=f"it was not signed by key {key_id(public_key)}, or it was altered",
            expected=f"signature by key {key_id(public_key)}", actual=receipt.signature.hex(),
            check="receipt_signature")
    if job_id is not None and receipt.job_id != job_id:
        raise LedgerIntegrityError("receipt is for another job", expected=job_id,
                                   actual=receipt.job_id, check="receipt_job")
    if transcript_hash is not None and receipt.transcript_hash != transcript_hash:
        raise LedgerIntegrityError(
            f"receipt from {receipt.node} names another transcript for job {receipt.job_id}",
            hint="the parties disagree on what was exchanged",
            expected=transcript_hash, actual=receipt.transcript_hash, check="receipt_transcript")
