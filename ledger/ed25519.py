"""Ed25519 signatures and signature checks, on the fastest well-kept implementation available.

Verifying every entry signature dominates a full ledger verify. On the
reference machine (2026-11-21) one check costs about 130 µs through
``cryptography`` (OpenSSL), about 65 µs through libsodium called directly and
about 77 µs through PyNaCl's ``VerifyKey`` (which copies signature and message
into one buffer and calls ``crypto_sign_open``), so the verifier prefers, in
order:

1. ``libsodium`` — the system's libsodium through ``ctypes``, one function
   (``crypto_sign_verify_detached``), lengths checked before the call;
2. ``nacl`` — PyNaCl, which bundles libsodium (if installed);
3. ``cryptography`` — always available; the reference.

All three implement RFC 8032 verification and agree on every signature
produced by an honest signer. They differ only on deliberately malformed
ones (libsodium also rejects small-order keys and points), which an attacker
without the private key cannot produce in any case.

Signing (:func:`make_signer`) is deterministic (RFC 8032), so every
implementation writes the same bytes; the ledger's append path signs with
libsodium's ``crypto_sign_detached`` through ``ctypes`` (about 20 µs, and the
GIL is released during the call, so other appending threads run meanwhile),
else through PyNaCl (also libsodium), else ``cryptography`` (about 37 µs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pcnode.errors import InvalidInput

from .keys import PublicKeyLike, load_public_key, public_key_raw

Checker = Callable[[bytes, bytes], bool]
"""``check(signature, message) -> bool`` for one fixed public key."""

Signer = Callable[[bytes], bytes]
"""``sign(message) -> 64-byte signature`` for one fixed private key."""

BACKENDS = ("libsodium", "nacl", "cryptography")

SIGNATURE_SIZE = 64


@lru_cache(maxsize=1)
def _libsodium() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("sodium")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        if lib.sodium_init() < 0:
            return None
        fn = lib.crypto_sign_verify_detached
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p]
    fn.restype = ctypes.c_int
    return lib


def _nacl_available() -> bool:
    try:
        import nacl.signing  # noqa: F401
    except ImportError:
        return False
    return True


def available_backends() -> list[str]:
    """Backends usable in this process, fastest first."""
    out = []
    if _libsodium() is not None:
        out.append("libsodium")
    if _nacl_available():
        out.append("nacl")
    out.append("cryptography")
    return out


def default_backend() -> str:
    """The backend :func:`make_checker` picks when none is named."""
    return available_backends()[0]


def _cryptography_checker(key: Ed25519PublicKey) -> Checker:
    verify = key.verify

    def check(signature: bytes, message: bytes) -> bool:
        try:
            verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return check


def _libsodium_checker(raw: bytes) -> Checker:
    lib = _libsodium()
    if lib is None:
        raise InvalidInput("libsodium is not available", hint="use backend='cryptography'")
    fn = lib.crypto_sign_verify_detached

    def check(signature: bytes, message: bytes) -> bool:
        # Length checks first: the C function reads exactly 64 bytes of signature.
        if len(signature) != SIGNATURE_SIZE:
            return False
        return fn(signature, message, len(message), raw) == 0

    return check


def _nacl_checker(raw: bytes) -> Checker:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    verify = VerifyKey(raw).verify

    def check(signature: bytes, message: bytes) -> bool:
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            verify(message, signature)
        except BadSignatureError:
            return False
        return True

    return check


def make_checker(public_key: PublicKeyLike, backend: str | None = None) -> Checker:
    """A signature checker bound to ``public_key`` on ``backend`` (default: fastest)."""
    key = load_public_key(public_key)
    backend = backend or default_backend()
    if backend == "cryptography":
        return _cryptography_checker(key)
    if backend == "libsodium":
        return _libsodium_checker(public_key_raw(key))
    if backend == "nacl":
        return _nacl_checker(public_key_raw(key))
    raise InvalidInput(f"unknown Ed25519 backend {backend!r}", hint=f"use one of {BACKENDS}")


def make_signer(private_key: Ed25519PrivateKey) -> Signer:
    """A signing function for ``private_key``: libsodium through PyNaCl, else ``cryptography``.

    Both give identical signatures (Ed25519 is deterministic); the first
    signature is cross-checked against ``cryptography`` so a broken binding
    fails here, at start-up, not in a verifier years later.
    """
    if not isinstance(private_key, Ed25519PrivateKey):
        raise InvalidInput("an Ed25519 private key is needed to sign",
                           hint="load the node's ledger key")
    reference = private_key.sign
    seed = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
    probe = b"pcnode/ledger/signer-self-test"
    for candidate in (_libsodium_signer, _nacl_signer):
        sign = candidate(seed)
        if sign is not None and sign(probe) == reference(probe):
            return sign
    return reference


def _libsodium_signer(seed: bytes) -> Signer | None:
    """``crypto_sign_detached`` called directly; ``ctypes`` releases the GIL around it."""
    lib = _libsodium()
    if lib is None:
        return None
    try:
        keypair, detached = lib.crypto_sign_seed_keypair, lib.crypto_sign_detached
    except AttributeError:  # pragma: no cover - every libsodium has both
        return None
    keypair.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
    keypair.restype = ctypes.c_int
    detached.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulonglong,
                         ctypes.c_char_p]
    detached.restype = ctypes.c_int
    public, secret_buf = ctypes.create_string_buffer(32), ctypes.create_string_buffer(64)
    if keypair(public, secret_buf, seed) != 0:  # pragma: no cover
        return None
    secret = secret_buf.raw  # immutable bytes: safe to share between threads
    buffer = ctypes.create_string_buffer

    def sign(message: bytes) -> bytes:
        out = buffer(SIGNATURE_SIZE)  # one per call: signers run in several threads
        detached(out, None, message, len(message), secret)
        return out.raw

    return sign


def _nacl_signer(seed: bytes) -> Signer | None:
    if not _nacl_available():
        return None
    from nacl.bindings import crypto_sign, crypto_sign_seed_keypair

    _, secret = crypto_sign_seed_keypair(seed)

    def sign(message: bytes) -> bytes:
        return crypto_sign(message, secret)[:SIGNATURE_SIZE]

    return sign
