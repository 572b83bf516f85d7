"""The ECDH part of intersection-aggregate: a thin adapter over :mod:`protocols.psi`.

``protocols.psi`` owns hashing to Curve25519 (RFC 9380 expand_message_xmd with
SHA-512, Elligator 2 straight to the Montgomery u-coordinate) and X25519
blinding; this module only fixes the shape the stats protocol uses::

    hash_and_blind(items, salt, scalar) -> (n, 32) uint8   H(item)^scalar
    reblind(points, scalar[, returned])  -> (n, 32) uint8   P^scalar
    new_scalar()                        -> 32 random bytes

Keys reach here already normalised by the node, so no further normalisation is
applied. Clamped X25519 scalars are multiples of 8, so every blinded value lies
in the prime-order subgroup. All functions are module-level and take plain
arguments, so callers can run them in a spawn process pool chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pcnode.errors import CryptoError, InvalidInput, ProtocolError
from protocols.psi.blinding import hash_and_blind_chunk
from protocols.psi.curve import POINT_BYTES, FieldHasher, blind_points, job_dst
from protocols.psi.curve import hash_to_u as _psi_hash_to_u
from protocols.psi.curve import new_scalar as _psi_scalar
from protocols.psi.normalize import Normalization

#: Stats keys are hashed exactly as given (the node normalised them when reading the dataset).
NO_NORMALIZATION = Normalization.parse("none")


def new_scalar() -> bytes:
    """A fresh secret X25519 scalar."""
    return _psi_scalar()


def hash_to_u(item: bytes, salt: bytes) -> bytes:
    """The curve point (u-coordinate, 32 bytes little-endian) of ``item`` under ``salt``."""
    return _psi_hash_to_u(item, FieldHasher(job_dst(salt)))


def hash_and_blind(items: Sequence[bytes], salt: bytes, scalar: bytes) -> np.ndarray:
    """``H(item)^scalar`` for every item, as an (n, 32) uint8 array."""
    packed, skipped = hash_and_blind_chunk(list(items), job_dst(salt), NO_NORMALIZATION, scalar)
    if skipped:
        raise InvalidInput(f"{len(skipped)} keys are empty and cannot be matched",
                           hint="remove rows with an empty key column")
    return np.frombuffer(packed, dtype=np.uint8).reshape(-1, POINT_BYTES)


def reblind(points: np.ndarray, scalar: bytes, returned_to_sender: bool = False) -> np.ndarray:
    """``P^scalar`` for peer-supplied points; CryptoError for a bad shape or a small-order point.

    ``returned_to_sender``: the results go back to the peer that sent the points
    (the holder's pass over the requester's keys), so they take the audited path.
    """
    if points.ndim != 2 or points.shape[1] != POINT_BYTES or points.dtype != np.uint8:
        raise CryptoError(f"points must be an (n, 32) uint8 array, got {points.dtype} {points.shape}")
    try:
        out = blind_points(points.tobytes(), scalar, returned_to_sender=returned_to_sender)
    except ProtocolError as exc:
        raise CryptoError(f"peer sent a point of small order: {exc.message}") from None
    return np.frombuffer(out, dtype=np.uint8).reshape(-1, POINT_BYTES)
