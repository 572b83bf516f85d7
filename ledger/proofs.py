"""Inclusion and consistency proofs as portable objects, checkable offline.

A proof is plain JSON. Checking one needs only this module, the proof, and
either a root you trust or a signed checkpoint plus the node's public key:
no database and no running node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pcnode.errors import InvalidInput, LedgerIntegrityError

from .checkpoint import Checkpoint, _hex_bytes
from .ed25519 import make_checker
from .encoding import canonical_json, parse_canonical
from .entry import entry_signing_message
from .keys import PublicKeyLike
from .merkle import HASH_SIZE, consistency_ok, hash_leaf, root_from_inclusion


def _hex_list(values: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(values, list):
        raise InvalidInput(f"{what} must be a list of hex hashes")
    return tuple(_hex_bytes(v, HASH_SIZE, what) for v in values)


def _size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what} must be a non-negative integer")
    return value


@dataclass(frozen=True)
class InclusionProof:
    """Proof that the entry at ``leaf_index`` is in the tree of ``tree_size`` with ``root_hash``.

    ``entry_body`` and ``signature``, when present, carry the entry itself so
    the checker recomputes the leaf hash from content and checks the entry's
    own signature.
    """

    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    root_hash: bytes
    path: tuple[bytes, ...]
    entry_body: bytes | None = None
    signature: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (hashes as hex, the body as its canonical text)."""
        out: dict[str, Any] = {
            "kind": "pcnode.inclusion_proof", "leaf_index": self.leaf_index,
            "tree_size": self.tree_size, "leaf_hash": self.leaf_hash.hex(),
            "root": self.root_hash.hex(), "path": [p.hex() for p in self.path]}
        if self.entry_body is not None:
            out["entry"] = self.entry_body.decode("utf-8")
        if self.signature is not None:
            out["signature"] = self.signature.hex()
        return out

    def to_json(self) -> str:
        """Canonical JSON text of :meth:`to_dict`."""
        return canonical_json(self.to_dict()).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> InclusionProof:
        """Read :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidInput("inclusion proof is not valid JSON") from None
        if not isinstance(data, dict) or data.get("kind") != "pcnode.inclusion_proof":
            raise InvalidInput("not a pcnode inclusion proof")
        body = data.get("entry")
        if body is not None and not isinstance(body, str):
            raise InvalidInput("inclusion proof entry must be the canonical body text")
        sig = data.get("signature")
        return cls(
            leaf_index=_size(data.get("leaf_index"), "leaf_index"),
            tree_size=_size(data.get("tree_size"), "tree_size"),
            leaf_hash=_hex_bytes(data.get("leaf_hash"), HASH_SIZE, "leaf_hash"),
            root_hash=_hex_bytes(data.get("root"), HASH_SIZE, "root"),
            path=_hex_list(data.get("path"), "path"),
            entry_body=body.encode("utf-8") if body is not None else None,
            signature=_hex_bytes(sig, 64, "signature") if sig is not None else None)


@dataclass(frozen=True)
class ConsistencyProof:
    """Proof that the tree of ``old_size`` (``old_root``) is a prefix of ``new_size``."""

    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    path: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": "pcnode.consistency_proof", "old_size": self.old_size,
                "new_size": self.new_size, "old_root": self.old_root.hex(),
                "new_root": self.new_root.hex(), "path": [p.hex() for p in self.path]}

    def to_json(self) -> str:
        """Canonical JSON text of :meth:`to_dict`."""
        return canonical_json(self.to_dict()).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> ConsistencyProof:
        """Read :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidInput("consistency proof is not valid JSON") from None
        if not isinstance(data, dict) or data.get("kind") != "pcnode.consistency_proof":
            raise InvalidInput("not a pcnode consistency proof")
        return cls(old_size=_size(data.get("old_size"), "old_size"),
                   new_size=_size(data.get("new_size"), "new_size"),
                   old_root=_hex_bytes(data.get("old_root"), HASH_SIZE, "old_root"),
                   new_root=_hex_bytes(data.get("new_root"), HASH_SIZE, "new_root"),
                   path=_hex_list(data.get("path"), "path"))


def _trusted_root(size: int, root: bytes | None, checkpoint: Checkpoint | None,
                  public_key: PublicKeyLike | None, claimed: bytes) -> bytes:
    if checkpoint is not None:
        if public_key is not None:
            checkpoint.verify(public_key)
        if checkpoint.tree_size != size:
            raise InvalidInput(f"proof is for tree size {size}, the checkpoint for "
                               f"{checkpoint.tree_size}",
                               hint="ask for a proof at the checkpoint's tree size")
        return checkpoint.root_hash
    return claimed if root is None else root


def verify_inclusion(proof: InclusionProof, *, root: bytes | None = None,
                     checkpoint: Checkpoint | None = None,
                     public_key: PublicKeyLike | None = None) -> None:
    """Check an inclusion proof; raise LedgerIntegrityError with evidence if it fails.

    The root to check against is, in order: ``checkpoint.root_hash`` (its
    signature checked when ``public_key`` is given), ``root``, or the root the
    proof itself claims (which only shows the proof is self-consistent). With
    ``public_key`` the entry's own signature is checked too, when present.
    """
    leaf = proof.leaf_hash
    if proof.entry_body is not None:
        computed = hash_leaf(proof.entry_body)
        if computed != leaf:
            raise LedgerIntegrityError(
                f"entry {proof.leaf_index} in the proof does not hash to its leaf hash",
                hint="the entry text was altered", index=proof.leaf_index,
                expected=leaf.hex(), actual=computed.hex(), check="content")
        body = parse_canonical(proof.entry_body)
        if body.get("index") != proof.leaf_index:
            raise LedgerIntegrityError(
                "the entry in the proof is not the one at the proven index",
                index=proof.leaf_index, expected=proof.leaf_index, actual=body.get("index"),
                check="position")
        if public_key is not None and proof.signature is not None \
                and not make_checker(public_key)(proof.signature, entry_signing_message(leaf)):
            raise LedgerIntegrityError(
                f"entry {proof.leaf_index} in the proof has a bad signature",
                index=proof.leaf_index, expected=leaf.hex(), actual=proof.signature.hex(),
                check="signature")
    want = _trusted_root(proof.tree_size, root, checkpoint, public_key, proof.root_hash)
    got = root_from_inclusion(leaf, proof.leaf_index, proof.tree_size, proof.path)
    if got is None or got != want:
        raise LedgerIntegrityError(
            f"inclusion proof for entry {proof.leaf_index} in tree size {proof.tree_size} "
            "does not lead to the root",
            hint="the entry, the path or the root was altered, or they belong to another log",
            index=proof.leaf_index, expected=want.hex(),
            actual=got.hex() if got is not None else "malformed path", check="inclusion")


def verify_consistency(proof: ConsistencyProof, *, old: Checkpoint | None = None,
                       new: Checkpoint | None = None,
                       public_key: PublicKeyLike | None = None) -> None:
    """Check a consistency proof; raise LedgerIntegrityError with evidence if it fails.

    With checkpoints, their roots (signatures checked when ``public_key`` is
    given) replace the roots the proof claims.
    """
    old_root = _trusted_root(proof.old_size, None, old, public_key, proof.old_root)
    new_root = _trusted_root(proof.new_size, None, new, public_key, proof.new_root)
    if not consistency_ok(proof.old_size, proof.new_size, old_root, new_root, proof.path):
        raise LedgerIntegrityError(
            f"tree size {proof.old_size} is not proven a prefix of size {proof.new_size}",
            hint="the log was rewritten between the two sizes, or the proof was altered",
            index=proof.old_size, expected=old_root.hex(), actual=new_root.hex(),
            check="consistency")
