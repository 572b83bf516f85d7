"""Paillier encryption on ``phe`` + ``gmpy2``, with a fast path for the key owner.

Objects
-------
* :class:`PaillierPublicKey` - what leaves the key owner: ``n`` and a key id.
  It adds ciphertexts, re-randomises them, encrypts (slowly, with a full-size
  random ``r``), and turns ciphertexts into fixed-width bytes and back with
  validation.
* :class:`PaillierSecretKey` - stays with the key owner: ``p``, ``q`` and the
  DJN base. It decrypts (CRT, via ``phe``) and encrypts fast.

Fast encryption (key owner only)
--------------------------------
A Paillier ciphertext is ``(1 + m*n) * r^n mod n^2``. Plain ``phe`` computes
``r^n`` with a 2048-bit exponent modulo a 4096-bit ``n^2`` (~100 per second per
core here). The key owner instead:

* uses short-exponent randomness after Damgard-Jurik-Nielsen (DJN 2010, s. 4):
  ``r^n`` is replaced by ``h_s^s`` with the fixed base ``h_s = (-x^2)^n mod n^2``
  and a random ``s`` of :data:`short_exponent_bits` (twice the security level,
  so generic discrete-log attacks on ``s`` cost 2^security);
* computes ``h_s^s`` with a fixed-base windowed table (``s`` split into
  :data:`DJN_WINDOW_BITS`-bit digits, 12-bit for large jobs, one table row per
  digit position), so an encryption is ~2 * 28 (or 2 * 19) modular multiplications;
* works modulo ``p^2`` and ``q^2`` and recombines with the CRT, halving the
  operand size.

:func:`fast_encrypt` is a module-level function over picklable
:class:`FastKeyMaterial`, so a spawn process pool can run it
(see :mod:`protocols.he.pool`); each worker builds the table once per key.

Serialisation
-------------
Ciphertexts travel as :func:`PaillierPublicKey.encode_ciphertexts` blobs:
``MAGIC | key id (8) | width (2) | count (4) | count * width big-endian bytes``.
Decoding checks the magic, that the key id is this key's (a foreign key is
named as such), the width, the length, and that every value is in ``[1, n^2)``.
Coprimality with ``n`` costs a gcd (~18 us); callers check it once on an
aggregate (a product is coprime iff every factor is), see
:meth:`PaillierPublicKey.check_coprime`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2
from gmpy2 import mpz
from phe import paillier as phe_paillier

from pcnode.errors import CryptoError, InvalidInput

#: Default modulus size. NIST SP 800-57 Part 1 Rev. 5, Table 2: a 2048-bit
#: factoring modulus gives 112-bit security, acceptable until 2030.
DEFAULT_PAILLIER_BITS = 2048
#: The stronger option: 3072 bits give 128-bit security (beyond 2030).
STRONG_PAILLIER_BITS = 3072
#: Security level of each allowed modulus size (NIST SP 800-57 Pt 1, Table 2).
SECURITY_BITS: dict[int, int] = {DEFAULT_PAILLIER_BITS: 112, STRONG_PAILLIER_BITS: 128}
#: Window of the fixed-base table: 2^8 entries per digit keeps the table at
#: ~1.8 MB per prime for 2048-bit keys and builds in ~50 ms (small jobs).
DJN_WINDOW_BITS = 8
#: Window for large jobs: 19 digits instead of 28 (~30% fewer multiplications),
#: for a ~40 MB table per worker that builds in ~0.6 s.
DJN_WINDOW_BITS_LARGE = 12
#: Encryptions from which a job uses the large window.
LARGE_JOB_ENCRYPTIONS = 100_000

_KEY_MAGIC = b"PCPK1"
_CT_MAGIC = b"PCPC1"
_CT_HEADER = struct.Struct(">5s8sHI")
_KEY_ID_DOMAIN = b"pcnode/paillier/key-id/v1\x00"


def short_exponent_bits(bits: int) -> int:
    """Length of the DJN random exponent for a modulus of ``bits``: 2 x security level."""
    return 2 * SECURITY_BITS[bits]


def _check_bits(bits: int) -> None:
    if bits not in SECURITY_BITS:
        raise InvalidInput(
            f"unsupported Paillier key size {bits}",
            hint=f"use {DEFAULT_PAILLIER_BITS} (default) or {STRONG_PAILLIER_BITS}",
        )


class PaillierPublicKey:
    """A Paillier public key: modulus ``n``, its key id, and ciphertext operations."""

    def __init__(self, n: int) -> None:
        n = mpz(n)
        bits = int(n.bit_length())
        _check_bits(bits)
        if n % 2 == 0 or gmpy2.is_square(n):
            raise CryptoError("Paillier modulus is malformed (even or a square)")
        self.n = n
        self.nsquare = n * n
        self.bits = bits
        self.key_id = hashlib.sha256(_KEY_ID_DOMAIN + int(n).to_bytes(bits // 8, "big")).digest()[:8]
        #: Width of one serialised ciphertext (big-endian, fixed).
        self.ciphertext_bytes = 2 * ((bits + 7) // 8)
        #: Largest plaintext bit length that never wraps modulo n.
        self.plaintext_bits = bits - 1
        self._phe = phe_paillier.PaillierPublicKey(int(n))

    # -- identity and serialisation ----------------------------------------------------

    @property
    def key_id_hex(self) -> str:
        """The key id as hex (a digest of ``n``; safe to log)."""
        return self.key_id.hex()

    def to_bytes(self) -> bytes:
        """``MAGIC | bits (2) | n`` big-endian."""
        return _KEY_MAGIC + struct.pack(">H", self.bits) + int(self.n).to_bytes(self.bits // 8, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> PaillierPublicKey:
        """Parse :meth:`to_bytes` output from a peer; CryptoError if malformed."""
        if not isinstance(data, bytes) or len(data) < 7 or data[:5] != _KEY_MAGIC:
            raise CryptoError("peer sent a malformed Paillier public key (bad header)")
        (bits,) = struct.unpack(">H", data[5:7])
        if bits not in SECURITY_BITS or len(data) != 7 + bits // 8:
            raise CryptoError("peer sent a Paillier public key of an unsupported size",
                              bits=bits, length=len(data))
        n = int.from_bytes(data[7:], "big")
        if n.bit_length() != bits:
            raise CryptoError("peer sent a Paillier public key whose modulus is too short")
        try:
            return cls(n)
        except InvalidInput as exc:
            raise CryptoError(str(exc)) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PaillierPublicKey) and self.n == other.n

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f"PaillierPublicKey(bits={self.bits}, id={self.key_id_hex})"

    # -- homomorphic operations --------------------------------------------------------

    def encrypt(self, m: int) -> Any:
        """Encrypt ``0 <= m < n`` with a full-size random ``r`` (slow; for the non-owner)."""
        m = mpz(m)
        if m < 0 or m >= self.n:
            raise InvalidInput("Paillier plaintext out of range [0, n)")
        return (1 + m * self.n) % self.nsquare * self._random_rn() % self.nsquare

    def _random_rn(self) -> Any:
        while True:
            r = mpz(int.from_bytes(os.urandom(self.bits // 8 + 8), "big")) % self.n
            if r > 1 and gmpy2.gcd(r, self.n) == 1:
                return gmpy2.powmod(r, self.n, self.nsquare)

    def rerandomize(self, c: Any) -> Any:
        """Multiply ``c`` by a fresh ``r^n``: same plaintext, unlinkable randomness."""
        return mpz(c) * self._random_rn() % self.nsquare

    def add(self, c1: Any, c2: Any) -> Any:
        """Ciphertext of the sum of the two plaintexts."""
        return mpz(c1) * mpz(c2) % self.nsquare

    def add_plain(self, c: Any, m: int) -> Any:
        """Ciphertext of plaintext(c) + m (deterministic; re-randomise before sending)."""
        return mpz(c) * ((1 + mpz(m) * self.n) % self.nsquare) % self.nsquare

    def sum(self, cts: Iterable[Any]) -> Any:
        """Ciphertext of the sum of all plaintexts (Enc(0) with r=1 for an empty sum)."""
        acc = mpz(1)
        n2 = self.nsquare
        for c in cts:
            acc = acc * c % n2
        return acc

    def check_coprime(self, c: Any, what: str = "ciphertext") -> None:
        """CryptoError unless ``gcd(c, n) == 1`` (a product is coprime iff all factors are)."""
        if gmpy2.gcd(mpz(c), self.n) != 1:
            raise CryptoError(f"{what} is not coprime with the Paillier modulus",
                              hint="the peer sent a malformed ciphertext", key_id=self.key_id_hex)

    def check_ciphertext(self, c: Any, what: str = "ciphertext") -> None:
        """CryptoError unless ``0 < c < n^2`` and coprime with ``n``."""
        c = mpz(c)
        if c <= 0 or c >= self.nsquare:
            raise CryptoError(f"{what} is out of range: not in [1, n^2)", key_id=self.key_id_hex)
        self.check_coprime(c, what)

    # -- fixed-width serialisation ------------------------------------------------------

    def encode_ciphertexts(self, cts: Sequence[Any]) -> bytes:
        """Serialise ciphertexts of this key as one self-describing fixed-width blob."""
        w = self.ciphertext_bytes
        head = _CT_HEADER.pack(_CT_MAGIC, self.key_id, w, len(cts))
        return head + b"".join(int(c).to_bytes(w, "big") for c in cts)

    def decode_ciphertexts(self, blob: bytes, *, check_coprime: bool = False,
                           expected: int | None = None) -> list[Any]:
        """Parse a blob from a peer; CryptoError naming the first problem found.

        Checks: header, key id (a ciphertext under another key is *foreign*),
        width, length, optional count, and every value in ``[1, n^2)``;
        ``check_coprime`` also runs the gcd test on each value.
        """
        if not isinstance(blob, bytes) or len(blob) < _CT_HEADER.size:
            raise CryptoError("peer sent a malformed ciphertext batch (too short)")
        magic, key_id, width, count = _CT_HEADER.unpack_from(blob)
        if magic != _CT_MAGIC:
            raise CryptoError("peer sent a malformed ciphertext batch (bad header)")
        if key_id != self.key_id:
            raise CryptoError(
                "peer sent ciphertexts under a foreign Paillier key",
                hint="both parties must use the key announced at the start of the job",
                expected=self.key_id_hex, actual=key_id.hex(),
            )
        if width != self.ciphertext_bytes or len(blob) != _CT_HEADER.size + width * count:
            raise CryptoError("peer sent a ciphertext batch of the wrong length",
                              width=width, count=count, length=len(blob))
        if expected is not None and count != expected:
            raise CryptoError("peer sent the wrong number of ciphertexts",
                              expected=expected, actual=count)
        out = []
        n2 = self.nsquare
        view = memoryview(blob)[_CT_HEADER.size:]
        for i in range(count):
            c = mpz(int.from_bytes(view[i * width:(i + 1) * width], "big"))
            if c <= 0 or c >= n2:
                raise CryptoError(f"ciphertext {i} of a batch is out of range: not in [1, n^2)",
                                  key_id=self.key_id_hex, index=i)
            if check_coprime:
                self.check_coprime(c, f"ciphertext {i} of a batch")
            out.append(c)
        return out


@dataclass(frozen=True)
class FastKeyMaterial:
    """What a worker needs to encrypt fast: secret factors and the DJN base. Never sent to peers."""

    key_id: bytes
    n: int
    p: int
    q: int
    h_s: int
    exponent_bits: int
    window_bits: int = DJN_WINDOW_BITS


class PaillierSecretKey:
    """The key owner's side: factors ``p``, ``q``, the DJN base, decryption, fast encryption."""

    def __init__(self, public_key: PaillierPublicKey, p: int, q: int, h_s: int | None = None) -> None:
        p, q = mpz(p), mpz(q)
        if p * q != public_key.n:
            raise CryptoError("Paillier secret key does not match its public key")
        self.public_key = public_key
        self._p, self._q = p, q
        self._phe = phe_paillier.PaillierPrivateKey(public_key._phe, int(p), int(q))
        if h_s is None:
            n = public_key.n
            while True:
                x = mpz(int.from_bytes(os.urandom(public_key.bits // 8 + 8), "big")) % n
                if x > 1 and gmpy2.gcd(x, n) == 1:
                    break
            h_s = gmpy2.powmod((-x * x) % n, n, public_key.nsquare)
        self._h_s = mpz(h_s)

    @classmethod
    def generate(cls, bits: int = DEFAULT_PAILLIER_BITS) -> PaillierSecretKey:
        """Generate a fresh key pair of ``bits`` (2048 default, 3072 option)."""
        _check_bits(bits)
        while True:
            pub, priv = phe_paillier.generate_paillier_keypair(n_length=bits)
            if pub.n.bit_length() == bits:
                break
        return cls(PaillierPublicKey(pub.n), priv.p, priv.q)

    def __repr__(self) -> str:
        return f"PaillierSecretKey(bits={self.public_key.bits}, id={self.public_key.key_id_hex})"

    @property
    def key_id(self) -> bytes:
        """Key id of the public key."""
        return self.public_key.key_id

    def material(self, encryptions: int = 0) -> FastKeyMaterial:
        """Picklable material for :func:`fast_encrypt` in a worker process.

        ``encryptions`` (the job size) picks the table window: large jobs amortise a larger table.
        """
        w = DJN_WINDOW_BITS_LARGE if encryptions >= LARGE_JOB_ENCRYPTIONS else DJN_WINDOW_BITS
        return FastKeyMaterial(self.key_id, int(self.public_key.n), int(self._p), int(self._q),
                               int(self._h_s), short_exponent_bits(self.public_key.bits), w)

    def encrypt_many(self, messages: Sequence[int]) -> list[Any]:
        """Fast-encrypt ``messages`` in this process (see :func:`fast_encrypt`)."""
        return fast_encrypt(self.material(), messages)

    def decrypt(self, c: Any, what: str = "ciphertext") -> int:
        """Decrypt after checking range and coprimality; returns ``0 <= m < n``."""
        self.public_key.check_ciphertext(c, what)
        return int(self._phe.raw_decrypt(int(c)))


# -- fast encryption (runs in workers) --------------------------------------------------


class _FastTables:
    """Per-key fixed-base tables modulo p^2 and q^2, built once per worker."""

    def __init__(self, km: FastKeyMaterial) -> None:
        p, q, n = mpz(km.p), mpz(km.q), mpz(km.n)
        self.n = n
        self.p2, self.q2 = p * p, q * q
        self.p2_inv = gmpy2.invert(self.p2, self.q2)
        self.w = km.window_bits
        self.digits = -(-km.exponent_bits // self.w)
        self.exponent_bytes = (self.digits * self.w + 7) // 8
        h = mpz(km.h_s)
        self.tp = self._table(h % self.p2, self.p2)
        self.tq = self._table(h % self.q2, self.q2)

    def _table(self, base: Any, mod: Any) -> list[list[Any]]:
        rows = []
        size = 1 << self.w
        for _ in range(self.digits):
            row = [mpz(1)] * size
            for j in range(1, size):
                row[j] = row[j - 1] * base % mod
            rows.append(row)
            base = row[size - 1] * base % mod  # base^(2^w)
        return rows


_TABLE_CACHE: dict[tuple[bytes, int], _FastTables] = {}
_TABLE_CACHE_MAX = 2


def _tables(km: FastKeyMaterial) -> _FastTables:
    key = (km.key_id, km.window_bits)
    t = _TABLE_CACHE.get(key)
    if t is None:
        while len(_TABLE_CACHE) >= _TABLE_CACHE_MAX:
            _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))
        t = _TABLE_CACHE[key] = _FastTables(km)
    return t


def fast_encrypt(km: FastKeyMaterial, messages: Sequence[int]) -> list[Any]:
    """Encrypt each ``0 <= m < n`` with CRT and DJN short-exponent randomness.

    Each call draws fresh exponents from ``os.urandom``; ciphertexts are
    distributed as ``(1 + m n) h_s^s mod n^2`` with ``s`` uniform in
    ``[0, 2^(digits*w))``.
    """
    t = _tables(km)
    n, p2, q2, p2_inv = t.n, t.p2, t.q2, t.p2_inv
    tp, tq, w, digits = t.tp, t.tq, t.w, t.digits
    mask = (1 << w) - 1
    eb = t.exponent_bytes
    rnd = os.urandom(eb * len(messages))
    out = []
    for i, m in enumerate(messages):
        if m < 0 or m >= n:
            raise InvalidInput("Paillier plaintext out of range [0, n)")
        s = int.from_bytes(rnd[i * eb:(i + 1) * eb], "little")
        rp = tp[0][s & mask]
        rq = tq[0][s & mask]
        for d in range(1, digits):
            s >>= w
            j = s & mask
            rp = rp * tp[d][j] % p2
            rq = rq * tq[d][j] % q2
        g = 1 + mpz(m) * n
        cp = g % p2 * rp % p2
        cq = g % q2 * rq % q2
        out.append(cp + p2 * ((cq - cp) * p2_inv % q2))
    return out


def fast_encrypt_encoded(km: FastKeyMaterial, messages: Sequence[int]) -> bytes:
    """:func:`fast_encrypt` then serialise as a ciphertext blob (for workers)."""
    cts = fast_encrypt(km, messages)
    width = 2 * ((mpz(km.n).bit_length() + 7) // 8)
    head = _CT_HEADER.pack(_CT_MAGIC, km.key_id, width, len(cts))
    return head + b"".join(int(c).to_bytes(width, "big") for c in cts)


__all__ = [
    "DEFAULT_PAILLIER_BITS",
    "DJN_WINDOW_BITS",
    "DJN_WINDOW_BITS_LARGE",
    "SECURITY_BITS",
    "STRONG_PAILLIER_BITS",
    "FastKeyMaterial",
    "PaillierPublicKey",
    "PaillierSecretKey",
    "fast_encrypt",
    "fast_encrypt_encoded",
    "short_exponent_bits",
]
