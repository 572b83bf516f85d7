"""Signed checkpoints: a node's statement "my ledger had this many entries and this root".

Canonical body (see :mod:`ledger.encoding`)::

    {"kind":"pcnode.checkpoint","node":...,"root":<hex>,"time":<RFC 3339>,
     "tree_size":<int>,"v":1}

signature = Ed25519(node key, "pcnode/ledger/checkpoint/v1" || 0x00 || body).

A checkpoint of size ``n`` covers entries ``0 .. n-1``. ``Ledger.checkpoint``
also writes a ``checkpoint`` entry at index ``n`` carrying the tree size, root
and signature, so the log itself records every checkpoint it issued; that
entry is covered by the *next* checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcnode.errors import InvalidInput, LedgerIntegrityError

from .ed25519 import make_checker
from .encoding import MAX_SAFE_INT, canonical_json
from .events import check_node
from .keys import PublicKeyLike, key_id
from .merkle import HASH_SIZE
from .timefmt import format_time, parse_canonical_time

CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_KIND = "pcnode.checkpoint"
#: Domain separator: a checkpoint signature is never valid as any other signature.
CHECKPOINT_SIGNING_DOMAIN = b"pcnode/ledger/checkpoint/v1\x00"


def _hex_bytes(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise InvalidInput(f"{what} must be {size} bytes of lower-case hex")
    try:
        out = bytes.fromhex(value)
    except ValueError:
        raise InvalidInput(f"{what} is not hex") from None
    if out.hex() != value:
        raise InvalidInput(f"{what} must be lower-case hex")
    return out


@dataclass(frozen=True)
class Checkpoint:
    """A signed (node, tree size, root hash, time)."""

    node: str
    tree_size: int
    root_hash: bytes
    time: int
    signature: bytes

    def body(self) -> bytes:
        """The canonical bytes the signature covers (after the domain separator)."""
        return canonical_json({
            "v": CHECKPOINT_FORMAT_VERSION, "kind": CHECKPOINT_KIND, "node": self.node,
            "tree_size": self.tree_size, "root": self.root_hash.hex(),
            "time": format_time(self.time),
        })

    @classmethod
    def create(cls, signing_key: Ed25519PrivateKey, node: str, tree_size: int, root_hash: bytes,
               time_us: int) -> Checkpoint:
        """Sign a new checkpoint."""
        check_node(node)
        if isinstance(tree_size, bool) or not isinstance(tree_size, int) \
                or not 0 <= tree_size <= MAX_SAFE_INT:
            raise InvalidInput("tree size must be a non-negative integer")
        if len(root_hash) != HASH_SIZE:
            raise InvalidInput("root hash must be 32 bytes")
        unsigned = cls(node, tree_size, bytes(root_hash), time_us, b"")
        signature = signing_key.sign(CHECKPOINT_SIGNING_DOMAIN + unsigned.body())
        return cls(node, tree_size, bytes(root_hash), time_us, signature)

    def is_valid(self, public_key: PublicKeyLike) -> bool:
        """True iff the signature verifies under ``public_key``."""
        return make_checker(public_key)(self.signature, CHECKPOINT_SIGNING_DOMAIN + self.body())

    def verify(self, public_key: PublicKeyLike) -> None:
        """Raise LedgerIntegrityError unless the signature verifies under ``public_key``."""
        if not self.is_valid(public_key):
            raise LedgerIntegrityError(
                f"checkpoint of {self.node} at size {self.tree_size} has a bad signature",
                hint=f"check it was issued by this node (key {key_id(public_key)}) "
                     "and not edited",
                index=self.tree_size, expected=f"signature by key {key_id(public_key)}",
                actual=self.signature.hex(), check="checkpoint_signature")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the body fields plus the signature (hex)."""
        return {"v": CHECKPOINT_FORMAT_VERSION, "kind": CHECKPOINT_KIND, "node": self.node,
                "tree_size": self.tree_size, "root": self.root_hash.hex(),
                "time": format_time(self.time), "signature": self.signature.hex()}

    def to_json(self) -> str:
        """Canonical JSON text of :meth:`to_dict` (what ``--out FILE`` saves)."""
        return canonical_json(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        """Read :meth:`to_dict` output; raise InvalidInput if malformed."""
        if not isinstance(data, dict):
            raise InvalidInput("checkpoint is not a JSON object")
        if data.get("kind") != CHECKPOINT_KIND or data.get("v") != CHECKPOINT_FORMAT_VERSION:
            raise InvalidInput("not a pcnode checkpoint (kind/v)",
                               hint="pass a file written by `pcnode ledger checkpoint`")
        size = data.get("tree_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput("checkpoint tree_size is not a non-negative integer")
        sig = data.get("signature")
        if not isinstance(sig, str):
            raise InvalidInput("checkpoint has no signature")
        try:
            signature = bytes.fromhex(sig)
        except ValueError:
            raise InvalidInput("checkpoint signature is not hex") from None
        return cls(node=check_node(data.get("node")), tree_size=size,
                   root_hash=_hex_bytes(data.get("root"), HASH_SIZE, "checkpoint root"),
                   time=parse_canonical_time(data.get("time")), signature=signature)

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Read :meth:`to_json` output (any JSON formatting is accepted)."""
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidInput("checkpoint is not valid JSON") from None
        return cls.from_dict(data)
