"""Coefficient-packed CKKS for masked linear aggregates, with an exact read-out.

Used by joint statistics (:mod:`protocols.stats.ckks_backend`). The key owner
encrypts fixed-point integers in polynomial *coefficients*; another party
multiplies ciphertexts by plaintext 0/1 selection polynomials laid out
reversed (:func:`~protocols.he.coefficients.reversed_selection`), so that
coefficient 0 of each product is an inner product, adds products, and masks
the result; the key owner decrypts and reads coefficient 0 only.

Parameters (:data:`CKKS_COEFF_BITS`, :data:`CKKS_POLY_DEGREE`)
-------------------------------------------------------------
One 60-bit prime, ring degree 8192. All arithmetic is linear (plaintext
products with integer polynomials, additions), so there is no rescaling, no
relinearisation, no rotation, hence no key switching, no special prime and no
Galois or relinearisation keys (~35 MB) to ship. log2 q = 60 is far inside the
128-bit bound of the HE Standard (218 bits for N = 8192).

Exact read-out
--------------
SEAL keeps CKKS plaintexts in NTT form. The negacyclic inverse NTT gives
coefficient 0 as ``N^-1 * sum_k p_k mod q`` whatever the order of the NTT
values, so :meth:`CkksCoeffSecret.read_constant` recovers coefficient 0 of a
decryption *exactly* (an integer mod q), with no float decoding. A decryption
is that integer plus the ciphertext noise: symmetric encryption noise is
about 3.2 per coefficient, a product with a 0/1 selection of m ones about
3.2 sqrt(m), and the requester's public-key mask encryption adds about
3.2 sqrt(2N/3) (:func:`noise_bound` gives a 12-sigma bound).

Masks
-----
:meth:`CkksCoeffPublic.mask` adds a fresh public-key encryption of a
polynomial that is uniform modulo q in every coefficient, so what the key
owner decrypts is uniform: it learns nothing, except where the mask's
coefficient 0 is deliberately set (``constant=``), which is how the key owner
is shown a count (with flooding noise, see protocols.stats).

Serialisation
-------------
The key owner's symmetric ciphertexts are saved *seeded* (SEAL replaces the
uniform half by the seed of its PRNG): 65.7 KB instead of 131 KB each.
"""

from __future__ import annotations

import os
import secrets
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

from pcnode.errors import CryptoError, InvalidInput

from . import sealio
from .coefficients import MAX_EXACT_COEFFICIENT, CoefficientEmbedding

#: Ring degree: 8192 coefficients per ciphertext.
CKKS_POLY_DEGREE = 8192
#: One 60-bit prime (see the module docstring).
CKKS_COEFF_BITS = (60,)
#: Sums (and masked values after unmasking) must stay below 2**MAX_RESULT_BITS
#: in absolute value, so that they do not wrap modulo the ~2**60 prime.
MAX_RESULT_BITS = 58
#: Standard deviation of SEAL's error distribution.
NOISE_SIGMA = 3.2
#: Sigmas in :func:`noise_bound`: a Gaussian exceeds 12 sigma with probability < 1e-32.
NOISE_SIGMAS = 12

_MAGIC = b"PCKC1"
_HEAD = struct.Struct(">5s16sI")
#: Bound on one serialised object from a peer (a ciphertext is 66-132 KB, the key ~260 KB).
MAX_OBJECT_BYTES = 4 << 20


def noise_bound(selected: int, degree: int = CKKS_POLY_DEGREE) -> int:
    """A bound on |noise| in coefficient 0 after selecting ``selected`` rows and masking."""
    var = NOISE_SIGMA**2 * (max(selected, 1) + 2 * degree / 3 + 1)
    return int(NOISE_SIGMAS * var**0.5) + 1


def coeff_parameters() -> Any:
    """SEAL ``EncryptionParameters`` for this module's CKKS: N = 8192, one 60-bit prime."""
    import tenseal.sealapi as sealapi

    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(CKKS_POLY_DEGREE)
    parms.set_coeff_modulus(sealapi.CoeffModulus.Create(CKKS_POLY_DEGREE, list(CKKS_COEFF_BITS)))
    return parms


def _pack(context_id: bytes, parts: list[bytes]) -> bytes:
    body = b"".join(struct.pack(">I", len(p)) + p for p in parts)
    return _HEAD.pack(_MAGIC, context_id, len(parts)) + body


def _unpack(data: bytes, what: str) -> tuple[bytes, list[bytes]]:
    if len(data) < _HEAD.size:
        raise CryptoError(f"peer sent a truncated {what}")
    magic, context_id, count = _HEAD.unpack_from(data)
    if magic != _MAGIC:
        raise CryptoError(f"peer sent something that is not a pcnode CKKS {what}",
                          hint="the peer runs an incompatible pcnode version")
    parts, pos = [], _HEAD.size
    for _ in range(count):
        if pos + 4 > len(data):
            raise CryptoError(f"peer sent a truncated {what}")
        (size,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if size > MAX_OBJECT_BYTES or pos + size > len(data):
            raise CryptoError(f"peer sent a {what} with an impossible length")
        parts.append(data[pos:pos + size])
        pos += size
    if pos != len(data):
        raise CryptoError(f"peer sent a {what} with trailing bytes")
    return context_id, parts


def uniform_ntt(q: int, n: int = CKKS_POLY_DEGREE) -> np.ndarray:
    """``n`` values uniform modulo ``q`` (< 2^60): 60 random bits each, rejection-sampled."""
    out = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(4)
    bad = out >= q
    while bad.any():
        fresh = np.frombuffer(os.urandom(8 * int(bad.sum())), dtype=np.uint64) >> np.uint64(4)
        out = out.copy()
        out[bad] = fresh
        bad = out >= q
    return out


class CkksCoeffContext:
    """SEAL objects for the parameters above, shared by every party (no key material).

    ``context_id`` names the key a frame of ciphertexts belongs to (16 zero
    bytes for users that do not frame, such as federated LR).
    """

    def __init__(self, parms: Any, context_id: bytes = bytes(16)) -> None:
        import tenseal.sealapi as sealapi

        self._s = sealapi
        if parms.poly_modulus_degree() != CKKS_POLY_DEGREE or \
                [m.bit_count() for m in parms.coeff_modulus()] != list(CKKS_COEFF_BITS):
            raise CryptoError("CKKS parameters differ from this pcnode's",
                              hint="both parties must run compatible pcnode versions")
        self.parms = parms
        self.seal = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
        if not self.seal.parameters_set():
            raise CryptoError("CKKS parameters are not valid for 128-bit security")
        self.n = CKKS_POLY_DEGREE
        self.q = int(parms.coeff_modulus()[0].value())
        self.parms_id = self.seal.first_parms_id()
        self.context_id = context_id
        self.encoder = sealapi.CKKSEncoder(self.seal)
        self.evaluator = sealapi.Evaluator(self.seal)
        self.emb = CoefficientEmbedding(self.n)
        self._n_inv = pow(self.n, -1, self.q)

    def encode(self, coeffs: np.ndarray) -> Any:
        """An NTT-form plaintext holding exactly these integer coefficients (|c| < 2**40)."""
        return next(self.encode_many(coeffs[None, :]))

    def encode_many(self, coeffs: np.ndarray) -> Iterator[Any]:
        """Plaintexts for each row of an (m, N) array of integer coefficients (one FFT for all)."""
        if coeffs.size and float(np.max(np.abs(coeffs))) >= MAX_EXACT_COEFFICIENT:
            raise InvalidInput("a coefficient is too large to encode exactly")
        return self.plaintexts(coeffs)

    def plaintexts(self, coeffs: np.ndarray) -> Iterator[Any]:
        """Plaintexts for each row of (m, N) coefficients, through SEAL's float encoder.

        Exact below :data:`~protocols.he.coefficients.MAX_EXACT_COEFFICIENT`;
        above it the encoder rounds (federated LR accepts that, see its module).
        """
        for slots in self.emb.slots(coeffs):
            pt = self._s.Plaintext()
            self.encoder.encode(slots.tolist(), 1.0, pt)
            yield pt

    def constant_of_ntt(self, values: np.ndarray | list[int]) -> int:
        """Coefficient 0 (in [0, q)) of the polynomial with these NTT values."""
        return sum(int(v) for v in values) * self._n_inv % self.q

    def centred(self, v: int) -> int:
        """``v mod q`` lifted to (-q/2, q/2]."""
        v %= self.q
        return v - self.q if v > self.q // 2 else v

    def load_ciphertext(self, blob: bytes) -> Any:
        """A peer's ciphertext, checked to be fresh-size and at our only level."""
        ct = sealio.load(self._s.Ciphertext(), self.seal, blob)
        if ct.size() != 2 or ct.parms_id() != self.parms_id or not ct.is_ntt_form():
            raise CryptoError("peer sent a CKKS ciphertext of the wrong size or level",
                              hint="the peer runs an incompatible pcnode version")
        return ct

    def pack(self, blobs: list[bytes]) -> bytes:
        """Frame serialised ciphertexts with this key's context id."""
        return _pack(self.context_id, blobs)

    def unpack(self, data: bytes, expected: int | None = None) -> list[bytes]:
        """Serialised ciphertexts from a frame made under this key (CryptoError otherwise)."""
        context_id, blobs = _unpack(data, "ciphertext batch")
        if context_id != self.context_id:
            raise CryptoError("peer sent CKKS ciphertexts under a foreign context",
                              hint="the ciphertexts were made with another job's key",
                              expected=self.context_id.hex(), actual=context_id.hex())
        if expected is not None and len(blobs) != expected:
            raise CryptoError("peer sent the wrong number of CKKS ciphertexts",
                              expected=expected, actual=len(blobs))
        return blobs


class CkksCoeffSecret(CkksCoeffContext):
    """The key owner's side. Only :meth:`public_bytes` leaves the owner's node."""

    def __init__(self, *, _parts: tuple[Any, Any, bytes] | None = None) -> None:
        if _parts is None:
            super().__init__(coeff_parameters(), secrets.token_bytes(16))
            keygen = self._s.KeyGenerator(self.seal)
            self._secret_key = keygen.secret_key()
            self._public_key = self._s.PublicKey()
            keygen.create_public_key(self._public_key)
        else:
            parms, secret, context_id = _parts
            super().__init__(parms, context_id)
            self._secret_key = sealio.load(self._s.SecretKey(), self.seal, secret, what="secret key")
            self._public_key = None
        self._encryptor = self._s.Encryptor(self.seal, self._secret_key)
        self._decryptor = self._s.Decryptor(self.seal, self._secret_key)
        self.decryptions = 0

    def __repr__(self) -> str:
        return f"CkksCoeffSecret(context={self.context_id.hex()[:8]})"

    def public_bytes(self) -> bytes:
        """Parameters and the public key (for the peer's masks): no secret, Galois or relin keys."""
        if self._public_key is None:
            raise InvalidInput("a worker copy of the key has no public key to publish")
        return _pack(self.context_id, [sealio.dump(self.parms), sealio.dump(self._public_key)])

    def worker_bytes(self) -> bytes:
        """Parameters and secret key for this node's own pool workers (never sent to a peer)."""
        return _pack(self.context_id, [sealio.dump(self.parms), sealio.dump(self._secret_key)])

    @classmethod
    def from_worker_bytes(cls, data: bytes) -> CkksCoeffSecret:
        """Rebuild the key in a pool worker of the same node."""
        context_id, parts = _unpack(data, "worker key")
        return cls(_parts=(sealio.load_parameters(parts[0]), parts[1], context_id))

    def encrypt(self, coeffs: np.ndarray) -> bytes:
        """Encrypt integer coefficients (|c| < 2**40); returns a seeded serialised ciphertext."""
        return self.encrypt_many(coeffs[None, :])[0]

    def encrypt_many(self, coeffs: np.ndarray) -> list[bytes]:
        """Encrypt each row of an (m, N) array of integer coefficients (one FFT for all rows)."""
        return [sealio.dump(self._encryptor.encrypt_symmetric(pt)) for pt in self.encode_many(coeffs)]

    def read_constant(self, blob: bytes) -> int:
        """Decrypt a peer's ciphertext and return its coefficient 0 exactly, in (-q/2, q/2]."""
        ct = self.load_ciphertext(blob)
        pt = self._s.Plaintext()
        self._decryptor.decrypt(ct, pt)
        self.decryptions += 1
        return self.centred(self.constant_of_ntt([pt.data(i) for i in range(self.n)]))


class CkksCoeffPublic(CkksCoeffContext):
    """The other party's side: loads the owner's ciphertexts, selects, adds and masks."""

    def __init__(self, public: bytes) -> None:
        context_id, parts = _unpack(public, "public context")
        if len(parts) != 2:
            raise CryptoError("the CKKS public context must hold parameters and a public key",
                              hint="the key owner must send only its public context")
        super().__init__(sealio.load_parameters(parts[0]), context_id)
        try:
            public_key = sealio.load(self._s.PublicKey(), self.seal, parts[1], what="public key")
        except CryptoError:
            try:
                sealio.load(self._s.SecretKey(), self.seal, parts[1], what="secret key")
            except CryptoError:
                raise CryptoError("peer's CKKS public context holds a malformed public key",
                                  hint="the peer runs an incompatible pcnode version") from None
            raise CryptoError("peer's CKKS public context carries a secret key: refused",
                              hint="the key owner must send only parameters and its public key"
                              ) from None
        self._encryptor = self._s.Encryptor(self.seal, public_key)

    def selection(self, weights: np.ndarray) -> Any:
        """The plaintext that turns a ciphertext of rows into ``sum_i weights_i row_i`` (coefficient 0)."""
        from .coefficients import reversed_selection

        return self.encode(reversed_selection(weights, self.n))

    def multiply_add(self, acc: Any | None, ct: Any, plain: Any) -> Any:
        """``acc + ct * plain`` (a new ciphertext when ``acc`` is None)."""
        if acc is None:
            acc = self._s.Ciphertext(self.seal)
            self.evaluator.multiply_plain(ct, plain, acc)
            return acc
        tmp = self._s.Ciphertext(self.seal)
        self.evaluator.multiply_plain(ct, plain, tmp)
        self.evaluator.add_inplace(acc, tmp)
        return acc

    def add(self, acc: Any | None, ct: Any) -> Any:
        """``acc + ct`` in place (``ct`` when ``acc`` is None)."""
        if acc is None:
            return ct
        self.evaluator.add_inplace(acc, ct)
        return acc

    def dump(self, ct: Any) -> bytes:
        """Serialise a ciphertext."""
        return sealio.dump(ct)

    def fresh_mask(self, constant: int | None = None) -> tuple[Any, int]:
        """A fresh encryption of a polynomial uniform mod q, and its coefficient 0.

        With ``constant`` the mask's coefficient 0 is exactly that value (mod q)
        instead of uniform; every other coefficient stays uniform. Masks depend
        on no data, so a party can make them while it waits for its peer.
        """
        values = uniform_ntt(self.q, self.n)
        c0 = self.constant_of_ntt(values)
        if constant is not None:
            # Adding a constant polynomial adds that constant to every NTT value.
            shift = (constant - c0) % self.q
            values = (values + np.uint64(shift)) % np.uint64(self.q)
            c0 = constant % self.q
        plain = sealio.plaintext_from_ntt(self.seal, self.parms_id, values)
        out = self._s.Ciphertext(self.seal)
        self._encryptor.encrypt(plain, out)
        return out, c0

    def mask(self, ct: Any | None, constant: int | None = None,
             fresh: tuple[Any, int] | None = None) -> tuple[bytes, int]:
        """``ct`` plus a fresh mask (made now, or ``fresh`` from :meth:`fresh_mask`, used once).

        Returns the serialised masked ciphertext and the mask's coefficient 0.
        ``ct=None`` masks an empty aggregate (an encryption of the mask alone).
        """
        out, c0 = fresh if fresh is not None else self.fresh_mask(constant)
        if ct is not None:
            self.evaluator.add_inplace(out, ct)
        return sealio.dump(out), c0


__all__ = [
    "CKKS_COEFF_BITS",
    "CKKS_POLY_DEGREE",
    "MAX_RESULT_BITS",
    "CkksCoeffContext",
    "CkksCoeffPublic",
    "CkksCoeffSecret",
    "coeff_parameters",
    "noise_bound",
    "uniform_ntt",
]
