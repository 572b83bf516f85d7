"""The ECDH part of intersection-aggregate, behind a three-function adapter.

The surface is deliberately tiny so that it can later be pointed at
``protocols.psi`` (which owns hashing to Curve25519 and blinding, with its own
pools and normalisation)::

    hash_and_blind(items, salt, scalar) -> (n, 32) uint8   H(item)^scalar
    reblind(points, scalar)             -> (n, 32) uint8   P^scalar
    new_scalar()                        -> 32 random bytes

TEMPORARY: until ``protocols.psi`` has a stable API, this module implements the
primitives itself: SHA-512 over a domain separator, the salt and the item,
reduced modulo p = 2^255 - 19, then the Elligator 2 map of RFC 9380 (s. 6.7.1,
``Z = 2``) straight to the Montgomery u-coordinate, then X25519 with the
(clamped) scalar. Clamped scalars are multiples of 8, so every blinded value
lies in the prime-order subgroup. This is a single-map *encoding*
(``encode_to_curve``), which is adequate for DH-based PSI; ``protocols.psi``
may differ in detail (e.g. expand_message_xmd), which is why job salts and
outputs of the two must not be mixed.

All functions are module-level and take plain arguments, so callers can run
them in a spawn process pool chunk by chunk (see :mod:`protocols.stats.protocol`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import gmpy2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from pcnode.errors import CryptoError, InvalidInput

#: Domain separator of the temporary hash-to-curve (distinct from protocols.psi's).
HASH_DOMAIN = b"pcnode/stats/ecdh/elligator2-sha512/v1\x00"
#: Width of a Curve25519 u-coordinate.
POINT_BYTES = 32

_P = gmpy2.mpz(2**255 - 19)
_A = gmpy2.mpz(486662)
_Z = 2  # RFC 9380 s. 6.7.1: Z = 2 for curve25519


def new_scalar() -> bytes:
    """A fresh secret blinding scalar (X25519 clamps it on use)."""
    return os.urandom(32)


def _elligator2_u(r: gmpy2.mpz) -> gmpy2.mpz:
    """RFC 9380 map_to_curve_elligator2 for curve25519, returning only u."""
    d = (1 + _Z * r * r) % _P
    x1 = (-_A * gmpy2.invert(d, _P)) % _P if d else (-_A) % _P
    gx1 = (x1 * x1 * x1 + _A * x1 * x1 + x1) % _P
    if gmpy2.legendre(gx1, _P) != -1:
        return x1
    return (-x1 - _A) % _P


def _prefix(salt: bytes) -> Any:
    return hashlib.sha512(HASH_DOMAIN + len(salt).to_bytes(2, "big") + salt)


def _hash_u(prefix: Any, item: bytes) -> bytes:
    h = prefix.copy()
    h.update(item)
    r = gmpy2.mpz(int.from_bytes(h.digest(), "little")) % _P
    return int(_elligator2_u(r)).to_bytes(POINT_BYTES, "little")


def hash_to_u(item: bytes, salt: bytes) -> bytes:
    """The 32-byte little-endian u-coordinate of H(salt, item) on Curve25519 (unblinded)."""
    return _hash_u(_prefix(salt), item)


def _key(scalar: bytes) -> X25519PrivateKey:
    if not isinstance(scalar, bytes) or len(scalar) != 32:
        raise InvalidInput("a blinding scalar is 32 bytes")
    return X25519PrivateKey.from_private_bytes(scalar)


def _mul(key: X25519PrivateKey, u: bytes) -> bytes:
    try:
        return key.exchange(X25519PublicKey.from_public_bytes(u))
    except ValueError:
        # cryptography refuses an all-zero result: u was of small order.
        raise CryptoError("a blinded point is of small order",
                          hint="the peer sent a point outside the prime-order group") from None


def hash_and_blind(items: Sequence[bytes], salt: bytes, scalar: bytes) -> np.ndarray:
    """``H(item)^scalar`` for every item, as an ``(n, 32)`` uint8 array."""
    key = _key(scalar)
    prefix = _prefix(salt)
    if not all(isinstance(item, bytes) for item in items):
        raise InvalidInput("items to hash must be bytes (normalise and encode keys first)")
    out = b"".join([_mul(key, _hash_u(prefix, item)) for item in items])
    return np.frombuffer(out, dtype=np.uint8).reshape(len(items), POINT_BYTES)


def reblind(points: np.ndarray, scalar: bytes) -> np.ndarray:
    """``P^scalar`` for every row of an ``(n, 32)`` uint8 array of u-coordinates."""
    if not isinstance(points, np.ndarray) or points.dtype != np.uint8 or points.ndim != 2 \
            or points.shape[1] != POINT_BYTES:
        raise CryptoError("blinded points must be an (n, 32) uint8 array")
    key = _key(scalar)
    raw = np.ascontiguousarray(points).tobytes()
    out = b"".join([_mul(key, raw[i:i + POINT_BYTES]) for i in range(0, len(raw), POINT_BYTES)])
    return np.frombuffer(out, dtype=np.uint8).reshape(points.shape[0], POINT_BYTES)


__all__ = ["HASH_DOMAIN", "POINT_BYTES", "hash_and_blind", "hash_to_u", "new_scalar", "reblind"]
