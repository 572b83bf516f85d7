"""The audit ledger: an append-only, hash-chained, signed log with Merkle proofs.

Modelled on Certificate Transparency (RFC 9162): every event is an entry
whose RFC 9162 leaf hash is chained to the previous entry and signed with the
node's Ed25519 key; signed checkpoints commit to the Merkle root; inclusion
and consistency proofs can be checked offline; receipts exchanged after each
joint job make one party's tampering visible at the others; bundles carry a
ledger to a regulator, whose replay checks every joint job across nodes.

This package imports nothing from ``node`` or ``protocols``. See
docs/LEDGER.md for the formats.
"""

from .bundle import BundleInfo, export_bundle, read_bundle_header, verify_bundle
from .checkpoint import Checkpoint
from .entry import Entry
from .events import KNOWN_EVENTS, format_parties, parse_parties
from .keys import load_public_key, public_key_pem
from .log import Ledger
from .merkle import MerkleTree
from .proofs import ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion
from .receipt import Receipt, make_receipt, verify_receipt
from .replay import ReplayReport, replay
from .store import LedgerStore, open_store
from .verify import VerifyReport, verify_store

__all__ = [
    "KNOWN_EVENTS",
    "BundleInfo",
    "Checkpoint",
    "ConsistencyProof",
    "Entry",
    "InclusionProof",
    "Ledger",
    "LedgerStore",
    "MerkleTree",
    "Receipt",
    "ReplayReport",
    "VerifyReport",
    "export_bundle",
    "format_parties",
    "load_public_key",
    "make_receipt",
    "open_store",
    "parse_parties",
    "public_key_pem",
    "read_bundle_header",
    "replay",
    "verify_bundle",
    "verify_consistency",
    "verify_inclusion",
    "verify_receipt",
    "verify_store",
]
