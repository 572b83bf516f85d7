"""Curve25519 arithmetic for ECDH-PSI: hashing onto the curve and X25519 blinding.

Items are hashed to a field element with RFC 9380 ``expand_message_xmd``
(SHA-512) under a per-job domain separation tag, then mapped with Elligator 2
(RFC 9380 §6.7.1, ``map_to_curve_elligator2`` for curve25519) straight to a
Montgomery u-coordinate. We never need the v-coordinate: X25519 works on u
alone, so the square root of the map is skipped and the map costs one field
inversion and one Legendre symbol (both in ``gmpy2``).

Elligator 2 always lands on the curve, never on its quadratic twist. The map's
output may still carry a small-order component (the curve has cofactor 8);
X25519's clamped scalars are multiples of 8, so the first blinding clears it
and every blinded value lies in the prime-order subgroup. A small-order input
would blind to the identity (u = 0); :func:`blind_points` refuses that output
with a :class:`~pcnode.errors.ProtocolError` naming the position.

Blinding is ``X25519(k, u)``. For clamped scalars ``a``, ``b`` and a point in
the prime-order subgroup, ``X25519(b, X25519(a, u)) == X25519(a, X25519(b, u))``:
that commutativity is what ECDH-PSI rests on. The scalar multiplications run
in :mod:`protocols.psi.x25519`, eight at a time where the CPU allows.
"""

from __future__ import annotations

import hashlib
import os

import gmpy2
import numpy as np

from pcnode.errors import InvalidInput, ProtocolError

from .x25519 import SMALL_ORDER_U, scalar_mult_many

#: The field prime of Curve25519, 2^255 - 19.
P = 2**255 - 19
#: Montgomery coefficient A of Curve25519 (v^2 = u^3 + A u^2 + u).
A = 486662
#: Elligator 2's non-square constant Z for curve25519 (RFC 9380 §8.5).
Z = 2
#: Bytes in an encoded u-coordinate (little-endian, RFC 7748).
POINT_BYTES = 32
#: Bytes of a secret scalar.
SCALAR_BYTES = 32
#: RFC 9380 ``L`` for curve25519: ceil((ceil(log2(p)) + k) / 8) with k = 128
#: bits of security, so the reduction mod p is statistically uniform.
FIELD_HASH_BYTES = 48
#: The hash-to-curve suite this module implements (encode_to_curve, nonuniform),
#: minus the cofactor clearing, which X25519's clamping does.
SUITE_ID = b"curve25519_XMD:SHA-512_ELL2_NU_"
#: Domain tag for pcnode's PSI, version 1 (which fixes the suite above). The
#: per-job salt is appended. 13 + 32 bytes keeps DST' at 46 bytes, so the second
#: SHA-512 of expand_message_xmd (64 + 1 + 46 bytes) fits in one block.
DOMAIN_TAG = b"pcnode/psi/v1"
#: RFC 9380 §5.3.3 caps a DST at 255 bytes.
MAX_DST_BYTES = 255

_SHA512_BLOCK = 128
_P_MPZ = gmpy2.mpz(P)
_A_MPZ = gmpy2.mpz(A)
_MINUS_A = gmpy2.mpz(P - A)

def job_dst(salt: bytes) -> bytes:
    """The domain separation tag for one PSI job: pcnode's tag, the suite, and the job's salt."""
    dst = DOMAIN_TAG + bytes(salt)
    if len(dst) > MAX_DST_BYTES:
        raise InvalidInput(f"PSI salt of {len(salt)} bytes is too long", hint="use a 32-byte salt")
    return dst


class FieldHasher:
    """RFC 9380 ``hash_to_field`` (count 1) with ``expand_message_xmd``/SHA-512 for one DST.

    The zero-padded first block is absorbed once and the SHA-512 state is copied
    per message, so each item costs two short SHA-512 calls.
    """

    def __init__(self, dst: bytes) -> None:
        if len(dst) > MAX_DST_BYTES:
            raise InvalidInput("domain separation tag longer than 255 bytes")
        dst_prime = dst + bytes([len(dst)])
        self._head = hashlib.sha512(bytes(_SHA512_BLOCK))
        self._tail0 = FIELD_HASH_BYTES.to_bytes(2, "big") + b"\x00" + dst_prime
        self._tail1 = b"\x01" + dst_prime

    def expand(self, msg: bytes) -> bytes:
        """``expand_message_xmd(msg, DST, 48)``: 48 uniform bytes."""
        h = self._head.copy()
        h.update(msg)
        h.update(self._tail0)
        b0 = h.digest()
        return hashlib.sha512(b0 + self._tail1).digest()[:FIELD_HASH_BYTES]

    def to_field(self, msg: bytes) -> int:
        """``hash_to_field(msg, 1)``: one element of GF(p)."""
        return int.from_bytes(self.expand(msg), "big") % P


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 §5.3.1 ``expand_message_xmd`` with SHA-512, for any output length ≤ 255·64."""
    ell = -(-length // 64)
    if ell > 255 or length > 65535 or len(dst) > MAX_DST_BYTES:
        raise InvalidInput("expand_message_xmd: requested length or DST too long")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(
        bytes(_SHA512_BLOCK) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime
    ).digest()
    out = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, out[-1], strict=True))
        out.append(hashlib.sha512(mixed + bytes([i]) + dst_prime).digest())
    return b"".join(out)[:length]


def elligator2_u(r: int) -> int:
    """RFC 9380 ``map_to_curve_elligator2`` for curve25519, returning only the u-coordinate.

    ``x1 = -A / (1 + Z r^2)``; if ``g(x1) = x1^3 + A x1^2 + x1`` is square the
    point has u = x1, else u = -x1 - A. ``1 + 2 r^2`` never vanishes because
    -1/2 is not a square mod p, so no exceptional case exists.
    """
    rr = gmpy2.mpz(r)
    x1 = _MINUS_A * gmpy2.invert(Z * rr * rr + 1, _P_MPZ) % _P_MPZ
    gx1 = x1 * (x1 * (x1 + _A_MPZ) + 1) % _P_MPZ
    if gmpy2.legendre(gx1, _P_MPZ) < 0:
        x1 = (_MINUS_A - x1) % _P_MPZ
    return int(x1)


def hash_to_u(msg: bytes, hasher: FieldHasher) -> bytes:
    """Hash ``msg`` to a 32-byte little-endian u-coordinate on Curve25519 (not the twist)."""
    return elligator2_u(hasher.to_field(msg)).to_bytes(POINT_BYTES, "little")


def u_to_int(u: bytes) -> int:
    """Decode a 32-byte little-endian u-coordinate (no masking, no reduction)."""
    return int.from_bytes(u, "little")


def curve_rhs(u: int) -> int:
    """``u^3 + A u^2 + u`` mod p; a square exactly when u is on the curve, not the twist."""
    uu = gmpy2.mpz(u)
    return int(uu * (uu * (uu + _A_MPZ) + 1) % _P_MPZ)


def is_on_curve(u: int) -> bool:
    """True when u is the u-coordinate of a Curve25519 point (its v is in GF(p))."""
    return gmpy2.legendre(curve_rhs(u), _P_MPZ) >= 0


def new_scalar() -> bytes:
    """A fresh 32-byte X25519 secret scalar from the OS CSPRNG (clamped by X25519 itself)."""
    return os.urandom(SCALAR_BYTES)


def blind_points(points: bytes, key: bytes, *, check_curve: bool = False,
                 returned_to_sender: bool = False) -> bytes:
    """Blind a packed run of 32-byte u-coordinates with ``key``; return them packed likewise.

    A small-order point (which X25519 maps to u = 0, and OpenSSL refuses) raises
    ProtocolError naming its position. With ``check_curve`` each point must
    also be canonical (u < p) and on the curve rather than its twist. X25519 is
    twist-secure and its clamped scalars clear every small factor, so the check
    detects a faulty peer but guards no secret; it costs ~10%.
    ``returned_to_sender`` marks points whose blinded values go back to the
    peer that sent them (see :func:`protocols.psi.x25519.scalar_mult_many`).
    """
    points = bytes(points)
    if len(points) % POINT_BYTES:
        raise ProtocolError("packed points are not a multiple of 32 bytes")
    if check_curve:
        for i in range(0, len(points), POINT_BYTES):
            x = int.from_bytes(points[i : i + POINT_BYTES], "little")
            if x >= P or gmpy2.legendre(x * (x * (x + A) + 1) % P, P) < 0:
                raise ProtocolError(
                    "peer sent a value that is not a Curve25519 point",
                    hint="the peer runs an incompatible or faulty PSI implementation",
                    position=i // POINT_BYTES,
                )
    out = scalar_mult_many(points, key, returned_to_sender=returned_to_sender)
    if out:
        zero_rows = ~np.frombuffer(out, dtype=np.uint8).reshape(-1, POINT_BYTES).any(axis=1)
        if zero_rows.any():  # X25519 of a small-order point is the identity, u = 0
            raise ProtocolError(
                "peer sent a small-order point",
                hint="the peer runs an incompatible or faulty PSI implementation",
                position=int(np.argmax(zero_rows)),
            )
    return out


def blind_one(u: bytes, key: bytes) -> bytes:
    """Blind a single point (tests and small tools; the protocol uses :func:`blind_points`)."""
    return blind_points(u, key)


def canonical_mask(points: np.ndarray) -> np.ndarray:
    """Vectorised check over an (n, 32) uint8 array: True where u is a canonical value < p."""
    top = points[:, 31]
    high_bit_clear = top < 0x80
    # u >= p  <=>  top byte 0x7f, bytes 1..30 all 0xff, and byte 0 >= 0xed.
    ge_p = (top == 0x7F) & np.all(points[:, 1:31] == 0xFF, axis=1) & (points[:, 0] >= 0xED)
    return high_bit_clear & ~ge_p


__all__ = [
    "DOMAIN_TAG",
    "FIELD_HASH_BYTES",
    "POINT_BYTES",
    "SCALAR_BYTES",
    "SMALL_ORDER_U",
    "SUITE_ID",
    "A",
    "FieldHasher",
    "P",
    "blind_one",
    "blind_points",
    "canonical_mask",
    "curve_rhs",
    "elligator2_u",
    "expand_message_xmd",
    "hash_to_u",
    "is_on_curve",
    "job_dst",
    "new_scalar",
    "u_to_int",
]
