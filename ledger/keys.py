"""Loading Ed25519 public keys from the forms people pass around.

Accepted: an ``Ed25519PublicKey``, 32 raw bytes, 64 hex characters, or PEM
(``-----BEGIN PUBLIC KEY-----``, as str or bytes). An ``Ed25519PrivateKey``
is accepted too and reduced to its public half.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from pcnode.errors import InvalidInput

PublicKeyLike = Ed25519PublicKey | Ed25519PrivateKey | bytes | str

_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw


def load_public_key(value: PublicKeyLike) -> Ed25519PublicKey:
    """Return an Ed25519 public key from any accepted form; raise InvalidInput otherwise."""
    if isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, Ed25519PrivateKey):
        return value.public_key()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-----BEGIN"):
            value = text.encode()
        else:
            try:
                value = bytes.fromhex(text)
            except ValueError:
                raise InvalidInput("public key is neither PEM nor hex",
                                   hint="pass the node's ledger public key file (PEM)") from None
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        if data.lstrip().startswith(b"-----BEGIN"):
            try:
                key = serialization.load_pem_public_key(data)
            except ValueError:
                raise InvalidInput("public key PEM cannot be read",
                                   hint="pass a '-----BEGIN PUBLIC KEY-----' file") from None
            if not isinstance(key, Ed25519PublicKey):
                raise InvalidInput("public key is not Ed25519",
                                   hint="ledger keys are Ed25519; pass the ledger key, "
                                        "not the TLS key")
            return key
        if len(data) == 32:
            return Ed25519PublicKey.from_public_bytes(data)
        raise InvalidInput(f"raw public key has {len(data)} bytes, not 32")
    raise InvalidInput(f"cannot read a public key from {type(value).__name__}")


def public_key_raw(key: PublicKeyLike) -> bytes:
    """The 32 raw bytes of a public key."""
    return load_public_key(key).public_bytes(_RAW, _RAW_PUB)


def public_key_pem(key: PublicKeyLike) -> str:
    """The public key as SubjectPublicKeyInfo PEM text."""
    return load_public_key(key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(key: PublicKeyLike) -> str:
    """A short fingerprint for messages: the first 16 hex digits of SHA-256(raw key)."""
    return hashlib.sha256(public_key_raw(key)).hexdigest()[:16]
