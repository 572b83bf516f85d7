"""CKKS on tenseal: named parameters, a secret context that stays home, a public one that travels.

Parameters (:data:`DEFAULT_CKKS_PARAMS`)
----------------------------------------
* ``poly_modulus_degree = 8192``: 4096 real slots per ciphertext. The HE
  Standard (homomorphicencryption.org, 2018, Table 1) allows up to 218 bits of
  coefficient modulus at 128-bit security for this degree.
* ``coeff_mod_bit_sizes = (60, 40, 40, 60)``: 200 bits, inside the 218 budget.
  The last 60-bit prime is SEAL's special prime. Joint statistics use exactly
  one plaintext multiplication (the requester's 0/1 selection), which rescales
  away one 40-bit prime; the remaining ``60 + 40 = 100`` bits hold the masked
  sums (|value| < 2^59 at scale 2^40).
* ``scale = 2^40``: encoding and rescaling noise is about ``sqrt(N) / 2^40 ~ 1e-10``
  absolute per slot, far below the 1e-6 relative target. The dominant error in
  a released statistic is the float64 decoding of *masked* values, see
  :mod:`protocols.stats` and docs/STATS.md.

Contexts
--------
* :class:`CkksSecretContext` holds the secret key. It uses *symmetric*
  encryption (SEAL supports it for the key owner): ~2.6 ms per ciphertext
  instead of ~7 ms, and the public context then carries no public key either.
* :meth:`CkksSecretContext.public_context_bytes` serialises the parameters only:
  no secret key, no Galois keys (35 MB, only needed for rotations, which the
  protocols here replace by a masked plaintext reduction), no relinearisation
  keys (no ciphertext-ciphertext products). It is ~100 bytes.
* :class:`CkksPublicContext` is the receiving side. Loading verifies that the
  bytes carry no secret key and are exactly the public context of the declared
  named parameters; anything else is a :class:`~pcnode.errors.CryptoError`.

Every context has a random 16-byte *context id*; vector batches carry it
(:func:`encode_vectors`), so a ciphertext made under a foreign key is named as
such instead of silently decrypting to noise.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tenseal as ts

from pcnode.errors import CryptoError, InvalidInput, ProtocolError

from .. import codec

#: Ring degree: 4096 slots; 128-bit security up to 218 modulus bits (HE Standard, Table 1).
CKKS_POLY_MODULUS_DEGREE = 8192
#: Modulus chain: 60-bit base prime, two 40-bit primes (one spent by the selection
#: product), 60-bit special prime; 200 bits <= 218.
CKKS_COEFF_MOD_BIT_SIZES = (60, 40, 40, 60)
#: Global scale 2^40: matches the 40-bit primes so rescaling keeps the scale.
CKKS_SCALE_BITS = 40
#: Largest coefficient modulus allowed per degree at 128-bit security (HE Standard, Table 1).
MAX_COEFF_MODULUS_BITS = {8192: 218, 16384: 438}

_CTX_MAGIC = b"PCCK1"
_VEC_MAGIC = b"PCCV1"
_VEC_HEADER = struct.Struct(">5s16sI")
_LEN = struct.Struct(">I")
#: A serialised vector is ~330 KB at the default parameters; a bound stops a
#: hostile length field from making us allocate gigabytes.
MAX_VECTOR_BYTES = 8 << 20


@dataclass(frozen=True)
class CkksParams:
    """A named CKKS parameter set."""

    poly_modulus_degree: int = CKKS_POLY_MODULUS_DEGREE
    coeff_mod_bit_sizes: tuple[int, ...] = CKKS_COEFF_MOD_BIT_SIZES
    scale_bits: int = CKKS_SCALE_BITS

    def __post_init__(self) -> None:
        limit = MAX_COEFF_MODULUS_BITS.get(self.poly_modulus_degree)
        if limit is None:
            raise InvalidInput(f"unsupported CKKS degree {self.poly_modulus_degree}",
                               hint="use 8192 or 16384")
        if sum(self.coeff_mod_bit_sizes) > limit:
            raise InvalidInput("CKKS coefficient modulus too large for 128-bit security",
                               total=sum(self.coeff_mod_bit_sizes), limit=limit)
        if len(self.coeff_mod_bit_sizes) < 3 or not 20 <= self.scale_bits <= 60:
            raise InvalidInput("CKKS parameters need >= 3 primes and a scale of 2^20..2^60")

    @property
    def slots(self) -> int:
        """Real slots per ciphertext."""
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        """The global scale."""
        return float(2**self.scale_bits)

    @property
    def bits_after_product(self) -> int:
        """Modulus bits left after one plaintext product and rescale (special prime excluded)."""
        return sum(self.coeff_mod_bit_sizes[:-2])

    def max_magnitude_after_product(self) -> float:
        """Largest |slot value| that still decrypts correctly after one product."""
        return float(2 ** (self.bits_after_product - self.scale_bits - 1))

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"poly_modulus_degree": self.poly_modulus_degree,
                "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
                "scale_bits": self.scale_bits}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CkksParams:
        """Parse from a peer; ProtocolError if malformed, CryptoError if insecure."""
        try:
            raw = (int(d["poly_modulus_degree"]), tuple(int(b) for b in d["coeff_mod_bit_sizes"]),
                   int(d["scale_bits"]))
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("peer sent malformed CKKS parameters") from None
        try:
            return cls(*raw)
        except InvalidInput as exc:
            raise CryptoError(f"peer proposed unacceptable CKKS parameters: {exc}") from None


DEFAULT_CKKS_PARAMS = CkksParams()


def _make_context(params: CkksParams) -> ts.Context:
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, params.poly_modulus_degree,
                     coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
                     encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC)
    ctx.global_scale = params.scale
    return ctx


def _public_bytes(ctx: ts.Context) -> bytes:
    return ctx.serialize(save_public_key=False, save_secret_key=False,
                         save_galois_keys=False, save_relin_keys=False)


_REFERENCE: dict[CkksParams, bytes] = {}


def _reference_public_bytes(params: CkksParams) -> bytes:
    ref = _REFERENCE.get(params)
    if ref is None:
        ref = _REFERENCE[params] = _public_bytes(_make_context(params))
    return ref


def _frame(params: CkksParams, context_id: bytes, body: bytes) -> bytes:
    meta = codec.dumps(params.to_json())
    return _CTX_MAGIC + context_id + _LEN.pack(len(meta)) + meta + body


class CkksPublicContext:
    """A CKKS context without its secret key: encode, add, multiply by plaintexts."""

    def __init__(self, params: CkksParams, context_id: bytes, context: ts.Context) -> None:
        if context.is_private():
            raise CryptoError("a public CKKS context must not hold the secret key")
        self.params = params
        self.context_id = context_id
        self.context = context

    @classmethod
    def from_bytes(cls, data: bytes) -> CkksPublicContext:
        """Load a peer's public context; CryptoError unless it is exactly a keyless public one."""
        if not isinstance(data, bytes) or len(data) < 25 or data[:5] != _CTX_MAGIC:
            raise CryptoError("peer sent a malformed CKKS context (bad header)")
        context_id = data[5:21]
        (mlen,) = _LEN.unpack_from(data, 21)
        if mlen > 4096 or len(data) < 25 + mlen:
            raise CryptoError("peer sent a malformed CKKS context (bad length)")
        try:
            params = CkksParams.from_json(codec.loads(data[25:25 + mlen]))
        except ProtocolError:
            raise CryptoError("peer sent a malformed CKKS context (bad parameters)") from None
        body = data[25 + mlen:]
        try:
            ctx = ts.context_from(body)
        except (ValueError, RuntimeError):
            raise CryptoError("peer sent a CKKS context that does not parse") from None
        if ctx.is_private():
            raise CryptoError(
                "peer sent a CKKS context that contains its secret key",
                hint="the key owner must send public_context_bytes(), never the full context",
            )
        if body != _reference_public_bytes(params):
            raise CryptoError(
                "peer's CKKS context is not the public context of its declared parameters",
                hint="it may carry extra keys or different parameters",
            )
        return cls(params, context_id, ctx)

    @property
    def context_id_hex(self) -> str:
        """The context id as hex (random; safe to log)."""
        return self.context_id.hex()

    def load_vectors(self, blob: bytes, expected: int | None = None) -> list[ts.CKKSVector]:
        """Parse a vector batch from a peer; CryptoError for a foreign or malformed one."""
        return [load_checked(self.context, b)
                for b in split_vectors(blob, self.context_id, expected)]


class CkksSecretContext:
    """The key owner's CKKS context (secret key inside; never serialised with it to peers)."""

    def __init__(self, params: CkksParams = DEFAULT_CKKS_PARAMS,
                 _context: ts.Context | None = None, _context_id: bytes | None = None) -> None:
        self.params = params
        self.context = _context if _context is not None else _make_context(params)
        self.context_id = _context_id or os.urandom(16)
        self._gain: float | None = None

    @classmethod
    def generate(cls, params: CkksParams = DEFAULT_CKKS_PARAMS) -> CkksSecretContext:
        """Fresh keys for ``params``."""
        return cls(params)

    def __repr__(self) -> str:
        return f"CkksSecretContext(N={self.params.poly_modulus_degree}, id={self.context_id.hex()})"

    def public_context_bytes(self) -> bytes:
        """Parameters only: no secret key, no Galois, relinearisation or public keys."""
        return _frame(self.params, self.context_id, _public_bytes(self.context))

    def public(self) -> CkksPublicContext:
        """The public context, as a peer would load it."""
        return CkksPublicContext.from_bytes(self.public_context_bytes())

    def worker_bytes(self) -> bytes:
        """Full context *with* the secret key, for this owner's own worker processes only."""
        return self.context.serialize(save_secret_key=True, save_galois_keys=False,
                                      save_relin_keys=False)

    @classmethod
    def from_worker_bytes(cls, params: CkksParams, context_id: bytes, data: bytes) -> CkksSecretContext:
        """Rebuild in a worker from :meth:`worker_bytes`."""
        return cls(params, ts.context_from(data), context_id)

    def encrypt(self, values: np.ndarray) -> ts.CKKSVector:
        """Encrypt up to ``slots`` reals into one vector."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1 or v.size > self.params.slots:
            raise InvalidInput(f"a CKKS vector holds at most {self.params.slots} values")
        return ts.ckks_vector(self.context, v.tolist())

    def load_vectors(self, blob: bytes, expected: int | None = None) -> list[ts.CKKSVector]:
        """Parse a vector batch (ours, returned by a peer); CryptoError if foreign."""
        return [load_checked(self.context, b)
                for b in split_vectors(blob, self.context_id, expected)]

    def product_gain(self) -> float:
        """Factor by which one plaintext product scales slot values (measured once, then cached).

        tenseal rescales after a product by dropping a ~40-bit prime ``q`` but
        labels the result with scale ``2^40``, so values come out multiplied by
        ``2^40 / q`` (1 + ~1e-7). The factor depends only on the parameters;
        protocols divide it out. Measured by encrypting ones, multiplying by
        ones and averaging the 4096 decrypted slots (error ~1e-13).
        """
        if self._gain is None:
            ones = [1.0] * self.params.slots
            pub = ts.context_from(_public_bytes(self.context))
            prod = ts.ckks_vector_from(pub, self.encrypt(np.ones(self.params.slots)).serialize()).mul(ones)
            vals = self.decrypt(ts.ckks_vector_from(self.context, prod.serialize()))
            self._gain = math.fsum(vals) / len(vals)
            if not abs(self._gain - 1.0) < 2.0**-16:
                raise CryptoError("CKKS self-test failed: a plaintext product is not close to exact")
        return self._gain

    def decrypt(self, vector: ts.CKKSVector) -> np.ndarray:
        """Raw decryption as float64 (not for release: round with :func:`round_to_quantum`)."""
        return np.asarray(vector.decrypt(), dtype=np.float64)


def encode_vectors(context_id: bytes, vectors: Sequence[ts.CKKSVector | bytes]) -> bytes:
    """Serialise vectors as ``MAGIC | context id | count | (len | bytes)*``."""
    parts = [_VEC_HEADER.pack(_VEC_MAGIC, context_id, len(vectors))]
    for v in vectors:
        b = v if isinstance(v, bytes) else v.serialize()
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def split_vectors(blob: bytes, context_id: bytes, expected: int | None = None) -> list[bytes]:
    """Split and check a vector batch: header, context id, count and lengths."""
    if not isinstance(blob, bytes) or len(blob) < _VEC_HEADER.size:
        raise CryptoError("peer sent a malformed CKKS vector batch (too short)")
    magic, cid, count = _VEC_HEADER.unpack_from(blob)
    if magic != _VEC_MAGIC:
        raise CryptoError("peer sent a malformed CKKS vector batch (bad header)")
    if cid != context_id:
        raise CryptoError(
            "peer sent CKKS ciphertexts under a foreign context",
            hint="both parties must use the context announced at the start of the job",
            expected=context_id.hex(), actual=cid.hex(),
        )
    if expected is not None and count != expected:
        raise CryptoError("peer sent the wrong number of CKKS vectors",
                          expected=expected, actual=count)
    out, off = [], _VEC_HEADER.size
    for _ in range(count):
        if off + 4 > len(blob):
            raise CryptoError("peer sent a truncated CKKS vector batch")
        (n,) = _LEN.unpack_from(blob, off)
        off += 4
        if n > MAX_VECTOR_BYTES or off + n > len(blob):
            raise CryptoError("peer sent a CKKS vector of an implausible length", length=n)
        out.append(blob[off:off + n])
        off += n
    if off != len(blob):
        raise CryptoError("peer sent trailing bytes after a CKKS vector batch")
    return out


def load_checked(context: ts.Context, data: bytes) -> ts.CKKSVector:
    """``ckks_vector_from`` with parse failures mapped to CryptoError."""
    try:
        return ts.ckks_vector_from(context, data)
    except (ValueError, RuntimeError, TypeError):
        raise CryptoError("peer sent a CKKS ciphertext that does not parse",
                          hint="it was made with other parameters or is corrupt") from None


def round_to_quantum(value: float, quantum: float) -> float:
    """Round a decrypted value to a multiple of ``quantum`` (a power of two) before release.

    Releasing raw CKKS decryptions can leak the secret key (Li & Micciancio,
    EUROCRYPT 2021); the low bits that carry the decryption noise are cut here.
    """
    if quantum <= 0 or not math.isfinite(value):
        raise InvalidInput("cannot round a non-finite value or to a non-positive quantum")
    return round(value / quantum) * quantum


def decode_error_bound(magnitude: float, slots: int) -> float:
    """Bound on the float64 decoding error of a sum of ``slots`` slots of |value| <= magnitude.

    Measured at the default parameters (encode, add, decode of uniform masks):
    the error of a 4096-slot sum averages ``magnitude * 2^-47``, i.e.
    ``sqrt(slots) * magnitude * 2^-53``; the bound keeps a factor 8 of margin.
    """
    return math.sqrt(max(1, slots)) * magnitude * 2.0**-50


def quantum_for(bound: float) -> float:
    """The power of two at or above ``bound`` (the release granularity)."""
    return 2.0 ** math.ceil(math.log2(max(bound, 2.0**-60)))


__all__ = [
    "CKKS_COEFF_MOD_BIT_SIZES",
    "CKKS_POLY_MODULUS_DEGREE",
    "CKKS_SCALE_BITS",
    "DEFAULT_CKKS_PARAMS",
    "CkksParams",
    "CkksPublicContext",
    "CkksSecretContext",
    "decode_error_bound",
    "encode_vectors",
    "load_checked",
    "quantum_for",
    "round_to_quantum",
    "split_vectors",
]
